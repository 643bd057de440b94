"""IEMOCAP in its released layout (synthetic, vavl.data.synthetic_layouts): speakers from the turn id,
label sets, consensus attributes, the two leave-one-out protocols, transcripts, and clips cut from
the two-face dialog video by the turn's time stamps."""
import collections
import json

import numpy as np
import pytest

from vavl.core.errors import DataError
from vavl.data import read_manifest, split_records
from vavl.data.prepare import prepare
from vavl.data.synthetic_layouts import frame_index, make_iemocap
from vavl.media import decode

QUIET = open("/dev/null", "w")
FOUR = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap")
    return root, make_iemocap(root)


def manifest(root, out, **options):
    summary = prepare("iemocap", root, out, log=QUIET, cut_video=False, **options)
    return {r["id"]: r for r in read_manifest(out)}, summary


def test_every_turn_is_indexed_with_its_speaker_from_the_turn_id(corpus, tmp_path):
    root, truth = corpus
    records, summary = manifest(root, tmp_path / "m.jsonl")
    assert summary["clips"] == len(records) == len(truth) == 5 * 2 * 6
    for t in truth:
        r = records[t["id"]]
        assert r["speaker"] == f"S{t['session']}{t['letter']}" and r["gender"] == {"F": "female", "M": "male"}[t["letter"]]
        assert r["text"] == t["text"] and r["dialog"] == t["dialog"] and r["corpus"] == "IEMOCAP"
        assert r["attributes"] == {"valence": t["valence"], "arousal": t["arousal"], "dominance": t["dominance"]}
        assert r["audio"].endswith(f"Session{t['session']}/sentences/wav/{t['dialog']}/{t['id']}.wav")
    # a dialog named for the female actor holds turns the male actor speaks, and the other way round
    spoken_by_m = [t for t in truth if t["marker"] == "F" and t["letter"] == "M"]
    assert spoken_by_m and all(records[t["id"]]["speaker"].endswith("M") for t in spoken_by_m)
    assert len({r["speaker"] for r in records.values()}) == 10


@pytest.mark.parametrize("label_set,mapping", [
    ("4class", FOUR),
    ("6class", {"ang": "angry", "hap": "happy", "exc": "excited", "sad": "sad", "fru": "frustrated", "neu": "neutral"}),
])
def test_label_sets(corpus, tmp_path, label_set, mapping):
    root, truth = corpus
    records, _ = manifest(root, tmp_path / "m.jsonl", label_set=label_set)
    assert all(records[t["id"]]["label"] == mapping.get(t["emotion"]) for t in truth)
    assert all(records[t["id"]]["emotion"] == t["emotion"] for t in truth)
    kept, summary = manifest(root, tmp_path / "d.jsonl", label_set=label_set, drop_unlabelled=True)
    assert len(kept) == sum(t["emotion"] in mapping for t in truth) < len(truth)
    assert len(summary["dropped_unlabelled"]) == len(truth) - len(kept)
    assert collections.Counter(r["label"] for r in kept.values()) == collections.Counter(
        mapping[t["emotion"]] for t in truth if t["emotion"] in mapping)


def test_leave_one_session_and_one_speaker_out(corpus, tmp_path):
    root, _ = corpus
    records = list(manifest(root, tmp_path / "m.jsonl")[0].values())
    for fold in range(5):
        split = split_records(records, "session-5fold", fold)
        assert {r["session"] for r in split["test"]} == {fold + 1}
        assert {r["session"] for r in split["dev"]} == {(fold + 1) % 5 + 1}
    for fold in range(10):
        split = split_records(records, "speaker-10fold", fold)
        speakers = {k: {r["speaker"] for r in v} for k, v in split.items()}
        assert speakers["test"] == {f"S{fold // 2 + 1}{'FM'[fold % 2]}"} and len(speakers["train"]) == 8
        assert not (speakers["train"] & speakers["test"]) and not (speakers["dev"] & speakers["test"])


def test_a_broken_turn_line_names_the_file(tmp_path):
    make_iemocap(tmp_path, sessions=(2,), turns_per_dialog=2)
    path = tmp_path / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt"
    path.write_text(path.read_text().replace("]\nC-E2", ", 9.0]\nC-E2", 1))
    with pytest.raises(DataError, match=r"Ses02F_impro01.txt:\d+: expected \[V, A, D\]"):
        prepare("iemocap", tmp_path, tmp_path / "m.jsonl", log=QUIET, cut_video=False)
    with pytest.raises(DataError, match="no Session1..Session5"):
        prepare("iemocap", tmp_path / "Session2", tmp_path / "m.jsonl", log=QUIET)


def test_clips_are_cut_by_time_stamp_with_the_speaking_actors_face(tmp_path):
    """Two faces in every dialog frame: on red left, on blue right. The actor named by the dialog (wearing
    the markers) sits left: in Ses01F_impro01 the F turns show the red face, the M turns the blue one."""
    from vavl.media.faces import FaceCropper

    root = tmp_path / "iemocap"
    truth = make_iemocap(root, sessions=(1,), turns_per_dialog=3, media=True)
    out = tmp_path / "m.jsonl"
    summary = prepare("iemocap", root, out, log=QUIET)
    records = {r["id"]: r for r in read_manifest(out)}
    assert len(summary["clips_cut"]) == len(truth) == 6
    for t in truth:
        r = records[t["id"]]
        clip = decode(r["video"], fps=10, audio=False)
        frames = clip.frames.astype(float)
        face = frames[:, 10:80, :20].mean(axis=(0, 1, 2))             # the background beside the face
        left = t["letter"] == t["marker"]
        assert (face[0] > face[2] + 20) if left else (face[2] > face[0] + 20), (t["id"], face)
        assert frames.shape[2] == 128                                  # one half, the frames of [start, end)
        assert [frame_index(f) for f in clip.frames] == list(range(round(t["start"] * 10), round(t["end"] * 10)))
        assert r["video_source"] == {"file": str((root / "Session1/dialog/avi/DivX" / f"{t['dialog']}.avi").resolve()),
                                     "start": t["start"], "end": t["end"], "side": "left" if left else "right"}
    track = FaceCropper(size=48, detect_every=4)(decode(records[truth[1]["id"]]["video"], fps=10, audio=False).frames)
    assert track.mask.all()                                                    # the cut clip holds the speaker's face
    again = prepare("iemocap", root, out, log=QUIET)                           # resumes: nothing cut twice
    assert again["clips_cut"] == [] and len(again["clips_reused"]) == 6
    swapped = prepare("iemocap", root, tmp_path / "s.jsonl", clips_dir=tmp_path / "s", face_side="marker-right", log=QUIET)
    assert len(swapped["clips_cut"]) == 6
    first = read_manifest(tmp_path / "s.jsonl")[0]
    assert first["video_source"]["side"] == "right" and json.loads(json.dumps(first))["video"].startswith(str(tmp_path / "s"))
    assert np.isfinite(decode(first["video"], fps=10, audio=False).frames).all()
