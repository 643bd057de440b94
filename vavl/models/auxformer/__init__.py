"""AuxFormer (Goncalves & Busso 2022): config, model, Auto registration and zoo entries."""
from ...core.labels import CREMA_D_CLASSES, OFFICIAL_CLASSES, id2label
from ..registry import ModelEntry, register_model
from ..auto import register_auto
from .configuration_auxformer import AuxFormerConfig
from .modeling_auxformer import AuxFormerForEmotionRecognition

register_auto(AuxFormerConfig, AuxFormerForEmotionRecognition)

PAPER = ("L. Goncalves and C. Busso, \"AuxFormer: Robust approach to audiovisual emotion recognition\", "
         "ICASSP 2022")
CREMA_D_LABELS = id2label(CREMA_D_CLASSES)
ENCODERS = {"audio_encoder": "wav2vec2-large-robust", "visual_encoder": "efficientnet_b2"}
RECIPE = "recipes/configs/crema_d/auxformer.yaml"

# registered first so that create_model("auxformer") resolves to the official shape
register_model(ModelEntry(
    name="auxformer.official",
    model_class=AuxFormerForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 50, "id2label": id2label(OFFICIAL_CLASSES["crema-d"]), "hidden_size": 50,
            "num_layers": 5, "num_heads": 10, "prediction": "heads_mean"},
    description="AuxFormer at the official default shape (1024-d wav2vec2 audio frames, the authors' 50-d visual "
                "features, width 50, 5 layers, 10 heads), the official class order and prediction rule (the mean of "
                "the three heads); import official checkpoints with `vavl convert auxformer --corpus crema-d`",
    corpus="CREMA-D", labels="the official consensus label (labels.consensus-av: the argmax of the VAVL consensus files, the raters' audio-visual majority on 5,814 of 5,820 clips), 6 classes in the official order",
    protocol="VAVL partitions 1-5 (the recipe runs partition 1)", recipe="recipes/configs/crema_d/auxformer_official.yaml",
    paper=PAPER,
))
register_model(ModelEntry(
    name="auxformer_w2v2l_effb2.crema_d",
    model_class=AuxFormerForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "id2label": CREMA_D_LABELS},
    description="AuxFormer on wav2vec2-large-robust frames and EfficientNet-B2 face embeddings",
    corpus="CREMA-D", labels="the actor's intended emotion, 6 classes (raters' perceived label: "
                             "recipes/configs/crema_d/auxformer_perceived.yaml)",
    protocol="VAVL partitions 1-5 (the recipe runs partition 1)", recipe=RECIPE, paper=PAPER, **ENCODERS,
))
register_model(ModelEntry(
    name="auxformer_w2v2l_effb2.msp_improv",
    model_class=AuxFormerForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408, "task": "regression", "attributes": ["arousal", "valence", "dominance"]},
    description="AuxFormer regressing arousal, valence and dominance (1 - CCC loss)",
    corpus="MSP-IMPROV", labels="arousal / valence / dominance, 1-5 (arousal as `vavl prepare msp-improv` stores it)",
    protocol="VAVL partitions 1-5 (the recipe runs partition 1)", recipe="recipes/configs/msp_improv/auxformer.yaml",
    paper=PAPER, **ENCODERS,
))

# the same model and label on the newer encoders: Whisper, AST (clip audio embeddings), VideoMAE (clip video features)
for _name, _audio, _visual, _dims, _what in (
    ("auxformer_whisperS_effb2.crema_d", "whisper-small", "efficientnet_b2", (768, 1408),
     "Whisper-small encoder frames (50/s, on each clip's own length) and EfficientNet-B2 face embeddings"),
    ("auxformer_ast_effb2.crema_d", "ast-audioset", "efficientnet_b2", (768, 1408),
     "AST AudioSet clip embeddings (one per second) and EfficientNet-B2 face embeddings"),
    ("auxformer_w2v2l_videomae.crema_d", "wav2vec2-large-robust", "videomae-base-kinetics", (1024, 768),
     "wav2vec2-large-robust frames and VideoMAE clip features (one per 16 face frames, hop 8)"),
):
    register_model(ModelEntry(
        name=_name, model_class=AuxFormerForEmotionRecognition,
        config={"audio_dim": _dims[0], "visual_dim": _dims[1], "id2label": CREMA_D_LABELS},
        description=f"AuxFormer on {_what}", corpus="CREMA-D", labels="the actor's intended emotion, 6 classes",
        protocol="VAVL partitions 1-5 (the recipe runs partition 1)",
        recipe=f"recipes/configs/crema_d/{_name.split('.')[0]}.yaml", paper=PAPER,
        audio_encoder=_audio, visual_encoder=_visual,
    ))

__all__ = ["AuxFormerConfig", "AuxFormerForEmotionRecognition"]
