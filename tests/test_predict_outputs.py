"""`vavl predict` when its outputs cannot be written: a full disk under --csv keeps the scores
(printed) and says so in one line; a timeline that cannot be written is a note, never a failed
input; the default traceback log is created new, never through a planted link."""
import builtins
import csv
import errno
import json

import pytest

from vavl.cli import main


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from media_utils import tone
    from vavl.media import write_clip

    d = tmp_path_factory.mktemp("outclips")
    return [str(write_clip(d / f"speech{i}.wav", audio=tone(1.0 + i / 4), sample_rate=16000)) for i in range(2)]


def no_space(*args, **kw):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_under_csv_keeps_the_scores_and_is_one_line(tmp_path, tiny_full_model_dir, clips, capsys, monkeypatch):
    import vavl.cli.predict as cli

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            no_space()

    def full_open(path, *args, **kw):
        f = builtins.open(path, *args, **kw)
        return Full(f) if "out.csv" in str(path) else f

    monkeypatch.setattr(cli, "open", full_open, raising=False)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", *clips, "--model", tiny_full_model_dir, "--json", "--csv", str(out_csv)]) == 2
    out, err = capsys.readouterr()
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert [r["file"] for r in rows] == clips and all(r["scores"] for r in rows)     # every score printed
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (f"vavl predict: error: {out_csv}: could not write (No space left on device); the disk is full: "
                    "free some space and run again; the scores are in the lines printed above")
    assert not out_csv.exists() and not list(tmp_path.glob(".out.csv*"))


def test_a_timeline_that_cannot_be_written_does_not_fail_the_file(tmp_path, tiny_full_model_dir, clips, capsys, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", no_space)
    out_csv = tmp_path / "out.csv"
    code = main(["predict", *clips, "--model", tiny_full_model_dir, "--json", "--csv", str(out_csv),
                 "--timeline", str(tmp_path / "t.png")])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert all(r["scores"] and "error" not in r for r in rows)
    assert all(any(n.startswith("timeline ") and "not written" in n and "No space left" in n for n in r["notes"]) for r in rows)
    assert "2 files: 2 scored, 0 with no prediction, 0 failed" in err and "2 timelines not written" in err
    table = list(csv.DictReader(open(out_csv)))
    assert all(r["label"] and not r["error"] for r in table)
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".t_*"))


def test_the_default_log_is_never_written_through_a_planted_link(tmp_path, tiny_full_model_dir, clips, capsys, monkeypatch):
    import vavl.cli.predict as cli
    import vavl.inference.predict as pipeline

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / "vavl-predict.log"
    planted.symlink_to(victim)
    monkeypatch.setattr(cli, "_default_log", lambda: str(planted))

    def broken(path, *args):
        raise IndexError("a bug somewhere inside")

    monkeypatch.setattr(pipeline, "predict_clip", broken)
    assert main(["predict", clips[0], "--model", tiny_full_model_dir]) == 2
    err = capsys.readouterr().err
    assert victim.read_text() == "precious"
    logs = [p for p in tmp_path.glob("vavl-predict-*.log")]
    assert len(logs) == 1 and f"traceback in {logs[0]}" in err and "IndexError" in logs[0].read_text()
