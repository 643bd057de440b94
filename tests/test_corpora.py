"""Corpus indexers on the real CREMA-D metadata and VAVL partitions (tests/data, vavl/data/partitions), with trees of
empty files named as the corpora name their media."""
import collections
import csv
import json
from pathlib import Path

import pytest

from vavl.data import read_manifest, split_records
from vavl.data.corpora import msp_improv
from vavl.data.prepare import prepare
from vavl.core.errors import DataError

CREMA = Path(__file__).resolve().parent / "data" / "crema-d"
PARTITIONS = Path(__file__).resolve().parents[1] / "vavl" / "data" / "partitions"
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
VOTES = dict(zip("ADFHNS", ("angry", "disgust", "fear", "happy", "neutral", "sad")))


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def crema_names():
    return [r["Filename"] for r in rows(CREMA / "SentenceFilenames.csv")]


@pytest.fixture(scope="module")
def crema_tree(tmp_path_factory, crema_names):
    root = tmp_path_factory.mktemp("crema")
    for sub, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (root / sub).mkdir()
        for name in crema_names:
            (root / sub / f"{name}.{suffix}").touch()
    return root


_MANIFESTS = {}


def crema(tree, tmp_path, **options):
    """Manifest records and summary for these options (each made once per test session)."""
    key = tuple(sorted(options.items()))
    if key not in _MANIFESTS:
        out = tmp_path / "crema.jsonl"
        summary = prepare("crema-d", tree, out, metadata_dir=CREMA, log=open("/dev/null", "w"), **options)
        _MANIFESTS[key] = read_manifest(out), summary
    return _MANIFESTS[key]


def test_crema_intended_labels_and_speakers_follow_the_names(crema_tree, crema_names, tmp_path):
    records, _ = crema(crema_tree, tmp_path)
    assert len(crema_names) == 7442 and [r["id"] for r in records] == crema_names
    want = collections.Counter(EMOTIONS[n.split("_")[2]] for n in crema_names)
    assert collections.Counter(r["label"] for r in records) == want
    demo = {r["ActorID"]: r["Sex"].lower() for r in rows(CREMA / "VideoDemographics.csv")}
    assert all(r["speaker"] == r["id"][:4] and r["gender"] == demo[r["speaker"]] for r in records)
    assert len({r["speaker"] for r in records}) == 91
    assert all(Path(r["audio"]).name == r["id"] + ".wav" and Path(r["video"]).parent.name == "VideoFlash" for r in records)


@pytest.mark.parametrize("label,column", [("perceived-av", "MultiModalVote"), ("perceived-audio", "VoiceVote"),
                                          ("perceived-video", "FaceVote")])
def test_crema_perceived_labels_equal_summary_table(crema_tree, tmp_path, label, column):
    records, summary = crema(crema_tree, tmp_path, label=label)
    table = {r["FileName"]: r[column] for r in rows(CREMA / "summaryTable.csv")}
    ties = 0
    for r in records:
        vote = table[r["id"]]
        if ":" in vote:      # a tie is never made into one class
            assert r["label"] is None
            ties += 1
        else:
            assert r["label"] == VOTES[vote]
    assert ties == len(summary["ambiguous"]) > 100
    dropped, s2 = crema(crema_tree, tmp_path, label=label, drop_ambiguous=True)
    assert len(dropped) == 7442 - ties and all(r["label"] for r in dropped)


def test_crema_soft_labels_are_the_vote_shares(crema_tree, tmp_path):
    records, _ = crema(crema_tree, tmp_path, label="soft")
    votes = {r["fileName"]: r for r in rows(CREMA / "tabulatedVotes.csv") if r[""].startswith("3")}
    for r in records[::97]:
        v = votes[r["id"]]
        total = sum(int(v[k]) for k in "ADFHNS")
        assert r["label_distribution"] == pytest.approx({VOTES[k]: int(v[k]) / total for k in "ADFHNS"})
        assert r["label"] == (None if ":" in v["emoVote"] else VOTES[v["emoVote"]])


