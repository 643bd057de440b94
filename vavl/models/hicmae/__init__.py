"""HiCMAE (Sun et al., Information Fusion 2024): config, model and Auto registration."""
from ..auto import register_auto
from ..registry import ModelEntry, register_model
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

_LINKS = "the HiCMAE README (github.com/sunlicai/HiCMAE, section Fine-tuning) links each fold's checkpoint-best.pth"


def _weights(corpus: str, protocol: str) -> str:
    folds = PUBLISHED[corpus]
    rows = "\n".join(f"| {k} | {u:.2f} | {w:.2f} |" for k, (u, w) in folds.items())
    return (f"Five fine-tuned folds, MIT license: {_LINKS}. Download one and convert it:\n\n"
            f"```bash\nvavl convert hicmae checkpoint-best.pth --corpus {corpus} --fold 1 --out hicmae-{corpus}-1\n```\n\n"
            f"Published test results (HiCMAE README; fold k is tested on protocol `{protocol}k`):\n\n"
            f"| fold | UAR (%) | WAR (%) |\n|---|---|---|\n{rows}\n\n"
            f"Trained by `{SCRIPTS[corpus]}` of sunlicai/HiCMAE from its VoxCeleb2 self-supervised model. "
            f"The corpus keeps its own license ({'CREMA-D: ODbL' if corpus == 'crema-d' else 'MAFW: academic use by agreement'}).\n")


register_model(ModelEntry(
    name="hicmae.crema_d",
    model_class=HiCMAEForEmotionRecognition,
    config={"id2label": dict(enumerate(CLASSES["crema-d"]))},
    description="HiCMAE's fine-tuned audio-visual classifier (video ViT on 16 face frames, audio ViT on a 256 x 128 "
                "log-mel fbank, 2 cross-modal fusion layers; 80.8 M parameters), as released for CREMA-D",
    corpus="CREMA-D",
    labels="the actor's intended emotion (the file name's code), 6 classes in HiCMAE's order; the AuxFormer / VAVL "
           "official configs score the raters' perceived vote instead",
    protocol="HiCMAE's five speaker-disjoint folds (hicmae-1 ... hicmae-5)",
    paper=PAPER, weights=_weights("crema-d", "hicmae-"),
    status="published upstream: 5 folds (sunlicai/HiCMAE README), `vavl convert hicmae FILE --corpus crema-d`",
))
register_model(ModelEntry(
    name="hicmae.mafw",
    model_class=HiCMAEForEmotionRecognition,
    config={"id2label": dict(enumerate(CLASSES["mafw"]))},
    description="HiCMAE's fine-tuned audio-visual classifier, as released for MAFW (11 single-label classes)",
    corpus="MAFW", labels="MAFW's single-label emotion, 11 classes in HiCMAE's order",
    protocol="HiCMAE's five MAFW folds (hicmae-1 ... hicmae-5)",
    paper=PAPER, weights=_weights("mafw", "hicmae-"),
    status="published upstream: 5 folds (sunlicai/HiCMAE README), `vavl convert hicmae FILE --corpus mafw`",
))
