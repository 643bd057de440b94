"""MulT-style baseline configuration: AuxFormer's cross-modal fusion network without the
auxiliary unimodal networks (Tsai et al., ACL 2019, for two modalities)."""
from __future__ import annotations

from ..auxformer.configuration_auxformer import CrossModalConfig


class MulTConfig(CrossModalConfig):
    """The fields and defaults of `CrossModalConfig` (hidden_size 50, 5 layers, 10 heads, official
    dropouts, causal mask). There is one head, the fused head; a clip with one modality is answered
    by it with the other stream absent. aux_loss_weight defaults to 0 (plain MulT training); above 0
    it also trains the fused head on each stream alone."""

    model_type = "vavl_mult"

    aux_loss_weight: float = 0.0
