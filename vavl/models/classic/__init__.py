"""Classic baselines on hand-crafted features: Auto registration and zoo entries."""
from ...core.labels import CREMA_D_CLASSES, id2label
from ..registry import ModelEntry, register_model
from ..auto import register_auto
from .configuration_classic import BiLSTMConfig, ClassicConfig, ClassicEarlyFusionConfig, ClassicLateFusionConfig, FaceCNNConfig
from .modeling_classic import BiLSTMForEmotionRecognition, ClassicEarlyFusionForEmotionRecognition, ClassicLateFusionForEmotionRecognition, FaceCNNForEmotionRecognition

CREMA_D_LABELS = id2label(CREMA_D_CLASSES)
RECIPE = "recipes/finetune.py"

for _cfg, _cls in ((BiLSTMConfig, BiLSTMForEmotionRecognition), (FaceCNNConfig, FaceCNNForEmotionRecognition),
                   (ClassicEarlyFusionConfig, ClassicEarlyFusionForEmotionRecognition), (ClassicLateFusionConfig, ClassicLateFusionForEmotionRecognition)):
    register_auto(_cfg, _cls)

_CREMA = dict(corpus="CREMA-D", labels="the recipe's data.label_field (labels.intended or labels.perceived-av), 6 classes",
              protocol="VAVL partitions 1-5", recipe=RECIPE)
register_model(ModelEntry(
    name="bilstm_mfcc.crema_d", model_class=BiLSTMForEmotionRecognition,
    config={"audio_dim": 40, "id2label": CREMA_D_LABELS},
    description="2-layer BiLSTM over 40 MFCCs (100 frames/s), mean-pooled; audio only",
    audio_encoder="mfcc", **_CREMA))
register_model(ModelEntry(
    name="cnn_face_grey.crema_d", model_class=FaceCNNForEmotionRecognition,
    config={"visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="3-block 2D CNN on 48x48 grey face crops, mean over frames; video only",
    visual_encoder="face-grey", **_CREMA))
register_model(ModelEntry(
    name="early_fusion_mfcc_face_grey.crema_d", model_class=ClassicEarlyFusionForEmotionRecognition,
    config={"audio_dim": 40, "visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="MLP on concatenated mean/std of MFCC frames and 48x48 grey face crops, plus unimodal MLPs",
    audio_encoder="mfcc", visual_encoder="face-grey", **_CREMA))
register_model(ModelEntry(
    name="late_fusion_bilstm_cnn.crema_d", model_class=ClassicLateFusionForEmotionRecognition,
    config={"audio_dim": 40, "visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="BiLSTM on MFCCs and CNN on 48x48 grey faces; fused logits are a learned mix of the two",
    audio_encoder="mfcc", visual_encoder="face-grey", **_CREMA))

__all__ = ["BiLSTMConfig", "ClassicConfig", "BiLSTMForEmotionRecognition", "ClassicEarlyFusionConfig", "ClassicEarlyFusionForEmotionRecognition",
           "FaceCNNConfig", "FaceCNNForEmotionRecognition", "ClassicLateFusionConfig", "ClassicLateFusionForEmotionRecognition"]
