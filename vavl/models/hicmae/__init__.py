"""HiCMAE (Sun et al., Information Fusion 2024): config, model and Auto registration."""
from ..auto import register_auto
from .configuration_hicmae import HiCMAEConfig
from .modeling_hicmae import HiCMAEEncoder, HiCMAEForEmotionRecognition

register_auto(HiCMAEConfig, HiCMAEForEmotionRecognition)

PAPER = ("L. Sun, Z. Lian, B. Liu, J. Tao, \"HiCMAE: Hierarchical Contrastive Masked Autoencoder for Self-Supervised "
         "Audio-Visual Emotion Recognition\", Information Fusion 108, 2024")

__all__ = ["HiCMAEConfig", "HiCMAEEncoder", "HiCMAEForEmotionRecognition"]

REPO = "sunlicai/HiCMAE"
# HiCMAE's class order per corpus (preprocess/creamd_av.py, preprocess/mafw_av.py), in vavl's names
CLASSES = {
    "crema-d": ("angry", "disgust", "fear", "happy", "neutral", "sad"),   # ANG DIS FEA HAP NEU SAD
    "mafw": ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
             "helplessness", "disappointment"),
}
CORPUS_NAMES = {"crema-d": "CREMA-D", "mafw": "MAFW"}
# (UAR, WAR) in % per fold and in total, as the HiCMAE README publishes them with each fold's checkpoint
PUBLISHED = {
    "crema-d": {1: (86.66, 86.67), 2: (83.27, 83.20), 3: (87.23, 87.19), 4: (83.70, 83.79), 5: (83.88, 83.79),
                "total": (84.94, 84.91)},
    "mafw": {1: (36.02, 47.60), 2: (41.57, 55.10), 3: (46.46, 60.10), 4: (47.50, 63.09), 5: (41.88, 55.22),
             "total": (42.69, 56.21)},
}
SCRIPTS = {"crema-d": "scripts/voxceleb2/audio_visual/hicmae_pretrain_base/cream-d/finetune_170.sh",
           "mafw": "scripts/voxceleb2/audio_visual/hicmae_pretrain_base/mafw/finetune_170.sh"}
