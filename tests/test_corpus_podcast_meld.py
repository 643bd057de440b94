"""MSP-Podcast and MELD in their released layouts (synthetic, vavl.data.synthetic_layouts), and the
speaker-leak check every prepared protocol goes through."""
import collections

import pytest

from vavl.core.errors import DataError
from vavl.data import read_manifest, split_records
from vavl.data.prepare import prepare
from vavl.data.synthetic_layouts import make_meld, make_msp_podcast

QUIET = open("/dev/null", "w")
FOLDER = {"train": "train/train_splits", "dev": "dev/dev_splits_complete", "test": "test/output_repeated_splits_test"}
EIGHT = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
         "N": "neutral"}
NAMES = {"Angry": "angry", "Sad": "sad", "Happy": "happy", "Surprise": "surprise", "Fear": "fear",
         "Disgust": "disgust", "Contempt": "contempt", "Neutral": "neutral"}


def records_of(corpus, root, out, **options):
    summary = prepare(corpus, root, out, log=QUIET, **options)
    return {r["id"]: r for r in read_manifest(out)}, summary


# ---- MSP-Podcast ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def podcast(tmp_path_factory):
    root = tmp_path_factory.mktemp("podcast")
    return root, make_msp_podcast(root)


def test_msp_podcast_classes_other_and_no_agreement_speakers_attributes(podcast, tmp_path):
    root, truth = podcast
    records, summary = records_of("msp-podcast", root, tmp_path / "m.jsonl")
    assert summary["clips"] == len(records) == len(truth) == 60
    for t in truth:
        r = records[t["id"]]
        assert r["label"] == EIGHT.get(t["code"])
        assert r["emotion"] == EIGHT.get(t["code"]) or r["emotion"] == {"O": "other", "X": "no-agreement"}[t["code"]]
        assert r["attributes"] == t["attributes"] and r["video"] is None and r["corpus"] == "MSP-Podcast"
        assert r["audio"].endswith(f"Audios/{t['id']}.wav") and r["text"] == t["text"]
        if t["speaker"] == "Unknown":        # never invented
            assert r["speaker"] is None and r["gender"] is None
        else:
            assert r["speaker"] == t["speaker"] and r["gender"] == t["gender"].lower()
    assert sum(r["label"] is None for r in records.values()) == sum(t["code"] in "OX" for t in truth) == 12
    four, _ = records_of("msp-podcast", root, tmp_path / "4.jsonl", label_set="4class")
    assert {r["label"] for r in four.values()} == {"angry", "happy", "neutral", "sad", None}


def test_msp_podcast_soft_labels_are_the_raters_primary_choices(podcast, tmp_path):
    root, truth = podcast
    records, _ = records_of("msp-podcast", root, tmp_path / "m.jsonl")
    for t in truth:
        r = records[t["id"]]
        counted = collections.Counter(NAMES[v] for v in t["votes"] if v in NAMES)
        total = sum(counted.values())
        assert r["raters_outside"] == len(t["votes"]) - total
        assert r["label_distribution"] == pytest.approx({c: counted[c] / total for c in EIGHT.values()})


def test_msp_podcast_test_sets_are_protocols(podcast, tmp_path):
    root, truth = podcast
    records = list(records_of("msp-podcast", root, tmp_path / "m.jsonl")[0].values())
    by_split = collections.defaultdict(set)
    for t in truth:
        by_split[t["split"]].add(t["id"])
    for k in (1, 2, 3):
        parts = split_records(records, f"test{k}")
        assert {s: {r["id"] for r in v} for s, v in parts.items()} == {
            "train": by_split["Train"], "dev": by_split["Development"], "test": by_split[f"Test{k}"]}


def test_msp_podcast_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no Labels/labels_consensus.csv"):
        prepare("msp-podcast", tmp_path, tmp_path / "m.jsonl", log=QUIET)
    make_msp_podcast(tmp_path, clips_per_split=2, detailed=False)
    path = tmp_path / "Labels" / "labels_consensus.csv"
    path.write_text(path.read_text().replace(",Test2\n", ",Test9\n", 1))
    with pytest.raises(DataError, match=r"labels_consensus.csv:\d+: Split_Set 'Test9'"):
        prepare("msp-podcast", tmp_path, tmp_path / "m.jsonl", log=QUIET)


# ---- MELD ----------------------------------------------------------------------------------------
def test_meld_rows_labels_speakers_text_and_the_official_split(tmp_path):
    root = tmp_path / "MELD.Raw"
    truth = make_meld(root)
    records, summary = records_of("meld", root, tmp_path / "m.jsonl")
    assert summary["listed"] == len(truth) == 36 and len(records) == 35
    assert summary["dropped_no_media"] == ["train_dia0_utt3"]     # its .mp4 (audio and video) is missing
    for t in truth:
        if not t["video"]:
            continue
        r = records[t["id"]]
        assert (r["label"], r["labels"]["sentiment"], r["speaker"], r["text"]) == (t["emotion"], t["sentiment"],
                                                                                  t["speaker"], t["text"])
        assert r["audio"] == r["video"] and r["video"].endswith(f"{FOLDER[t['split']]}/{t['id'][len(t['split']) + 1:]}.mp4")
    parts = split_records(list(records.values()), "official-speaker-overlap")
    assert {k: len(v) for k, v in parts.items()} == {"train": 11, "dev": 12, "test": 12}
    sentiment, _ = records_of("meld", root, tmp_path / "s.jsonl", label_set="sentiment")
    assert {r["label"] for r in sentiment.values()} == {"positive", "negative", "neutral"}
    (root / "dev" / "dev_sent_emo.csv").unlink()
    with pytest.raises(DataError, match="dev_sent_emo.csv not found"):
        prepare("meld", root, tmp_path / "x.jsonl", log=QUIET)