def test_crema_speaker_folds_are_actor_disjoint_and_cover_every_clip_once(crema_tree, tmp_path):
    records, _ = crema(crema_tree, tmp_path)
    fold_of_actor = collections.defaultdict(set)
    for r in records:
        fold_of_actor[r["speaker"]].add(r["folds"]["speaker-5fold"])
    assert all(len(f) == 1 for f in fold_of_actor.values())
    tests = [split_records(records, "speaker-5fold", k)["test"] for k in range(5)]
    assert sorted(r["id"] for t in tests for r in t) == sorted(r["id"] for r in records)
    assert all(1300 < len(t) < 1600 for t in tests)
    split = split_records(records, "speaker-5fold", 0)
    spk = {k: {r["speaker"] for r in v} for k, v in split.items()}
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["dev"]) and not (spk["dev"] & spk["test"])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_crema_vavl_partitions_reproduce_the_published_membership(crema_tree, tmp_path, k):
    records, _ = crema(crema_tree, tmp_path)
    published = collections.defaultdict(set)
    for r in rows(PARTITIONS / "CREMA-D" / f"label_consensus_6class_M_{k}.csv"):
        published[{"Train": "train", "Development": "dev", "Test": "test"}[r["Split_Set"]]].add(r["FileName"][:-4])
    ours = split_records(records, f"vavl-{k}")
    assert {s: {r["id"] for r in v} for s, v in ours.items()} == dict(published)


def test_crema_consensus_labels_give_every_partition_the_official_labelled_test_set(crema_tree, tmp_path):
    """labels.consensus-av = the argmax of the consensus files the official code scores: with it every
    VAVL partition's labelled test set is the official one, the six clips whose votes tie included."""
    from vavl.core.labels import CREMA_D_CLASSES

    records, _ = crema(crema_tree, tmp_path, label="perceived-av")
    by_id = {r["id"]: r for r in records}
    ties = {"1039_MTI_ANG_XX": "disgust", "1067_IEO_FEA_LO": "disgust", "1089_IEO_FEA_MD": "sad",
            "1009_TSI_SAD_XX": "fear", "1024_IOM_NEU_XX": "sad", "1028_ITH_SAD_XX": "fear"}
    for clip, label in ties.items():   # consensus shares 0.532 vs 0.428; the vote counts tie
        assert by_id[clip]["labels"]["perceived-av"] is None and by_id[clip]["labels"]["consensus-av"] == label
    in_partitions = {r["id"] for r in records if r["folds"].get("vavl-1")}
    assert all(by_id[c]["labels"]["consensus-av"] in CREMA_D_CLASSES for c in in_partitions)
    agree = sum(by_id[c]["labels"]["consensus-av"] == by_id[c]["labels"]["perceived-av"] for c in in_partitions)
    assert (len(in_partitions), agree) == (5820, 5814)
    lost = {}
    for k in range(1, 6):
        official = {r["FileName"][:-4]: max(CREMA_D_CLASSES, key=lambda c: float(r[c]))
                    for r in rows(PARTITIONS / "CREMA-D" / f"label_consensus_6class_M_{k}.csv") if r["Split_Set"] == "Test"}
        test = split_records(records, f"vavl-{k}")["test"]
        assert {r["id"]: r["labels"]["consensus-av"] for r in test} == official
        lost[k] = sum(r["labels"]["perceived-av"] is None for r in test)
    assert lost == {1: 0, 2: 1, 3: 3, 4: 0, 5: 0}   # what scoring labels.perceived-av leaves out of the official test sets


