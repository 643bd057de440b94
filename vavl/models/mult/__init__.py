"""MulT-style cross-modal baseline (no auxiliary networks): config, model, Auto registration, zoo entry."""
from ...core.labels import CREMA_D_CLASSES, id2label
from ..registry import ModelEntry, register_model
from ..auto import register_auto
from .configuration_mult import MulTConfig
from .modeling_mult import MulTForEmotionRecognition

register_auto(MulTConfig, MulTForEmotionRecognition)

register_model(ModelEntry(
    name="mult_w2v2l_effb2.crema_d",
    model_class=MulTForEmotionRecognition,
    config={"audio_dim": 1024, "visual_dim": 1408,
            "id2label": id2label(CREMA_D_CLASSES)},
    description="MulT-style baseline: AuxFormer's two cross-modal transformers and fused head, no auxiliary "
                "networks; one modality is answered by the fused head with the other stream absent",
    audio_encoder="wav2vec2-large-robust", visual_encoder="efficientnet_b2",
    corpus="CREMA-D", labels="the actor's intended emotion, 6 classes", protocol="VAVL partitions 1-5 (the recipe runs partition 1)",
    recipe="recipes/configs/crema_d/mult.yaml",
    paper="Y.-H. H. Tsai, S. Bai, P. P. Liang, J. Z. Kolter, L.-P. Morency, R. Salakhutdinov, \"Multimodal "
          "Transformer for Unaligned Multimodal Language Sequences\", ACL 2019",
))

__all__ = ["MulTConfig", "MulTForEmotionRecognition"]
