"""HiCMAE's folds as the protocols "hicmae-k": on synthetic corpora in each corpus' own layout (empty media
files named as the corpus names them), the train / test clip sets vavl derives equal the official
split files (their SHA-256 digests, tests/fixtures/hicmae-splits/README.md), folds are speaker-disjoint
where the corpus has speakers, and the clips HiCMAE leaves out carry no hicmae key."""
import hashlib
import json
from pathlib import Path

from mafw_corpus import build_mafw, read_folds
from vavl.data import read_manifest, split_records
from vavl.data.corpora import get_indexer, hicmae, msp_improv
from vavl.data.prepare import prepare

HERE = Path(__file__).resolve().parent
CREMA = HERE / "data" / "crema-d"
OFFICIAL = json.loads((HERE / "fixtures" / "hicmae-splits" / "digests.json").read_text())
QUIET = open("/dev/null", "w")


def digest(records):
    return hashlib.sha256("\n".join(sorted(r["id"] for r in records)).encode()).hexdigest()


def check_against_official(records, corpus, speaker_key="speaker"):
    """Every fold: train and test equal HiCMAE's lists, dev is empty (HiCMAE's val is its test), and
    no speaker is on both sides."""
    assert len(OFFICIAL[corpus]) == hicmae.N_FOLDS[corpus]
    for k, official in enumerate(OFFICIAL[corpus], 1):
        split = split_records(records, f"hicmae-{k}")
        for part in ("train", "test"):
            assert (len(split[part]), digest(split[part])) == (official[part]["clips"], official[part]["sha256"]), (k, part)
        assert split["dev"] == []
        if "val" in official:
            assert official["val"] == official["test"]
        if speaker_key:
            assert not {r[speaker_key] for r in split["train"]} & {r[speaker_key] for r in split["test"]}
    tests = [r["id"] for k in range(1, len(OFFICIAL[corpus]) + 1) for r in split_records(records, f"hicmae-{k}")["test"]]
    assert len(tests) == len(set(tests))      # each clip is tested once


def crema_tree(root, names):
    for sub, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (root / sub).mkdir(parents=True)
        for name in names:
            (root / sub / f"{name}.{suffix}").touch()
    return root


def test_crema_d_hicmae_folds_are_the_official_actor_folds_without_the_broken_clips(tmp_path):
    # the folds of all 7,442 clips come from the metadata (the indexer lists clips without opening media) ...
    records = get_indexer("crema-d")(tmp_path, metadata_dir=CREMA)
    check_against_official(records, "crema-d")
    left_out = sorted(r["id"] for r in records if "hicmae-1" not in r["folds"])
    assert left_out == sorted(hicmae.CREMA_D_BROKEN + hicmae.CREMA_D_AUDIO_MISNAMED) and len(records) == 7442
    fold5 = {r["speaker"] for r in split_records(records, "hicmae-5")["test"]}
    assert fold5 == {str(a) for a in range(1073, 1092)}
    # ... and `vavl prepare` writes them into the manifest (a tree of three actors' clips, broken ones included)
    names = [r["id"] for r in records if r["speaker"] in ("1001", "1064", "1091")]
    prepare("crema-d", crema_tree(tmp_path / "CREMA-D", names), tmp_path / "c.jsonl", metadata_dir=CREMA, log=QUIET)
    written = read_manifest(tmp_path / "c.jsonl")
    by_id = {r["id"]: r for r in records}
    assert len(written) == len(names) > 200 and all(r["folds"] == by_id[r["id"]]["folds"] for r in written)
    assert {r["folds"].get("hicmae-1") for r in written} == {"test", "train", None}
    # the label HiCMAE scores is the actor's intended emotion, the default label of `vavl prepare crema-d`
    assert all(r["label"] == r["labels"]["intended"] for r in written)


def test_crema_d_finds_the_audio_file_it_names_1040_ITH_SAD_X(tmp_path):
    ids = ["1040_ITH_SAD_XX", "1040_ITH_ANG_XX"]
    for sub, names in (("AudioWAV", ["1040_ITH_SAD_X.wav", "1040_ITH_ANG_XX.wav"]), ("VideoFlash", [f"{i}.flv" for i in ids])):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).touch()
    (tmp_path / "summaryTable.csv").write_text("FileName,VoiceVote,FaceVote,MultiModalVote\n" +
                                               "".join(f"{i},S,S,S\n" for i in ids))
    summary = prepare("crema-d", tmp_path, tmp_path / "c.jsonl", metadata_dir=tmp_path, log=QUIET)
    records = {r["id"]: r for r in read_manifest(tmp_path / "c.jsonl")}
    assert summary["missing_audio"] == [] and Path(records["1040_ITH_SAD_XX"]["audio"]).name == "1040_ITH_SAD_X.wav"
    assert Path(records["1040_ITH_ANG_XX"]["audio"]).name == "1040_ITH_ANG_XX.wav"


