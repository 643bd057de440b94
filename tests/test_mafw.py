"""`vavl prepare mafw` on a synthetic corpus in MAFW's release layout (tests/mafw_corpus.py)."""
import collections

import pytest

from mafw_corpus import CLASSES, build_mafw
from vavl.core.errors import DataError
from vavl.data import read_manifest, split_records
from vavl.data.corpora import hicmae
from vavl.data.prepare import prepare

QUIET = open("/dev/null", "w")
NO_AUDIO = hicmae.MAFW_NO_AUDIO[:2]     # two of the clips HiCMAE leaves out, among ordinary ones


@pytest.fixture
def corpus(tmp_path):
    single = {f"{i:05d}": i % 5 + 1 for i in range(25, 80)} | {c: 2 for c in NO_AUDIO}
    compound_only = {f"{20000 + i:05d}": i % 5 + 1 for i in range(10)}
    truth = build_mafw(tmp_path / "MAFW", single, compound_only, not_in_compound=("00030", "00031"))
    return tmp_path / "MAFW", truth, single, compound_only


def test_prepare_mafw_labels_compound_labels_and_folds(corpus, tmp_path):
    root, truth, single, compound_only = corpus
    summary = prepare("mafw", root, tmp_path / "m.jsonl", log=QUIET)
    records = {r["id"]: r for r in read_manifest(tmp_path / "m.jsonl")}
    assert set(records) == set(truth) and summary["clips"] == len(truth) == 67
    for clip, r in records.items():
        assert r["label"] == truth[clip]["single"] and r["labels"] == truth[clip]
        assert r["audio"] == r["video"] == str((root / "data" / "clips" / f"{clip}.mp4").resolve())
        assert r["corpus"] == "MAFW" and r["speaker"] is None
    assert {r["label"] for r in records.values()} == set(CLASSES) | {None}
    # compound-only clips: no single label, kept with label null (or dropped with --drop-ambiguous)
    assert sorted(summary["ambiguous"]) == sorted(compound_only)
    assert all("mafw-1" not in records[c]["folds"] and records[c]["folds"]["mafw-compound-1"] for c in compound_only)
    assert all("mafw-compound-1" not in records[c]["folds"] for c in ("00030", "00031"))
    # MAFW's sets: test = set k, train = the other four; HiCMAE's: the same less the clips without audio
    for k in range(1, 6):
        sets = split_records(list(records.values()), f"mafw-{k}")
        assert {r["id"] for r in sets["test"]} == {c for c, f in single.items() if f == k} and not sets["dev"]
        assert len(sets["train"]) + len(sets["test"]) == len(single)
        ours = split_records(list(records.values()), f"hicmae-{k}")
        assert {r["id"] for r in ours["test"]} == {c for c, f in single.items() if f == k and c not in NO_AUDIO}
        assert {r["id"] for r in ours["train"]} == {c for c, f in single.items() if f != k and c not in NO_AUDIO}
    dropped = prepare("mafw", root, tmp_path / "d.jsonl", drop_ambiguous=True, log=QUIET)
    assert dropped["clips"] == len(single)


def test_prepare_mafw_reports_missing_clips_and_finds_the_lists_elsewhere(corpus, tmp_path):
    root, truth, single, _ = corpus
    (root / "data" / "clips" / "00040.mp4").unlink()
    moved = tmp_path / "lists"
    (root / "Train & Test Set").rename(moved)
    with pytest.raises(DataError, match="pass MAFW's 'Train & Test Set' folder with --labels"):
        prepare("mafw", root, tmp_path / "m.jsonl")
    summary = prepare("mafw", root, tmp_path / "m.jsonl", labels=moved, missing="drop", log=QUIET)
    assert summary["dropped_missing"] == ["00040"] and summary["clips"] == len(truth) - 1


@pytest.mark.parametrize("line,says", [
    ("00025.mp4 joy\n", r"set_1/test.txt:1: '00025.mp4 joy' is not a MAFW line"),
    ("clip.mp4 anger\n", r"set_1/test.txt:1: 'clip.mp4 anger' is not a MAFW line"),
    ("00025.mp4\n", r"is not a MAFW line"),
])
def test_a_list_that_is_not_mafws_is_one_clear_error(corpus, tmp_path, line, says):
    root = corpus[0]
    (root / "Train & Test Set" / "single" / "no_caption" / "set_1" / "test.txt").write_text(line)
    with pytest.raises(DataError, match=says):
        prepare("mafw", root, tmp_path / "m.jsonl")


def test_a_clip_in_two_test_lists_is_refused(corpus, tmp_path):
    root = corpus[0]
    folder = root / "Train & Test Set" / "single" / "no_caption"
    first = (folder / "set_1" / "test.txt").read_text().splitlines()[0]
    with open(folder / "set_2" / "test.txt", "a") as f:
        f.write(first + "\n")
    with pytest.raises(DataError, match=r"set_2/test.txt: clip \d{5} is also in set_1/test.txt"):
        prepare("mafw", root, tmp_path / "m.jsonl")


def test_cli_prepare_mafw(corpus, tmp_path, capsys):
    from vavl.cli import main

    root = corpus[0]
    assert main(["prepare", "mafw", "--root", str(root), "--out", str(tmp_path / "m.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "wrote 67 clips" in err and "10 clips have no single label" in err
    counts = collections.Counter(r["folds"].get("hicmae-3") for r in read_manifest(tmp_path / "m.jsonl"))
    assert counts == {"train": 44, "test": 11, None: 12}
    assert main(["prepare", "mafw", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_hicmae_folds_score_as_they_are_and_ask_for_a_dev_split_to_train(corpus, tmp_path):
    from vavl.data.datasets import select_records, training_splits

    prepare("mafw", corpus[0], tmp_path / "m.jsonl", drop_ambiguous=True, log=QUIET)
    records = read_manifest(tmp_path / "m.jsonl")
    assert len(select_records(records, "hicmae-2", "test", None)) == 11     # set 2 less the two without audio
    with pytest.raises(DataError, match="no dev clips under protocol 'hicmae-2'"):
        training_splits(records, "hicmae-2", None)
