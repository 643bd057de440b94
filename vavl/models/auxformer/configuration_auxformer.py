"""AuxFormer configuration (Goncalves & Busso, ICASSP 2022): MulT cross-modal transformers plus
auxiliary unimodal networks with their own heads."""
from __future__ import annotations

from ...core.errors import ConfigError
from ..base import EmotionConfig, check_divides, check_positive_int, check_probability


class CrossModalConfig(EmotionConfig):
    """Fields of the MulT family's fusion network (AuxFormer, MulT). Defaults are the official
    AuxFormer hyper-parameters (ilucasgoncalves/AuxFormer).

    hidden_size: width of every transformer (official d_v = 50). Audio (and visual, when its width
        differs) frames are projected to it by a bias-free linear map (the official 1x1 conv).
    num_layers / num_heads: per transformer encoder.
    attn_dropout: on attention weights of the self-attention encoders (cross-modal ones use 0).
    relu_dropout / res_dropout / embed_dropout / out_dropout: feed-forward, residual branch,
        input embedding and head dropouts.
    causal_mask: the MulT "future" mask (official attn_mask=True), counted over real frames.
    official_positions: count sinusoidal positions where feature 0 is non-zero (the fairseq rule of
        the official code) instead of from the mask. Set by `vavl.convert.load_official_auxformer`;
        with it, a real frame whose first feature is exactly 0 gets no position.
    init_scheme: "xavier" (vavl: every linear layer Xavier-uniform, zero biases) or "official"
        (the official code's PyTorch defaults with its few Xavier layers; see layers.official_init).
    """

    hidden_size: int = 50
    num_layers: int = 5
    num_heads: int = 10
    attn_dropout: float = 0.1
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25
    out_dropout: float = 0.2
    causal_mask: bool = True
    official_positions: bool = False
    init_scheme: str = "xavier"

    def validate(self) -> None:
        super().validate()
        check_divides(self, "hidden_size", "num_heads")
        check_positive_int(self, "num_layers")
        check_probability(self, "attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")
        if self.init_scheme not in ("xavier", "official"):
            raise ConfigError(f"init_scheme={self.init_scheme!r} must be 'xavier' or 'official'")


class AuxFormerConfig(CrossModalConfig):
    """AuxFormer: the cross-modal fusion network (see `CrossModalConfig`) plus two auxiliary
    unimodal networks (6 encoders in all).

    aux_hidden_sizes: hidden widths of the auxiliary heads' residual MLP (official 512, 256).
    aux_repeats: how many times each auxiliary network applies its (shared) encoder (official 3).
    official_batching: compute the official function of a zero-padded batch instead of vavl's
        batch-independent one: no key-padding mask (every attention sees the padded frames), the
        causal mask and the fairseq positions (a frame whose feature 0 is exactly 0, padding included,
        gets position 0) built on the padded lengths, and each stream summarised by its last PADDED
        step (official net/avmodel_AF.py `h[-1]`). A clip's outputs then depend on the longest clip
        of its batch, as in the official code; at batch size 1 (and for clips of equal length) both
        functions agree where no real frame's feature 0 is 0. The masks still say which modalities a
        clip has (which heads answer).
    """

    model_type = "vavl_auxformer"

    aux_hidden_sizes: list[int] | tuple[int, ...] = (512, 256)
    aux_repeats: int = 3
    official_batching: bool = False

    def validate(self) -> None:
        super().validate()
        check_positive_int(self, "aux_repeats")
        if not isinstance(self.official_batching, bool):
            raise ConfigError(f"official_batching={self.official_batching!r} must be true or false")
        if not all(isinstance(h, int) and h > 0 for h in self.aux_hidden_sizes):
            raise ConfigError(f"aux_hidden_sizes={list(self.aux_hidden_sizes)} must be positive integers")
