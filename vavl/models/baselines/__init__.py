"""Simple baselines: unimodal audio / visual, early fusion, late fusion; Auto registration and zoo entries."""
from ...core.labels import CREMA_D_CLASSES, id2label
from ..registry import ModelEntry, register_model
from ..auto import register_auto
from .configuration_baselines import AudioOnlyConfig, EarlyFusionConfig, LateFusionConfig, VisualOnlyConfig
from .early_fusion import EarlyFusionForEmotionRecognition
from .late_fusion import LateFusionForEmotionRecognition
from .pooled_head import PooledHeadConfig, PooledHeadForEmotionRecognition
from .unimodal import AudioOnlyForEmotionRecognition, VisualOnlyForEmotionRecognition

for _config, _model in ((AudioOnlyConfig, AudioOnlyForEmotionRecognition), (VisualOnlyConfig, VisualOnlyForEmotionRecognition),
                        (EarlyFusionConfig, EarlyFusionForEmotionRecognition), (LateFusionConfig, LateFusionForEmotionRecognition),
                        (PooledHeadConfig, PooledHeadForEmotionRecognition)):
    register_auto(_config, _model)

CREMA_D = {"config": {"audio_dim": 1024, "visual_dim": 1408,
                      "id2label": id2label(CREMA_D_CLASSES)},
           "corpus": "CREMA-D", "labels": "the actor's intended emotion, 6 classes", "protocol": "VAVL partitions 1-5"}
W2V2L, EFFB2 = "wav2vec2-large-robust", "efficientnet_b2"

for name, model_class, recipe, description, encoders in (
    ("audio_only_w2v2l.crema_d", AudioOnlyForEmotionRecognition, "audio_only",
     "unimodal baseline: wav2vec2 features -> Transformer layer -> mean pooling -> MLP", {"audio_encoder": W2V2L}),
    ("visual_only_effb2.crema_d", VisualOnlyForEmotionRecognition, "visual_only",
     "unimodal baseline: EfficientNet-B2 face features -> Transformer layer -> mean pooling -> MLP", {"visual_encoder": EFFB2}),
    ("early_fusion_w2v2l_effb2.crema_d", EarlyFusionForEmotionRecognition, "early_fusion",
     "early-fusion baseline: pooled audio and face branches concatenated -> MLP (+ unimodal heads)",
     {"audio_encoder": W2V2L, "visual_encoder": EFFB2}),
    ("late_fusion_w2v2l_effb2.crema_d", LateFusionForEmotionRecognition, "late_fusion",
     "late-fusion baseline: audio model and face model, fused output = mean of their logits",
     {"audio_encoder": W2V2L, "visual_encoder": EFFB2}),
):
    register_model(ModelEntry(name=name, model_class=model_class, description=description,
                              recipe=f"recipes/configs/crema_d/{recipe}.yaml", **CREMA_D, **encoders))

register_model(ModelEntry(
    name="audeering_dim.msp_podcast",
    model_class=PooledHeadForEmotionRecognition,
    config={"audio_dim": 1024, "task": "regression", "attributes": ["arousal", "dominance", "valence"], "dropout": 0.1},
    description="audeering's dimensional speech emotion model (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim): "
                "wav2vec2-large-robust pruned to 12 layers, time mean, dense -> tanh -> out_proj. Its weights are "
                "CC-BY-NC-SA-4.0 (non-commercial, share-alike); import them with "
                "`vavl convert audeering DIR --out OUT` (DIR: the hub folder) and load OUT with vavl.predict / AutoModel",
    audio_encoder="audeering-dim", corpus="MSP-Podcast v1.7",
    labels="arousal, dominance, valence (that order), about 0..1",
    protocol="audeering's training on MSP-Podcast v1.7 (not retrained here)",
    paper="J. Wagner, A. Triantafyllopoulos, H. Wierstorf, M. Schmitt, F. Burkhardt, F. Eyben, B. W. Schuller, "
          "\"Dawn of the transformer era in speech emotion recognition: closing the valence gap\", IEEE TPAMI 2023",
))

__all__ = ["AudioOnlyConfig", "AudioOnlyForEmotionRecognition", "EarlyFusionConfig", "EarlyFusionForEmotionRecognition",
           "LateFusionConfig", "LateFusionForEmotionRecognition", "PooledHeadConfig", "PooledHeadForEmotionRecognition",
           "VisualOnlyConfig", "VisualOnlyForEmotionRecognition"]
