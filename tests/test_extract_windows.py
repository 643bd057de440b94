"""A long file is extracted a window at a time (memory bounded by the window, not the file): for
frame-local encoders (mfcc, face-grey) its features are those of the whole file, row for row, and
a cache records its window so windowed and whole-file features never mix."""
import io
import json

import numpy as np
import pytest
import torch

import vavl.media.processor as processor_module
from media_utils import face_frames, tone
from vavl.core.errors import DataError
from vavl.data.cache import FeatureCache
from vavl.data.extract import extract
from vavl.data.extract_long import CONTEXT
from vavl.media import decode, write_clip
from vavl.media.faces import FaceCropper

QUIET = io.StringIO()
SECONDS, FPS, WINDOW, RATE = 6.5, 4, 2.0, 16000


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    path = write_clip(d / "long.mp4", face_frames(int(SECONDS * FPS), moving=False), fps=FPS, audio=tone(SECONDS))
    manifest = d / "m.jsonl"
    manifest.write_text(json.dumps({"id": "long", "audio": str(path), "video": str(path)}) + "\n")
    return manifest, path


def run(manifest, out, window):
    extract(manifest, out, "mfcc", "face-grey", fps=FPS, progress=False, log=QUIET, window=window)
    return FeatureCache(out).read("long")


def fixed_face(self, frames):
    """The still head's box in every frame: the crops then depend on the frames alone (with MTCNN
    the face track is chosen per window, by design; docs/extract.md)."""
    return [(np.array([[4.0, 20.0, 72.0, 100.0]]), np.array([0.99])) for _ in range(len(frames))]


def test_windowed_features_equal_the_whole_files_for_frame_local_encoders(long_clip, tmp_path, monkeypatch):
    manifest, path = long_clip
    monkeypatch.setattr(FaceCropper, "detect", fixed_face)
    whole = run(manifest, tmp_path / "whole", None)
    spans, real = [], processor_module.decode

    def spy(*args, **kw):
        clip = real(*args, **kw)
        spans.append((clip.start, len(clip.audio) / RATE if clip.audio is not None else 0.0,
                      len(clip.frames) if clip.frames is not None else 0))
        return clip

    monkeypatch.setattr(processor_module, "decode", spy)
    parts = run(manifest, tmp_path / "windows", WINDOW)
    # no decode held more than a window and its context
    assert len(spans) >= SECONDS // WINDOW and all(s <= WINDOW + 2 * CONTEXT + 0.1 for _, s, _ in spans[1:])
    assert all(n <= (WINDOW + 2 * CONTEXT) * FPS for _, _, n in spans)
    n = len(decode(path, video=False).audio)
    assert whole["audio_features"].shape == parts["audio_features"].shape == (n // 160 + 1, 40)
    assert whole["visual_features"].shape == parts["visual_features"].shape == (int(SECONDS * FPS), 48 * 48)
    assert torch.equal(whole["audio_features"], parts["audio_features"])
    assert torch.equal(whole["visual_features"], parts["visual_features"])
    assert parts["meta"]["window"] == WINDOW and parts["meta"]["windows"] == int(np.ceil(SECONDS / WINDOW))
    assert parts["meta"]["duration"] == pytest.approx(whole["meta"]["duration"])
    assert FeatureCache(tmp_path / "windows").settings["window"] == WINDOW
    with pytest.raises(DataError, match="window"):   # one cache never mixes windowed and whole-file features
        run(manifest, tmp_path / "windows", None)


def test_raw_media_training_refuses_a_long_file_in_one_line_without_decoding_it_whole(long_clip, tmp_path,
                                                                                      monkeypatch):
    import vavl.data.datasets as datasets
    from vavl.media.processor import AudioVisualProcessor

    manifest, path = long_clip
    short = write_clip(tmp_path / "short.mp4", face_frames(8, moving=False), fps=FPS, audio=tone(2.0))
    processor = AudioVisualProcessor(fps=FPS)
    monkeypatch.setattr(datasets, "RAW_MAX_SECONDS", 3.0)
    ends = []
    real = processor_module.decode
    monkeypatch.setattr(processor_module, "decode", lambda *a, **kw: ends.append(kw.get("end")) or real(*a, **kw))
    clip = datasets.load_clip({"id": "s", "video": str(short), "audio": str(short)}, processor)
    assert len(clip.audio) == len(decode(short).audio) and len(clip.frames) == 8
    with pytest.raises(DataError, match=r"long\.mp4: .*up to 3 s.*vavl extract") as e:
        datasets.load_clip({"id": "long", "video": str(path), "audio": str(path)}, processor)
    assert "\n" not in str(e.value) and ends and all(end == 3.0 for end in ends)


def test_a_file_claiming_10_hours_is_extracted_in_the_two_windows_that_hold_packets(tmp_path):
    from vavl.data.extract_long import LongClip, is_long
    from vavl.media.processor import AudioVisualProcessor

    frames = np.full((4, 16, 16, 3), 60, np.uint8)   # smaller than any face MTCNN looks for: no detector run
    path = write_clip(tmp_path / "ten_hours.mkv", frames, fps=10, frame_times=np.array([0.0, 0.1, 0.2, 36000.0]))
    rec = {"id": "x", "video": str(path)}
    processor = AudioVisualProcessor(fps=FPS)
    assert path.stat().st_size < 4000 and is_long(rec, processor, False, True, 60.0)
    long = LongClip(rec, processor, False, True, 60.0)
    seen = []
    audio, visual, meta = long.encode(lambda inputs: seen.append(inputs["frames"]) or (None, None), None)
    assert long.windows() == [0.0, 36000.0] and len(seen) == 2 and sum(seen) <= 4 * FPS
    assert meta["windows"] == 2 and any("decoded" in n for n in meta["notes"])


def test_a_long_file_met_in_a_loader_worker_is_still_one_line(long_clip, monkeypatch):
    """Raw-media training with data.num_workers > 0: torch re-raises the worker's DataError with
    its traceback in the message; the recipe prints error_line(e), the error's own line."""
    import vavl.data.datasets as datasets
    from vavl.core.jobs import error_line
    from vavl.data.datasets import RawClipDataset
    from vavl.media.processor import AudioVisualProcessor

    manifest, path = long_clip
    monkeypatch.setattr(datasets, "RAW_MAX_SECONDS", 3.0)
    data = RawClipDataset([{"id": "long", "audio": str(path), "video": str(path)}], AudioVisualProcessor(fps=FPS))
    loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=1, collate_fn=list)
    with pytest.raises(DataError) as e:
        next(iter(loader))
    assert "Traceback" in str(e.value)   # what torch makes of it
    line = error_line(e.value)
    assert "\n" not in line and line.startswith(f"{path}: ") and "vavl extract" in line
    assert error_line(DataError("a: b")) == "a: b"


def test_a_cache_made_before_windowed_extraction_goes_on_extracting_files_whole(long_clip, tmp_path):
    manifest, path = long_clip
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "first", "audio": str(path)}) + "\n")
    out = tmp_path / "old"
    extract(one, out, "mfcc", None, progress=False, log=QUIET, window=WINDOW)
    settings = json.loads((out / "cache.json").read_text())
    del settings["window"]                                   # as an older vavl wrote it
    (out / "cache.json").write_text(json.dumps(settings))
    both = tmp_path / "both.jsonl"
    both.write_text(one.read_text() + json.dumps({"id": "long", "audio": str(path)}) + "\n")
    extract(both, out, "mfcc", None, progress=False, log=QUIET, window=WINDOW)
    cache = FeatureCache(out)
    assert "window" not in cache.settings and "window" not in cache.read("long")["meta"]