# ---- speaker leaks -------------------------------------------------------------------------------
def leaky_custom(root):
    (root / "clips").mkdir(parents=True)
    rows = ["path,label,speaker,split"]
    for i, (speaker, split) in enumerate([("s1", "train"), ("s1", "test"), ("s2", "train"), ("s3", "dev"),
                                          ("s4", "test"), ("s4", "dev"), ("", "test"), ("", "train")]):
        (root / "clips" / f"{i}.wav").touch()
        rows.append(f"clips/{i}.wav,happy,{speaker},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_protocol_that_shares_speakers_is_refused_naming_them(tmp_path):
    root = leaky_custom(tmp_path / "c")
    with pytest.raises(DataError) as err:
        prepare("custom", root, tmp_path / "m.jsonl", log=QUIET)
    message = str(err.value)
    assert "protocol 'split' puts 2 speaker(s) in more than one of its parts: s1 (test, train), s4 (dev, test)" in message
    assert "--allow-speaker-overlap" in message and "\n" not in message and not (tmp_path / "m.jsonl").exists()


def test_with_the_override_the_protocol_name_carries_the_overlap(tmp_path):
    root = leaky_custom(tmp_path / "c")
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        summary = prepare("custom", root, tmp_path / "m.jsonl", allow_speaker_overlap=True, log=f)
    records = read_manifest(tmp_path / "m.jsonl")
    assert summary["overlap_protocols"] == ["split-speaker-overlap"]
    assert all(set(r["folds"]) == {"split-speaker-overlap"} for r in records)
    assert "kept as 'split-speaker-overlap'" in log.read_text()
    assert len(split_records(records, "split-speaker-overlap")["test"]) == 3


def test_the_cli_refuses_a_leak_in_one_line(tmp_path, capsys):
    from vavl.cli import main

    root = leaky_custom(tmp_path / "c")
    assert main(["prepare", "custom", "--root", str(root), "--out", str(tmp_path / "m.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s1 (test, train)" in err
    assert main(["prepare", "custom", "--root", str(root), "--out", str(tmp_path / "m.jsonl"),
                 "--allow-speaker-overlap"]) == 0
    assert "split-speaker-overlap" in (tmp_path / "m.jsonl").read_text()


def test_recipes_and_evaluate_refuse_a_leaky_protocol_at_the_start(tmp_path):
    """A manifest written by hand (or by an older vavl) is checked again where training and scoring split it."""
    from vavl.data.datasets import select_records, training_splits
    from vavl.data.protocols import OVERLAP

    records = [{"id": f"c{i}", "speaker": f"s{i % 3}", "label": "happy",
                "folds": {"p": "train" if i < 6 else "dev" if i < 8 else "test", "k": i % 3}} for i in range(10)]
    for call in (lambda: training_splits(records, "p", None), lambda: select_records(records, "p", "test", None),
                 lambda: split_records(records, "p")):
        with pytest.raises(DataError, match=r"protocol 'p' puts 3 speaker\(s\) in more than one of its parts: "
                                            r"s0 \(dev, test, train\), s1 \(dev, train\), s2 \(test, train\)"):
            call()
    assert len(training_splits(records, "k", 0)["test"]) == 4      # k: speaker s_j in fold j only: no leak
    for r in records:
        r["folds"]["p" + OVERLAP] = r["folds"].pop("p")
    assert len(select_records(records, "p" + OVERLAP, "test", None)) == 2


def test_the_msp_podcast_auxformer_config_trains_with_the_video_missing_everywhere(tmp_path):
    """MSP-Podcast is audio-only: the AuxFormer config learns from cached audio with no clip's video there."""
    import json

    from test_finetune import ROOT, finetune, make_corpus, tiny_overrides

    corpus = make_corpus(tmp_path / "c", missing=lambda i: "visual")
    path = ROOT / "recipes" / "configs" / "msp_podcast" / "auxformer_missing_video.yaml"
    cfg = finetune.load_config(path, tiny_overrides(path, corpus, tmp_path / "out") + ["train.max_steps=2", "train.epochs=1"])
    assert finetune.main(cfg, str(path))["summary"]["step"] == 2
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert results["test/audio"]["n"] == results["test/audio+video"]["n"] == 8 and results["test/video"]["n"] == 0


def test_known_broken_clips_are_reported_and_dropped_on_request(tmp_path):
    """CREMA-D's four clips reported broken upstream (issue #8 of its repository), on the real metadata."""
    from pathlib import Path

    from vavl.data.corpora.crema_d import KNOWN_BAD

    metadata = Path(__file__).resolve().parent / "data" / "crema-d"
    root = tmp_path / "crema"
    for sub, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (root / sub).mkdir(parents=True)
        for name in [*KNOWN_BAD, "1001_DFA_ANG_XX"]:
            (root / sub / f"{name}.{suffix}").touch()
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        summary = prepare("crema-d", root, tmp_path / "m.jsonl", metadata_dir=metadata, log=f)
    assert sorted(summary["known_bad"]) == sorted(KNOWN_BAD) and summary["clips"] == 5
    assert "4 clips are known to be broken in the released corpus (kept;" in log.read_text()
    assert "1076_MTI_SAD_XX (the audio is silent and the video shows no face)" in log.read_text()
    summary = prepare("crema-d", root, tmp_path / "d.jsonl", metadata_dir=metadata, drop_known_bad=True, log=QUIET)
    assert summary["clips"] == 1 and [r["id"] for r in read_manifest(tmp_path / "d.jsonl")] == ["1001_DFA_ANG_XX"]