def test_crema_missing_media_is_reported_then_kept_or_dropped(crema_names, tmp_path):
    root = tmp_path / "crema"
    for sub, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (root / sub).mkdir(parents=True)
        for name in crema_names[:60]:
            (root / sub / f"{name}.{suffix}").touch()
    (root / "VideoFlash" / f"{crema_names[3]}.flv").unlink()
    (root / "AudioWAV" / f"{crema_names[5]}.wav").unlink()
    # the metadata lists all 7,442 clips: 7,382 have no media at all
    with open(tmp_path / "log.txt", "w") as log:
        summary = prepare("crema-d", root, tmp_path / "keep.jsonl", metadata_dir=CREMA, log=log)
    report = (tmp_path / "log.txt").read_text()
    assert "7383 of 7442 clips have no video file (kept without video)" in report
    assert "7383 of 7442 clips have no audio file (kept without audio), e.g. 1001_IEO_SAD_MD" in report
    assert "7382 clips have no media at all (dropped)" in report
    kept = {r["id"]: r for r in read_manifest(tmp_path / "keep.jsonl")}
    assert summary["clips"] == len(kept) == 60
    assert kept[crema_names[3]]["video"] is None and kept[crema_names[3]]["audio"]
    assert kept[crema_names[5]]["audio"] is None and kept[crema_names[5]]["video"]
    summary = prepare("crema-d", root, tmp_path / "drop.jsonl", metadata_dir=CREMA, missing="drop",
                      log=open(tmp_path / "log2.txt", "w"))
    assert summary["clips"] == 58 and {crema_names[3], crema_names[5]} <= set(summary["dropped_missing"])


def test_crema_metadata_in_the_corpus_layout_indexes_all_clips(crema_tree, tmp_path):
    """Metadata found in <root>/processedResults without --metadata-dir: all 7,442 clips indexed.
    (How fast: gpu_suite.py times `vavl prepare` on a CREMA-D-sized tree; no timed unit tests.)"""
    import shutil

    root = tmp_path / "c"
    root.mkdir()
    for sub in ("AudioWAV", "VideoFlash"):
        (root / sub).symlink_to(crema_tree / sub)
    (root / "processedResults").mkdir()
    for name in ("summaryTable.csv", "tabulatedVotes.csv"):
        shutil.copy(CREMA / name, root / "processedResults" / name)
    shutil.copy(CREMA / "VideoDemographics.csv", root)
    summary = prepare("crema-d", root, tmp_path / "m.jsonl", label="perceived-av", log=open("/dev/null", "w"))
    assert summary["clips"] == 7442 and len(read_manifest(tmp_path / "m.jsonl")) == 7442


# ---- RAVDESS -------------------------------------------------------------------------------
def ravdess_tree(root):
    names = []
    for actor in range(1, 25):
        for emotion in range(1, 9):
            for channel in ("01", "02"):
                if channel == "02" and emotion in (2, 7, 8):
                    continue    # fewer song files, as in the corpus
                tail = f"{channel}-{emotion:02d}-01-01-01-{actor:02d}"
                names += [f"01-{tail}.mp4", f"03-{tail}.wav"]
    # utterances with unusual file sets: video-only + audio-only pair, audio-only, video-only
    names += ["02-01-03-02-02-02-05.mp4", "03-01-03-02-02-02-05.wav", "03-01-04-02-02-02-05.wav",
              "02-01-05-02-02-02-05.mp4", "notes.txt", "01-01-09-01-01-01-05.mp4"]
    for name in names:
        actor = name[-6:-4] if name.endswith((".mp4", ".wav")) else "01"
        path = root / f"Actor_{actor}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return root


def test_ravdess_pairs_files_per_utterance_and_folds_by_actor(tmp_path):
    root = ravdess_tree(tmp_path / "ravdess")
    summary = prepare("ravdess", root, tmp_path / "r.jsonl", log=open("/dev/null", "w"))
    records = {r["id"]: r for r in read_manifest(tmp_path / "r.jsonl")}
    assert summary["clips"] == len(records) == 24 * (8 + 5) + 3
    r = records["01-05-01-01-01-12"]
    assert Path(r["video"]).name == "01-01-05-01-01-01-12.mp4" and Path(r["audio"]).name == "03-01-05-01-01-01-12.wav"
    assert (r["label"], r["speaker"], r["gender"], r["channel"]) == ("angry", "12", "female", "speech")
    pair = records["01-03-02-02-02-05"]
    assert Path(pair["video"]).name.startswith("02-") and Path(pair["audio"]).name.startswith("03-")
    assert records["01-04-02-02-02-05"]["video"] is None and records["01-05-02-02-02-05"]["audio"] is None
    assert records["02-03-01-01-01-01"]["channel"] == "song"
    actors = collections.defaultdict(set)
    for r in records.values():
        actors[r["folds"]["speaker-6fold"]].add(int(r["speaker"]))
    assert sorted(actors) == list(range(6)) and all(len(a) == 4 for a in actors.values())
    assert all({x % 2 for x in a} == {0, 1} for a in actors.values())


