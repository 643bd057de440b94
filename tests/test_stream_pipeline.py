"""The transformers pipeline with hop=: the same windows `vavl stream` prints (spans, labels, heads,
probabilities, faces, notes), as a generator; a source that breaks off raises after its windows."""
import json

import pytest
from transformers import pipeline

import vavl  # noqa: F401  (registers the task)
from media_utils import write_face_clip
from vavl.cli import main
from vavl.core.errors import ConfigError, MediaError

VARYING = {"latency", "timings"}   # wall-clock seconds, different on every run


def same_window(a: dict, b: dict) -> None:
    assert set(a) == set(b), (set(a) ^ set(b))
    for key in set(a) - VARYING:
        if key in ("scores", "heads"):
            flat_a = a[key] if key == "scores" else {(h, c): v for h, d in a[key].items() for c, v in d.items()}
            flat_b = b[key] if key == "scores" else {(h, c): v for h, d in b[key].items() for c, v in d.items()}
            assert flat_a.keys() == flat_b.keys() and all(abs(flat_a[k] - flat_b[k]) < 1e-5 for k in flat_a), key
        else:
            assert a[key] == b[key], (key, a[key], b[key])


def test_the_pipeline_yields_the_windows_vavl_stream_prints(tiny_full_model_dir, tmp_path, one_thread):
    clip = write_face_clip(tmp_path / "long.mp4", seconds=2.8, fps=10)
    out = tmp_path / "lines.jsonl"
    assert main(["stream", str(clip), "--model", tiny_full_model_dir, "--window", "1", "--hop", "0.5",
                 "--out", str(out)]) == 0
    printed = [json.loads(x) for x in out.read_text().splitlines()][:-1]   # the last line is the end event
    classify = pipeline("audio-visual-emotion-recognition", model=tiny_full_model_dir)
    lines = classify(str(clip), window=1.0, hop=0.5)
    assert iter(lines) is lines   # a generator: a live source has no end
    got = list(lines)
    assert [(w["start"], w["end"]) for w in got] == [(w["start"], w["end"]) for w in printed]
    assert len(got) == 5 and got[-1]["partial"] is True   # 0-1, 0.5-1.5, 1-2, 1.5-2.5, 2-2.8 (partial)
    for a, b in zip(got, printed):
        same_window(a, b)
        assert a["modalities"] == ["audio", "visual"] and set(a["heads"]) == {"fused", "audio", "visual"}
    assert classify(str(clip))["modalities"] == ["audio", "visual"]   # without hop: the clip record, as before


def test_windows_refuse_what_is_not_one_source_and_raise_when_it_breaks_off(tiny_full_model_dir, tmp_path,
                                                                           monkeypatch, one_thread):
    import vavl.media.live as live
    from media_utils import tone

    classify = pipeline("audio-visual-emotion-recognition", model=tiny_full_model_dir)
    with pytest.raises(ConfigError, match="give one source"):
        classify({"audio": [0.0] * 100, "sampling_rate": 16000}, hop=0.5)
    with pytest.raises(MediaError, match="cannot open"):
        classify(str(tmp_path / "missing.mp4"), hop=0.5)

    def broken():
        yield ("audio", 0.0, tone(1.0))
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(live, "av_events", lambda *a, **k: live.array_events(broken(), video=False))
    lines = classify("rtsp://camera/stream", window=1.0, hop=1.0)
    first = next(lines)
    assert (first["start"], first["end"]) == (0.0, 1.0) and first["modalities"] == ["audio"]
    with pytest.raises(MediaError, match="rtsp://camera/stream: the source broke off: Connection reset by peer"):
        next(lines)
