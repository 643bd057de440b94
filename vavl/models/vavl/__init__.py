"""VAVL (Goncalves et al. 2023): config, model, Auto registration and zoo entries."""
from ...core.labels import CREMA_D_CLASSES, OFFICIAL_CLASSES, id2label
from ..registry import ModelEntry, register_model
from ..auto import register_auto
from .configuration_vavl import VAVLConfig
from .modeling_vavl import VAVLForEmotionRecognition

register_auto(VAVLConfig, VAVLForEmotionRecognition)

PAPER = ("L. Goncalves, S.-G. Leem, W.-C. Lin, B. Sisman, C. Busso, \"Versatile audiovisual learning for "
         "handling single and multi modalities in emotion regression and classification tasks\", "
         "arXiv:2305.07216, 2023")
CREMA_D_LABELS = id2label(CREMA_D_CLASSES)
ENCODERS = {"audio_encoder": "wav2vec2-large-robust", "visual_encoder": "efficientnet_b2"}

# architecture "vavl": what create_model("vavl") builds
register_model(ModelEntry(
    name="vavl.official",
    model_class=VAVLForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "id2label": id2label(OFFICIAL_CLASSES["crema-d"]),
            "reconstruction_loss_weight": 2.0},
    description="VAVL at the official shape (1024-d wav2vec2 frames, 1408-d face features, Conformers 3 / 3 / 2 "
                "layers of width 512, 8 heads) and the official CREMA-D class order; import official checkpoints with "
                "`vavl convert vavl --corpus crema-d`",
    corpus="CREMA-D", labels="the official consensus label (labels.consensus-av: the argmax of the VAVL consensus files, the raters' audio-visual majority on 5,814 of 5,820 clips), 6 classes in the official order",
    protocol="VAVL partitions 1-5", recipe="recipes/configs/crema_d/vavl_official.yaml", paper=PAPER, **ENCODERS,
))
register_model(ModelEntry(
    name="vavl_w2v2l_effb2.crema_d",
    model_class=VAVLForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "id2label": CREMA_D_LABELS, "reconstruction_loss_weight": 2.0},
    description="VAVL: Conformer branches + shared Conformer + unimodal and fusion heads + reconstruction heads",
    corpus="CREMA-D", protocol="VAVL partitions 1-5",
    labels="the actor's intended emotion, 6 classes (recipes/configs/crema_d/vavl_official.yaml: the official consensus label)",
    recipe="recipes/configs/crema_d/vavl.yaml", paper=PAPER, **ENCODERS,
))
register_model(ModelEntry(
    name="vavl_w2v2l_effb2.msp_improv",
    model_class=VAVLForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "task": "regression",
            "attributes": ["arousal", "valence", "dominance"], "reconstruction_loss_weight": 1.0},
    description="VAVL regressing arousal, valence and dominance (1 - CCC loss)",
    corpus="MSP-IMPROV", labels="arousal / valence / dominance, 1-5 (arousal as `vavl prepare msp-improv` stores it)",
    protocol="VAVL partitions 1-5", recipe="recipes/configs/msp_improv/vavl_regression.yaml", paper=PAPER, **ENCODERS,
))

register_model(ModelEntry(
    name="vavl_w2v2dim_effb2.crema_d",
    model_class=VAVLForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "id2label": CREMA_D_LABELS, "reconstruction_loss_weight": 2.0},
    description="VAVL on audeering's dimensional-emotion wav2vec2 (the same wav2vec2-large-robust-12 backbone as VAVL's "
                "audio branch, fine-tuned on MSP-Podcast arousal / dominance / valence; CC-BY-NC-SA-4.0 weights) "
                "and EfficientNet-B2 face embeddings",
    corpus="CREMA-D", protocol="VAVL partitions 1-5 (the recipe runs partition 1)",
    labels="the actor's intended emotion, 6 classes (the recipe's data.label_field)",
    recipe="recipes/configs/crema_d/vavl_w2v2dim_effb2.yaml", paper=PAPER,
    audio_encoder="audeering-dim", visual_encoder="efficientnet_b2",
))

__all__ = ["VAVLConfig", "VAVLForEmotionRecognition"]