# ---- MSP-IMPROV ----------------------------------------------------------------------------
def msp_tree(root, ids):
    for clip_id in ids:
        info = msp_improv.parse_id(clip_id)
        folder = f"session{info['session']}/{clip_id[11:15]}/{clip_id[20]}"
        for kind, suffix in (("Audio", "wav"), ("Video", "avi")):
            path = root / kind / folder / f"{clip_id}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root


def test_msp_improv_vavl_csv_attributes_sessions_and_partitions(tmp_path):
    label_file = PARTITIONS / "MSP-IMPROV" / "labels_consensus_EmoP_4class_D_1.csv"
    table = {r["FileName"][:-4]: r for r in rows(label_file)}
    root = msp_tree(tmp_path / "msp", list(table)[:-5])    # the last five clips have no media
    summary = prepare("msp-improv", root, tmp_path / "m.jsonl", labels=label_file, log=open("/dev/null", "w"))
    records = read_manifest(tmp_path / "m.jsonl")
    assert summary["listed"] == len(table) == 8385 and len(summary["missing_audio"]) == 5 == len(summary["dropped_no_media"])
    assert len(records) == 8380
    for r in records[::50]:
        row = table[r["id"]]
        assert r["attributes"] == {"arousal": float(row["EmoAct"]), "valence": float(row["EmoVal"]),
                                   "dominance": float(row["EmoDom"])}
        assert r["speaker"][1:] == f"{int(row['SpkrID']):02d}" and r["gender"] == row["Gender"].lower()
        assert r["folds"]["session-6fold"] == int(row["SpkrID"]) - 1
    sessions = collections.defaultdict(set)
    for r in records:
        sessions[r["folds"]["session-6fold"]].add(r["speaker"])
    assert {k: len(v) for k, v in sessions.items()} == {k: 2 for k in range(6)}
    for k in (1, 5):
        published = {r["FileName"][:-4]: r["Split_Set"] for r in rows(PARTITIONS / "MSP-IMPROV" /
                                                                          f"labels_consensus_EmoP_4class_D_{k}.csv")}
        names = {"Train": "train", "Development": "dev", "Test": "test"}
        assert all(r["folds"][f"vavl-{k}"] == names[published[r["id"]]] for r in records)


def test_msp_improv_evaluation_txt(tmp_path):
    ids = ["MSP-IMPROV-S01A-F01-S-FM01", "MSP-IMPROV-S02H-M03-P-MF02", "MSP-IMPROV-S03N-F06-T-FM03"]
    root = msp_tree(tmp_path / "msp", ids)
    (root / "Evalution.txt").write_text(
        "UTD-IMPROV-S01A-F01-S-FM01.avi; A; A:2.000000; V:1.500000; D:4.000000; N:3.000000;\n"
        "UTD-IMPROV-S01A-F01-S-FM01-p001.avi; Angry; Frustrated; A:2; V:1; D:4; N:3;\n\n"
        "UTD-IMPROV-S02H-M03-P-MF02.avi; H; A:1.000000; V:4.500000; D:3.000000; N:2.000000;\n\n"
        "UTD-IMPROV-S03N-F06-T-FM03.avi; O; A:3.000000; V:3.000000; D:3.000000; N:4.000000;\n")
    prepare("msp-improv", root, tmp_path / "m.jsonl", log=open("/dev/null", "w"))
    records = {r["id"]: r for r in read_manifest(tmp_path / "m.jsonl")}
    assert set(records) == set(ids)
    first = records[ids[0]]
    assert first["label"] == "angry" and first["attributes"] == {"arousal": 4.0, "valence": 1.5, "dominance": 4.0}
    assert records[ids[1]]["label"] == "happy" and records[ids[1]]["speaker"] == "M03"
    assert records[ids[2]]["label"] is None and records[ids[2]]["folds"]["session-6fold"] == 5
    assert Path(first["video"]).parts[-4:] == ("session1", "S01A", "S", f"{ids[0]}.avi")