def test_ravdess_hicmae_folds_are_the_official_speech_folds(tmp_path):
    root = tmp_path / "RAVDESS"
    for actor in range(1, 25):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            for intensity in ((1,) if emotion == 1 else (1, 2)):
                for statement in (1, 2):
                    for rep in (1, 2):
                        tail = f"{emotion:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}"
                        for name in (f"01-01-{tail}.mp4", f"03-01-{tail}.wav", f"02-01-{tail}.mp4"):
                            (folder / name).touch()
                        if emotion <= 6:          # song: six emotions, not in HiCMAE's folds
                            (folder / f"01-02-{tail}.mp4").touch()
    prepare("ravdess", root, tmp_path / "r.jsonl", log=QUIET)
    records = read_manifest(tmp_path / "r.jsonl")
    check_against_official(records, "ravdess")
    assert {r["channel"] for r in records if "hicmae-1" not in r["folds"]} == {"song"}
    speech = [r for r in records if r["channel"] == "speech"]
    assert len(speech) == 1440 and all("hicmae-6" in r["folds"] for r in speech)
    assert all(r["folds"][f"hicmae-{r['folds']['speaker-6fold'] + 1}"] == "test" for r in speech)


def test_msp_improv_hicmae_folds_leave_one_session_out_on_the_listed_clips(tmp_path):
    listed = sorted(hicmae._msp_improv_clips())
    extra = ["MSP-IMPROV-S01A-F01-R-FM01", "MSP-IMPROV-S05S-M05-T-MF09"]   # clips HiCMAE does not list
    assert not set(extra) & set(listed)
    labels = tmp_path / "labels.csv"
    labels.write_text("FileName,EmoClass\n" + "".join(f"{c}.wav,{'AHNS'[i % 4]}\n" for i, c in enumerate(listed + extra)))
    records = get_indexer("msp-improv")(tmp_path, labels=labels)     # lists clips from the label file
    check_against_official(records, "msp-improv")
    assert sorted(r["id"] for r in records if "hicmae-1" not in r["folds"]) == sorted(extra)
    for k in range(1, 7):
        test = split_records(records, f"hicmae-{k}")["test"]
        assert {r["session"] for r in test} == {k} and len({r["speaker"] for r in test}) == 2
    # `vavl prepare` on the corpus layout (a few clips of each session) keeps the folds
    some = listed[::400] + extra
    root = tmp_path / "MSP-IMPROV"
    for clip_id in some:
        info = msp_improv.parse_id(clip_id)
        for kind, suffix in (("Audio", "wav"), ("Video", "avi")):
            path = root / kind / f"session{info['session']}" / clip_id[11:15] / clip_id[20] / f"{clip_id}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    prepare("msp-improv", root, tmp_path / "m.jsonl", labels=labels, missing="drop", log=QUIET)
    by_id = {r["id"]: r for r in records}
    written = read_manifest(tmp_path / "m.jsonl")
    assert sorted(r["id"] for r in written) == sorted(some)
    assert all(r["folds"] == by_id[r["id"]]["folds"] for r in written)


def test_mafw_hicmae_folds_are_mafws_sets_less_the_clips_without_audio(tmp_path):
    # MAFW's 9,172 single-label clip ids and sets, in MAFW's layout (lists only: the indexer needs no media)
    single = read_folds(HERE / "fixtures" / "hicmae-splits" / "mafw_single_folds.txt")
    build_mafw(tmp_path / "MAFW", single, media=False)
    records = get_indexer("mafw")(tmp_path / "MAFW")
    check_against_official(records, "mafw", speaker_key=None)     # MAFW names no speakers
    assert sorted(r["id"] for r in records if "hicmae-1" not in r["folds"]) == sorted(hicmae.MAFW_NO_AUDIO)
    assert all(r["folds"]["mafw-1"] for r in records) and len(records) == 9172


def test_clips_outside_hicmaes_speakers_get_no_fold():
    assert hicmae.crema_d_fold("1000_DFA_ANG_XX") is None and hicmae.crema_d_fold("1092_DFA_ANG_XX") is None
    assert hicmae.crema_d_fold("1091_DFA_ANG_XX") == 5 and hicmae.crema_d_fold("1018_DFA_ANG_XX") == 1
    assert hicmae.ravdess_fold(25, "speech") is None and hicmae.ravdess_fold(24, "song") is None
    assert hicmae.folds("ravdess", None) == {} and hicmae.folds("ravdess", hicmae.ravdess_fold(24, "speech")) == {
        **{f"hicmae-{k}": "train" for k in range(1, 6)}, "hicmae-6": "test"}
