"""Tiny synthetic corpora in the exact layouts of IEMOCAP, MSP-Podcast and MELD, for tests of their
indexers, protocols and leak checks. Each builder returns the truth it wrote (one dict per clip),
so a test can compare a manifest with what the layout holds.

    truth = make_iemocap(root)                       # 5 sessions, 10 actors, empty media files
    truth = make_iemocap(root, sessions=(1,), media=True)   # real wavs and a two-face dialog video

Media are empty files unless `media=True` (indexing never decodes them). IEMOCAP's real dialog
video shows two copies of the astronaut portrait (scikit-image, public domain) side by side:
one on red in the left half, one (mirrored) on blue in the right half, and in each half a strip holding the frame
index in binary (black / white blocks), so a cut clip says which half and which frames it came from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..media.write import write_clip

IEMOCAP_CYCLE = ("neu", "ang", "hap", "exc", "sad", "fru", "xxx", "sur", "neu", "ang", "sad", "hap")
IEMOCAP_FPS = 10.0
STRIP = 12   # rows of the time strip at the bottom of each half
BITS = 6     # the strip: the frame index in binary, one block per bit


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def _turn_times(j: int) -> tuple[float, float]:
    return round(0.3 + 1.0 * j, 4), round(1.1 + 1.0 * j, 4)


def make_iemocap(root, sessions=(1, 2, 3, 4, 5), turns_per_dialog: int = 6, media: bool = False) -> list[dict]:
    """Per session two dialogs, one named for each actor (Ses0kF_impro01, Ses0kM_script01_1),
    turns alternating F / M starting with the dialog's own actor, so each dialog holds turns of
    both actors: the dialog name never says who speaks."""
    root = Path(root)
    truth, n = [], 0
    for k in sessions:
        sess = root / f"Session{k}"
        for marker, dialog in (("F", f"Ses{k:02d}F_impro01"), ("M", f"Ses{k:02d}M_script01_1")):
            other = "M" if marker == "F" else "F"
            block = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            lines, counters, turns = [], {"F": 0, "M": 0}, []
            for j in range(turns_per_dialog):
                letter = marker if j % 2 == 0 else other
                turn_id = f"{dialog}_{letter}{counters[letter]:03d}"
                counters[letter] += 1
                emotion = IEMOCAP_CYCLE[n % len(IEMOCAP_CYCLE)]
                n += 1
                start, end = _turn_times(j)
                v, a, d = 1.0 + (n % 9) * 0.5, 1.5 + (n % 7) * 0.5, 2.0 + (n % 5) * 0.5
                block += [f"[{start:.4f} - {end:.4f}]\t{turn_id}\t{emotion}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                          "C-E2:\tNeutral;\t()", "C-F1:\tAnger;\t(annoyed)",
                          "A-E3:\tval 3; act 2; dom  2;\t()", ""]
                text = f"turn {j} of {dialog}, said by {letter}."
                lines.append(f"{turn_id} [{start:08.4f}-{end:08.4f}]: {text}")
                turns.append({"id": turn_id, "session": k, "letter": letter, "marker": marker, "dialog": dialog,
                              "emotion": emotion, "valence": v, "arousal": a, "dominance": d,
                              "start": start, "end": end, "text": text})
            lines.append(f"{other}: [BREATHING]")   # not a turn: no id, no time stamps
            _touch(sess / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(block) + "\n")
            (sess / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (sess / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            avi = sess / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            for t in turns:
                wav = sess / "sentences" / "wav" / dialog / f"{t['id']}.wav"
                if media:
                    sr = 16000
                    write_clip(wav, audio=(0.1 * np.sin(np.arange(int((t["end"] - t["start"]) * sr)) * 0.07))
                               .astype(np.float32), sample_rate=sr)
                else:
                    _touch(wav)
            if media:
                write_clip(avi, two_face_frames(_turn_times(turns_per_dialog)[0] + 0.2), fps=IEMOCAP_FPS)
            else:
                _touch(avi)
            truth += turns
    return truth


def two_face_frames(seconds: float, half_width: int = 128, height: int = 112) -> np.ndarray:
    """(t, height, 2 * half_width, 3): a face on red in the left half, a mirrored one on blue in
    the right half, each half's bottom strip the frame index in binary."""
    from PIL import Image
    from skimage.data import astronaut

    face = np.asarray(Image.fromarray(astronaut()[10:210, 140:310]).resize((76, 90), Image.BILINEAR)).astype(np.float32)
    n = int(round(seconds * IEMOCAP_FPS))
    frames = np.zeros((n, height, 2 * half_width, 3), np.uint8)
    for side, background in ((0, (160, 70, 70)), (1, (70, 70, 160))):
        frames[:, :, side * half_width:(side + 1) * half_width] = background
        x0 = side * half_width + (half_width - face.shape[1]) // 2
        frames[:, 4:4 + face.shape[0], x0:x0 + face.shape[1]] = (face if side == 0 else face[:, ::-1]).astype(np.uint8)
    block = half_width // BITS
    for i in range(n):
        for side in (0, 1):
            for b in range(BITS):
                x0 = side * half_width + b * block
                frames[i, -STRIP:, x0:x0 + block] = 255 if (i >> b) & 1 else 0
    return frames