MSP_PAIR = ["MSP-IMPROV-S01A-F01-S-FM01", "MSP-IMPROV-S02H-M01-S-MF01", "MSP-IMPROV-S03N-F01-S-FM02", "MSP-IMPROV-S04S-M01-S-MF02"]


def test_msp_improv_arousal_means_the_same_from_evalution_txt_and_the_vavl_csv(tmp_path):
    """5 = most aroused from either source: the VAVL CSV as it is (its angry / happy scenarios score higher),
    an Evalution.txt that runs the other way flipped, one that runs this way kept; the shipped partition
    file itself runs calm -> aroused; a file that cannot tell is refused."""
    root = msp_tree(tmp_path / "msp", MSP_PAIR)
    calm_to_aroused = {MSP_PAIR[0]: 4.0, MSP_PAIR[1]: 3.5, MSP_PAIR[2]: 2.0, MSP_PAIR[3]: 1.5}   # angry, happy, neutral, sad
    (root / "vavl.csv").write_text("FileName,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n" + "".join(
        f"{c}.wav,{a},3,3,1,Female,Train\n" for c, a in calm_to_aroused.items()))
    letter = {0: "A", 1: "H", 2: "N", 3: "S"}

    def evalution(values):
        return "".join(f"UTD-IMPROV-{c[11:]}.avi; {letter[k]}; A:{values[c]:.6f}; V:3.0; D:3.0; N:3.0;\n\n"
                       for k, c in enumerate(MSP_PAIR))

    def arousal(**options):
        prepare("msp-improv", root, tmp_path / "m.jsonl", log=open("/dev/null", "w"), **options)
        return {r["id"]: r["attributes"]["arousal"] for r in read_manifest(tmp_path / "m.jsonl")}

    from_csv = arousal(labels=root / "vavl.csv")
    assert from_csv == calm_to_aroused
    (root / "Evalution.txt").write_text(evalution({c: 6.0 - a for c, a in calm_to_aroused.items()}))   # 1 = most aroused
    assert arousal() == from_csv
    (root / "Evalution.txt").write_text(evalution(calm_to_aroused))                                    # 5 = most aroused
    assert arousal() == from_csv
    assert arousal(flip_arousal=True) == {c: 6.0 - a for c, a in calm_to_aroused.items()}              # asked: as asked
    assert from_csv[MSP_PAIR[0]] > from_csv[MSP_PAIR[2]]                                                # angry above neutral
    table = msp_improv.read_label_csv(PARTITIONS / "MSP-IMPROV" / "labels_consensus_EmoP_4class_D_1.csv")
    assert msp_improv.runs_calm_to_aroused(table, Path("partition file"))
    (root / "Evalution.txt").write_text(evalution({c: 3.0 for c in MSP_PAIR}))
    with pytest.raises(DataError, match="--flip-arousal"):
        arousal()
    assert set(arousal(flip_arousal=False).values()) == {3.0}

