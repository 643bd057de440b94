"""Synthetic corpora: the real corpora's file naming and metadata formats, real media, and a class
signal in the modality asked for."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest

from vavl.data import read_manifest
from vavl.data.prepare import prepare
from vavl.data.synthetic import ClipStyle, _Styler, make_corpus, synth_audio, synth_frames
from vavl.core.errors import ConfigError
from vavl.media.decode import decode

CREMA = Path(__file__).resolve().parent / "data" / "crema-d"
NAMES = {
    "crema-d": r"(AudioWAV/\d{4}_[A-Z]{3}_(ANG|DIS|FEA|HAP|NEU|SAD)_XX\.wav|VideoFlash/\d{4}_[A-Z]{3}_[A-Z]{3}_XX\.flv)",
    "ravdess": r"Actor_(\d\d)/0[123]-0[12]-0[1-8]-0[12]-0[12]-0[12]-\1\.(mp4|wav)",
    "msp-improv": r"(Audio|Video)/session\d/S\d\d[AHNS]/[RSPT]/MSP-IMPROV-S\d\d[AHNS]-[FM]\d\d-[RSPT]-[FM][FM]\d\d\.(wav|avi)",
    "custom": r"clips/spk\d_[a-z]+_\d\.(mp4|wav)",
}
MEDIA = (".wav", ".flv", ".mp4", ".avi")


@pytest.mark.parametrize("layout", list(NAMES))
def test_layout_file_names_and_prepare(tmp_path, layout):
    root = make_corpus(layout, tmp_path / layout, n_speakers=2, clips_per_class=1, duration=0.5, size=(96, 72))
    media = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in MEDIA]
    assert media and all(re.fullmatch(NAMES[layout], m) for m in media), media[:5]
    summary = prepare(layout, root, tmp_path / "m.jsonl", log=open("/dev/null", "w"))
    records = read_manifest(tmp_path / "m.jsonl")
    assert summary["clips"] == len(records) > 0 and not summary["missing_audio"] and not summary["missing_video"]
    clip = decode(records[0]["video"] or records[0]["audio"], fps=10)
    assert clip.audio is not None and abs(clip.duration - 0.5) < 0.15 and np.abs(clip.audio).max() > 0.05


def test_crema_metadata_has_the_corpus_format(tmp_path):
    root = make_corpus("crema-d", tmp_path, n_speakers=2, clips_per_class=2, duration=0.3, size=(64, 48))
    for name, where in (("summaryTable.csv", "processedResults"), ("tabulatedVotes.csv", "processedResults"),
                        ("VideoDemographics.csv", "."), ("SentenceFilenames.csv", ".")):
        ours = (root / where / name).read_text().splitlines()
        real = (CREMA / name).read_text().splitlines()
        assert ours[0] == real[0], name                       # same header, same quoting
        assert len(ours) - 1 == (2 if name == "VideoDemographics.csv" else 24 * (3 if name == "tabulatedVotes.csv" else 1))
    summary = prepare("crema-d", root, tmp_path / "m.jsonl", label="perceived-av", log=open("/dev/null", "w"))
    assert 0 < len(summary["ambiguous"]) < 24                 # raters sometimes tie
    with open(root / "processedResults" / "summaryTable.csv") as f:
        assert all(row["FileName"] in {r["id"] for r in read_manifest(tmp_path / "m.jsonl")} for row in csv.DictReader(f))


def pitch(wave, sr=16000):
    """Median f0 (Hz) of voiced 40 ms frames, by autocorrelation."""
    hop, size, f0s = 320, 640, []
    for i in range(0, len(wave) - size, hop):
        x = wave[i:i + size] - wave[i:i + size].mean()
        if np.abs(x).max() < 0.02:
            continue
        ac = np.correlate(x, x, "full")[size - 1:]
        lo, hi = sr // 400, sr // 60
        f0s.append(sr / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(f0s))


def test_class_signal_is_in_the_audio_and_the_video():
    n = 6
    styles = [ClipStyle(speaker=0, female=False, audio_class=k, video_class=k, n_classes=n, seed=k) for k in range(n)]
    f0 = [pitch(synth_audio(s, 1.0, 16000)) for s in styles]
    assert all(b > a for a, b in zip(f0, f0[1:])), f0        # pitch rises with the class index
    colours = np.stack([synth_frames(s, 0.4, 10, (96, 72))[:, 18:54, 30:66].reshape(-1, 3).mean(0) for s in styles])
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(n, dtype=bool)].min() > 5     # every class has its own face tint


def test_a_face_is_found_in_the_frames():
    from vavl.media.faces import FaceCropper

    frames = synth_frames(ClipStyle(1, True, 2, 2, 6, 3), 0.4, 10, (160, 120))
    assert FaceCropper(size=64, detect_every=1)(frames).mask.all()


@pytest.mark.parametrize("signal", ["audio", "video"])
def test_one_modality_signal_leaves_the_other_uninformative(signal):
    styler = _Styler(6, signal, seed=0)
    styles = [(k, styler(k, 0, False)) for k in range(6) for _ in range(20)]
    carrier = [s.audio_class if signal == "audio" else s.video_class for _, s in styles]
    other = [s.video_class if signal == "audio" else s.audio_class for _, s in styles]
    labels = [k for k, _ in styles]
    assert carrier == labels
    assert np.mean(np.array(other) == np.array(labels)) < 0.4   # chance is 1/6
    with pytest.raises(ConfigError):
        _Styler(6, "smell", 0)
