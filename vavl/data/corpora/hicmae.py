"""HiCMAE's folds (github.com/sunlicai/HiCMAE, saved/data/<corpus>/audio_visual/split0k) as vavl protocols
"hicmae-1".."hicmae-n": a clip's value is "train" or "test" in fold k, and clips HiCMAE leaves out
have no key. HiCMAE has no development set: its val list is its test list (MSP-IMPROV's val.csv
is a byte copy of test.csv), so its best epoch is picked on the test fold; vavl leaves "dev"
empty and does not copy that.

The split files are rules over speakers, proven equal to the official lists by
tests/test_hicmae_protocols.py (digests of the official files in tests/fixtures/hicmae-splits):

    CREMA-D     5 folds of 18 consecutive actors (1001-1018, 1019-1036, ..., fold 5: 1073-1091),
                all clips but the four HiCMAE drops as broken (CREMA_D_BROKEN) and 1040_ITH_SAD_XX, whose
                audio file its script did not find (CREMA_D_AUDIO_MISNAMED); 6 classes, the
                actor's intended emotion (the file name), not the raters' vote.
    RAVDESS     6 folds of 4 consecutive actors (1-4, 5-8, ...); speech only (no song); 8 classes.
    MSP-IMPROV  6 folds, test = session k (its two speakers); the 7,787 clips HiCMAE lists
                (partitions/HiCMAE/msp_improv.txt, MIT); 4 classes (angry, happy, neutral, sad).
    MAFW        MAFW's own five single-label folds (Train & Test Set/single/no_caption/set_k)
                less the 16 clips HiCMAE found no audio track in (MAFW_NO_AUDIO); 11 classes.
"""
from __future__ import annotations

from functools import lru_cache

from . import PARTITIONS

# preprocess/creamd_av.py: "broken_samples" (with a link to the CREMA-D repository's list of bad files)
CREMA_D_BROKEN = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")
# ... and one more is not in HiCMAE's lists: its script skips (with a printed warning) a clip whose
# AudioWAV/<id>.wav does not exist, and CREMA-D names this clip's audio 1040_ITH_SAD_X.wav (one X)
CREMA_D_AUDIO_MISNAMED = ("1040_ITH_SAD_XX",)
# MAFW single-label clips in MAFW's set_k lists but not in HiCMAE's (preprocess/mafw_av.py skips a clip
# whose extracted audio file does not exist: "ffmpeg can not extract audios from 21 samples")
MAFW_NO_AUDIO = ("00903", "03414", "03440", "03721", "03724", "03726", "03727", "03728", "03730", "03732",
                 "03810", "03855", "03927", "03928", "03931", "09529")
N_FOLDS = {"crema-d": 5, "ravdess": 6, "msp-improv": 6, "mafw": 5}


def folds(corpus: str, test_fold: int | None) -> dict[str, str]:
    """{"hicmae-1": "train", ..., "hicmae-<test_fold>": "test", ...}; {} for a clip HiCMAE leaves out (None)."""
    if test_fold is None:
        return {}
    return {f"hicmae-{k}": "test" if k == test_fold else "train" for k in range(1, N_FOLDS[corpus] + 1)}


def crema_d_fold(clip_id: str) -> int | None:
    """Actors 1001-1018 -> 1, 1019-1036 -> 2, ..., 1073-1091 -> 5 (the last fold takes the 91st actor)."""
    actor = int(clip_id[:4])
    if clip_id in CREMA_D_BROKEN or clip_id in CREMA_D_AUDIO_MISNAMED or not 1001 <= actor <= 1091:
        return None
    return min((actor - 1001) // 18, 4) + 1


def ravdess_fold(actor: int, channel: str) -> int | None:
    return (actor - 1) // 4 + 1 if channel == "speech" and 1 <= actor <= 24 else None


def msp_improv_fold(clip_id: str, session: int) -> int | None:
    return session if clip_id in _msp_improv_clips() else None


def mafw_fold(clip_id: str, mafw_fold: int | None) -> int | None:
    return None if clip_id in MAFW_NO_AUDIO else mafw_fold


@lru_cache(maxsize=1)
def _msp_improv_clips() -> frozenset[str]:
    lines = (PARTITIONS / "HiCMAE" / "msp_improv.txt").read_text(encoding="utf-8").splitlines()
    return frozenset("MSP-IMPROV-" + line.strip() for line in lines if line.strip() and not line.startswith("#"))