# ---- custom --------------------------------------------------------------------------------
def test_custom_csv(tmp_path):
    (tmp_path / "media").mkdir()
    for name in ("a.mp4", "b.wav", "c.mp4", "c.wav"):
        (tmp_path / "media" / name).touch()
    (tmp_path / "labels.csv").write_text(
        "path,audio,video,label,speaker,arousal,split\n"
        "media/a.mp4,,,happy,s1,3.5,train\n"
        "media/b.wav,,,sad,s2,,test\n"
        ",media/c.wav,media/c.mp4,,s3,2.0,dev\n"
        "media/gone.mp4,,,sad,s1,1.0,train\n")
    summary = prepare("custom", tmp_path, tmp_path / "m.jsonl", log=open("/dev/null", "w"))
    records = {r["id"]: r for r in read_manifest(tmp_path / "m.jsonl")}
    assert summary["dropped_no_media"] == ["media/gone"] and set(records) == {"media/a", "media/b", "media/c"}
    assert records["media/a"]["audio"] == records["media/a"]["video"] == str((tmp_path / "media" / "a.mp4").resolve())
    assert records["media/b"]["video"] is None and records["media/b"]["attributes"] is None
    assert records["media/c"]["attributes"] == {"arousal": 2.0} and records["media/c"]["label"] is None
    assert split_records(list(records.values()), "split")["dev"][0]["id"] == "media/c"


def test_custom_ids_are_unique_or_refused_at_prepare_time(tmp_path):
    for speaker in ("s1", "s2"):
        (tmp_path / speaker).mkdir()
        (tmp_path / speaker / "001.mp4").touch()
    (tmp_path / "labels.csv").write_text("path,label\ns1/001.mp4,happy\ns2/001.mp4,sad\n")
    prepare("custom", tmp_path, tmp_path / "m.jsonl", log=open("/dev/null", "w"))
    assert [r["id"] for r in read_manifest(tmp_path / "m.jsonl")] == ["s1/001", "s2/001"]
    (tmp_path / "ids.csv").write_text("id,path,label\nx,s1/001.mp4,happy\nx,s2/001.mp4,sad\n")
    with pytest.raises(DataError, match=r"ids.csv:3: clip id 'x' is also the id of line 2"):
        prepare("custom", tmp_path / "ids.csv", tmp_path / "m.jsonl")


@pytest.mark.parametrize("content,says", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00binary" * 20, "not a UTF-8 text table"),
    (b"path,label\nclip.mp4,\"" + b"x" * 200_000 + b"\"\n", "not a readable CSV"),   # past csv's field size limit
    (b"path,label,fold\nclip.mp4,happy,one\n", "labels.csv:2: column fold: 'one' is not a whole number"),
    (b"path,label,arousal\nclip.mp4,happy,3.0\nclip2.mp4,sad,high\n", None),   # not numeric: not an attribute
])
def test_custom_csv_that_cannot_be_read_is_one_clear_error(tmp_path, content, says):
    (tmp_path / "clip.mp4").touch()
    (tmp_path / "clip2.mp4").touch()
    (tmp_path / "labels.csv").write_bytes(content)
    if says is None:
        prepare("custom", tmp_path, tmp_path / "m.jsonl", log=open("/dev/null", "w"))
        assert all(r["attributes"] is None for r in read_manifest(tmp_path / "m.jsonl"))
        return
    with pytest.raises(DataError, match=says):
        prepare("custom", tmp_path, tmp_path / "m.jsonl")


@pytest.mark.parametrize("table", ["garbage\n\x01\x02 not a table\n", "FileName,Something\n1001_DFA_ANG_XX,x\n"])
def test_crema_d_metadata_that_is_not_the_corpus_tables_names_the_file(tmp_path, table):
    (tmp_path / "summaryTable.csv").write_text(table)
    with pytest.raises(DataError, match=r"summaryTable.csv: lacks the column\(s\)"):
        prepare("crema-d", tmp_path, tmp_path / "m.jsonl", metadata_dir=tmp_path)


# ---- the command line ----------------------------------------------------------------------
def test_cli_prepare_and_user_errors(tmp_path, capsys):
    from vavl.cli import main

    root = ravdess_tree(tmp_path / "ravdess")
    assert main(["prepare", "ravdess", "--root", str(root), "--out", str(tmp_path / "r.jsonl")]) == 0
    assert "wrote 315 clips" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["folds"]
    assert main(["prepare", "crema-d", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1
    assert main(["prepare", "msp-improv", "--root", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--labels" in capsys.readouterr().err
    with pytest.raises(DataError, match="unknown corpus"):
        prepare("no-such-corpus", tmp_path, tmp_path / "x.jsonl")
