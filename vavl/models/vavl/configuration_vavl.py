"""Configuration of VAVL (Goncalves et al., "Versatile audiovisual learning", 2023)."""
from __future__ import annotations

from ...core.errors import ConfigError
from ..base import EmotionConfig, check_divides, check_positive_int, check_probability


class VAVLConfig(EmotionConfig):
    """VAVL: per-modality Conformer branches, shared Conformer layers, unimodal heads, a fusion
    head over the two pooled representations, and unimodal reconstruction heads.

    proj_dim: width each modality is projected to before its Conformer (official: 50).
    hidden_size: Conformer width (official: 512). head_hidden_size: second MLP layer (official: 256).
    num_attention_heads: Conformer attention heads (official: 8); must divide hidden_size.
    num_audio_layers / num_visual_layers / num_shared_layers: Conformer blocks (official 3 / 3 / 2).
    conv_kernel_size: depthwise convolution kernel, odd (official 31). ff_expansion: feed-forward factor.
    dropout: inside the Conformers. head_dropout: in the MLP heads (official out_dropout 0.2).
    framewise: False = batch-first temporal model (attention and convolution across frames);
        True = every frame processed alone then mean-pooled, which is what the official code
        computes at batch size 1. It reproduces the official outputs at batch size 1 only: the
        official code hands (time, batch, dim) to a batch-first Conformer, so at larger batches
        attention and convolution run across the clips of each batch; officially trained
        checkpoints are batch-dependent, and the official numbers come from batch 32 (CREMA-D) /
        9 (MSP-IMPROV), in training and in train.py's dev and test passes (VAVL has no test.py).
    official_batching: compute the official function of a zero-padded batch (takes precedence over
        framewise, whose function it equals at batch size 1): each branch hands (time, batch, dim) to
        the Conformer as the official code does, so attention (the official scores: √width scaling,
        absolute positions through the Transformer-XL shift, no mask), the depthwise convolution and
        BatchNorm run across the clips of the batch at each padded step; representations average
        over every padded step, and reconstruction targets are the mean of the padded input. A clip's
        outputs then depend on its batch companions and their order, as in the official code.
    reconstruction_loss_weight: weight of the pooled-input reconstruction losses (official: 2 for
        classification, 1 for regression).
    init_scheme: "xavier" (vavl: every Linear / Conv1d Xavier-uniform with zero biases, u / v at 0)
        or "official" (the official code's: Xavier-uniform with zero biases for the Conformers' own
        Linear layers, Xavier-uniform u / v, PyTorch's defaults for everything else; see
        conformer.official_init).
    """

    model_type = "vavl"

    proj_dim: int = 50
    hidden_size: int = 512
    head_hidden_size: int = 256
    num_attention_heads: int = 8
    num_audio_layers: int = 3
    num_visual_layers: int = 3
    num_shared_layers: int = 2
    conv_kernel_size: int = 31
    ff_expansion: int = 4
    dropout: float = 0.1
    head_dropout: float = 0.2
    framewise: bool = False
    official_batching: bool = False
    reconstruction_loss_weight: float = 1.0
    init_scheme: str = "xavier"

    def validate(self) -> None:
        super().validate()
        check_positive_int(self, "proj_dim", "head_hidden_size", "num_audio_layers", "num_visual_layers",
                           "num_shared_layers", "conv_kernel_size", "ff_expansion")
        check_divides(self, "hidden_size", "num_attention_heads")
        if self.conv_kernel_size % 2 != 1:
            raise ConfigError(f"conv_kernel_size={self.conv_kernel_size} must be odd (the convolution keeps the length)")
        check_probability(self, "dropout", "head_dropout")
        if self.init_scheme not in ("xavier", "official"):
            raise ConfigError(f"init_scheme={self.init_scheme!r} must be 'xavier' or 'official'")
        for name in ("framewise", "official_batching"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")