def frame_index(frame: np.ndarray) -> int:
    """The source frame index a (half) frame of `two_face_frames` carries in its bottom strip."""
    block = frame.shape[1] // BITS
    strip = frame[-STRIP + 3:-3].astype(float)
    return sum(1 << b for b in range(BITS) if strip[:, b * block + 3:(b + 1) * block - 3].mean() > 128)


# ---- MSP-Podcast ---------------------------------------------------------------------------------
MSP_CODES = "ASHUFDCNOX"
MSP_SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")


def make_msp_podcast(root, clips_per_split: int = 12, detailed: bool = True) -> list[dict]:
    """Audios/, Labels/labels_consensus.csv (every EmoClass code, O and X included; a third of
    the Test2 clips with speaker Unknown), Labels/labels_detailed.csv (3-5 raters a clip, some
    choosing Other-...), Transcripts/ for every other clip. Speakers differ between splits."""
    root = Path(root)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    names = {"A": "Angry", "S": "Sad", "H": "Happy", "U": "Surprise", "F": "Fear", "D": "Disgust", "C": "Contempt",
             "N": "Neutral"}
    truth, consensus, raters, n = [], [], [], 0
    for s, split in enumerate(MSP_SPLITS):
        for j in range(clips_per_split):
            clip = f"MSP-PODCAST_{s + 1:04d}_{j + 1:04d}"
            code = MSP_CODES[n % len(MSP_CODES)]
            speaker = "Unknown" if split == "Test2" and j % 3 == 0 else str(100 * (s + 1) + j % 4)
            gender = "Unknown" if speaker == "Unknown" else ("Female" if j % 2 else "Male")
            act, val, dom = 1 + n % 7, 1 + (n * 3) % 7, 1 + (n * 5) % 7
            consensus.append([f"{clip}.wav", code, f"{act:.1f}", f"{val:.1f}", f"{dom:.1f}", speaker, gender, split])
            votes = [names.get(code, "Other-bored")] * 2 + [names[MSP_CODES[(n + 1) % 8]]] + (["Other-amused"] if j % 2 else [])
            raters += [[f"{clip}.wav", f"WORKER{w:05d}", v, "Neutral", act, val, dom] for w, v in enumerate(votes)]
            _touch(root / "Audios" / f"{clip}.wav")
            text = f"clip {j} of {split}" if j % 2 == 0 else None
            if text:
                (root / "Transcripts").mkdir(exist_ok=True)
                (root / "Transcripts" / f"{clip}.txt").write_text(text + "\n")
            truth.append({"id": clip, "code": code, "speaker": speaker, "gender": gender, "split": split,
                          "attributes": {"arousal": float(act), "valence": float(val), "dominance": float(dom)},
                          "votes": votes, "text": text})
            n += 1
    _write_rows(root / "Labels" / "labels_consensus.csv",
                ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"], consensus)
    if detailed:
        _write_rows(root / "Labels" / "labels_detailed.csv",
                    ["FileName", "WorkerID", "EmoClass_Major", "EmoClass_Second", "EmoAct", "EmoVal", "EmoDom"], raters)
    return truth


def _write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ---- MELD ----------------------------------------------------------------------------------------
MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
MELD_SENTIMENT = {"neutral": "neutral", "joy": "positive", "surprise": "positive", "sadness": "negative",
                  "anger": "negative", "fear": "negative", "disgust": "negative"}
MELD_SPLITS = {"train": ("train", "train_sent_emo.csv", "train_splits"),
               "dev": ("dev", "dev_sent_emo.csv", "dev_splits_complete"),
               "test": ("test", "test_sent_emo.csv", "output_repeated_splits_test")}
MELD_SPEAKERS = ("Ross", "Rachel", "Monica", "Joey", "Chandler", "Phoebe", "Gunther")


def make_meld(root, dialogs: int = 3, utterances: int = 4) -> list[dict]:
    """MELD.Raw: <split>/<split>_sent_emo.csv and <split>/<video folder>/dia<D>_utt<U>.mp4
    (empty files) for train / dev / test; the last utterance of train's first dialog has no
    video (as train dia125_utt3 in the real corpus)."""
    root = Path(root)
    truth, n = [], 0
    for split, (folder, csv_name, videos) in MELD_SPLITS.items():
        rows = []
        for d in range(dialogs):
            for u in range(utterances):
                emotion = MELD_EMOTIONS[n % 7]
                speaker = MELD_SPEAKERS[n % len(MELD_SPEAKERS)]
                text = f"Utterance {u} of dialogue {d}, it\u2019s {emotion}."
                rows.append([n + 1, text, speaker, emotion, MELD_SENTIMENT[emotion], d, u, 3, 7,
                             "00:00:01,000", "00:00:02,500"])
                has_video = not (split == "train" and d == 0 and u == utterances - 1)
                if has_video:
                    _touch(root / folder / videos / f"dia{d}_utt{u}.mp4")
                truth.append({"id": f"{split}_dia{d}_utt{u}", "split": split, "speaker": speaker, "emotion": emotion,
                              "sentiment": MELD_SENTIMENT[emotion], "text": text, "video": has_video})
                n += 1
        _write_rows(root / folder / csv_name, ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                                               "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"], rows)
    return truth
