"""MulT-style baseline configuration: AuxFormer's cross-modal fusion network without the
auxiliary unimodal networks (Tsai et al., ACL 2019, for two modalities)."""
from __future__ import annotations

from ..auxformer.configuration_auxformer import validate_cross_modal
from ..base import EmotionConfig


class MulTConfig(EmotionConfig):
    """Same fields and defaults as `AuxFormerConfig` for the fusion network (hidden_size 50,
    5 layers, 10 heads, official dropouts, causal mask). There is one head, the fused head; a clip
    with one modality is answered by it with the other stream absent. aux_loss_weight defaults to 0
    (plain MulT training); above 0 it also trains the fused head on each stream alone."""

    model_type = "vavl_mult"

    hidden_size: int = 50
    num_layers: int = 5
    num_heads: int = 10
    attn_dropout: float = 0.1
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25
    out_dropout: float = 0.2
    causal_mask: bool = True
    aux_loss_weight: float = 0.0
    official_positions: bool = False

    def validate(self) -> None:
        super().validate()
        validate_cross_modal(self)
