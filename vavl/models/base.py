"""What every vavl emotion model shares: the config fields, input checking, missing-modality
handling, choosing which head answers each sample, and the losses.

A subclass implements `compute_heads(audio, audio_mask, visual, visual_mask)` on batch-first
tensors where a missing modality is an all-false mask (never None), and returns a dict with
`fused_logits`, `audio_logits`, `visual_logits` and optionally `audio_reconstruction`,
`visual_reconstruction`, `fused_embedding`, `audio_embedding`, `visual_embedding`.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel

from ..nn import losses
from ..nn.attention import check_implementation
from ..core.errors import ConfigError
from .outputs import EmotionRecognitionOutput

TASKS = ("single_label_classification", "soft_label_classification", "regression")
LOSS_TERMS = ("logits", "fused", "audio", "visual", "audio_reconstruction", "visual_reconstruction")
DEFAULT_ATTRIBUTES = ("arousal", "valence", "dominance")
PREDICTION_RULES = ("fused", "heads_mean")


class EmotionConfig(PretrainedConfig):
    """Fields every fusion model has. Subclasses add their own fields (dataclass style, as in
    transformers 5) and extend `validate()`.

    audio_dim / visual_dim: widths of the incoming feature frames.
    task: "single_label_classification" (class index per clip), "soft_label_classification"
        (a label distribution per clip) or "regression" (one value per attribute, 1 - CCC loss).
    num_labels / id2label: the classes (for regression, the attributes, in order). Default 6.
    attributes: regression targets (default arousal, valence, dominance).
    aux_loss_weight: weight of each auxiliary unimodal head's loss.
    reconstruction_loss_weight: weight of the reconstruction losses (models that have them).
    class_weights: optional per-class weights for the classification losses.
    prediction: how `logits` is formed for a clip with both modalities. "fused": the fusion head
        alone. "heads_mean": the mean of every head that sees the clip (fused, audio and visual),
        which is what the official AuxFormer code predicts, scores and selects models by. A clip
        with one modality is answered by that modality's head under either rule.
    output_scale / output_offset: regression only, one value per attribute: every head's output is
        multiplied by the scale and shifted by the offset, e.g. [4, 4, 4] and [1, 1, 1] for a model
        trained on attributes normalised as (x - 1) / 4 (the official VAVL MSP-IMPROV recipe), so that
        its outputs are on the labels' 1-5 scale. None: outputs as the heads give them.
    feature_normalization: the modalities ("audio", "visual") whose input frames the model z-scores
        with per-dimension statistics it holds as buffers (`set_feature_statistics`; the recipe fills
        them from the training clips, as the official AuxFormer / VAVL loaders do for video).
    ccc_reduction: regression loss over the attributes: "mean" of 1 - CCC, or their "sum" (official VAVL).
    attn_implementation (transformers' keyword, kept in `_attn_implementation` and not saved):
        "auto" (default), "sdpa", "eager" or "cpu_kernel"; see vavl/nn/attention.py.
    """

    model_type = "vavl_emotion"

    audio_dim: int = 1024
    visual_dim: int = 1408
    task: str = "single_label_classification"
    attributes: list[str] | None = None
    aux_loss_weight: float = 1.0
    reconstruction_loss_weight: float = 0.0
    class_weights: list[float] | None = None
    prediction: str = "fused"
    output_scale: list[float] | None = None
    output_offset: list[float] | None = None
    feature_normalization: list[str] | None = None
    ccc_reduction: str = "mean"

    def __post_init__(self, **kwargs: Any):
        if self.task == "regression":
            self.attributes = list(self.attributes or DEFAULT_ATTRIBUTES)
            kwargs.pop("num_labels", None)
            self.id2label = {i: a for i, a in enumerate(self.attributes)}
            self.label2id = {a: i for i, a in enumerate(self.attributes)}
        elif self.id2label is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = 6
        super().__post_init__(**kwargs)
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {str(v): k for k, v in self.id2label.items()}
        self.validate()

    @property
    def label_names(self) -> list[str]:
        return [str(self.id2label[i]) for i in range(self.num_labels)]

    def validate(self) -> None:
        check_implementation(self._attn_implementation or "auto")
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {TASKS}")
        if self.prediction not in PREDICTION_RULES:
            raise ConfigError(f"prediction={self.prediction!r} is not one of {PREDICTION_RULES}")
        for name in ("audio_dim", "visual_dim", "num_labels"):
            check_positive_int(self, name)
        for name in ("output_scale", "output_offset"):
            value = getattr(self, name)
            if value is not None and (self.task != "regression" or len(value) != self.num_labels):
                raise ConfigError(f"{name}={value!r} needs task='regression' and one value per attribute "
                                  f"({self.num_labels})")
        if not set(self.feature_normalization or ()) <= {"audio", "visual"}:
            raise ConfigError(f"feature_normalization={self.feature_normalization!r}: list 'audio' and / or 'visual'")
        if self.ccc_reduction not in ("mean", "sum"):
            raise ConfigError(f"ccc_reduction={self.ccc_reduction!r} must be 'mean' or 'sum'")
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ConfigError(f"class_weights has {len(self.class_weights)} values but num_labels={self.num_labels}")
        for name in ("aux_loss_weight", "reconstruction_loss_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")


def check_positive_int(config: PretrainedConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name}={value!r} must be a positive integer")


def check_probability(config: PretrainedConfig, *names: str) -> None:
    """Dropout-style rates: each must be a number in [0, 1)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise ConfigError(f"{name}={value!r} must be a probability in [0, 1)")


def check_divides(config: PretrainedConfig, width: str, heads: str) -> None:
    w, h = getattr(config, width), getattr(config, heads)
    check_positive_int(config, width, heads)
    if w % h:
        raise ConfigError(f"{heads}={h} does not divide {width}={w}: attention splits the width into {heads} equal parts")


NORMALIZATION_EPS = 1e-6  # added to the standard deviation, as the official loaders do


class EmotionModel(PreTrainedModel):
    """Base of all vavl emotion models (see module docstring)."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        for modality in config.feature_normalization or ():
            dim = config.audio_dim if modality == "audio" else config.visual_dim
            self.register_buffer(f"{modality}_feature_mean", torch.zeros(dim))
            self.register_buffer(f"{modality}_feature_std", torch.ones(dim))

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Config, weights and a Hub-ready README.md (vavl.models.cards)."""
        from ..core.files import public_modes
        from .cards import write_card

        super().save_pretrained(save_directory, *args, **kwargs)
        public_modes(save_directory)   # the weights get the umask's permissions, like every other file
        write_card(save_directory, self, modalities={m for m in ("audio", "visual")})

    # ---- what callers ask of a model; AudioVisualModel answers the same for its fusion model -----
    @property
    def emotion_config(self) -> EmotionConfig:
        """The config that names the labels, the task, the prediction rule and the loss weights."""
        return self.config

    @property
    def fusion_model(self) -> "EmotionModel":
        """The model that takes encoder features (b, t, d): this one."""
        return self

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def label_names(self) -> list[str]:
        return self.config.label_names

    def set_feature_statistics(self, modality: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-dimension mean and standard deviation the model z-scores `modality` with."""
        if modality not in (self.config.feature_normalization or ()):
            raise ConfigError(f"{modality} is not in config.feature_normalization={self.config.feature_normalization}")
        getattr(self, f"{modality}_feature_mean").copy_(mean)
        getattr(self, f"{modality}_feature_std").copy_(std)

    def input_origin(self, modality: str) -> torch.Tensor | None:
        """The input frame the model maps to zero: the feature mean where it normalizes `modality`
        (so "multiply the modality by 0 after normalization" means "set it to this"), else None."""
        return getattr(self, f"{modality}_feature_mean", None)

    config_class = EmotionConfig
    base_model_prefix = "vavl"
    main_input_name = "audio_features"

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """transformers' hook for `attn_implementation=`: vavl's own choices (vavl/nn/attention.py)."""
        return check_implementation(requested_attention or "auto")

    def compute_heads(self, audio, audio_mask, visual, visual_mask) -> dict[str, torch.Tensor]:
        """Batch-first inputs, missing modality = all-false mask. Return at least one of
        fused_logits / audio_logits / visual_logits (b, num_labels); leave out the heads the
        model does not have (a unimodal model has no fused head and one unimodal head)."""
        raise NotImplementedError

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """A small valid batch (with labels, one audio-only and one visual-only sample) for tests."""
        cfg, g = self.config, torch.Generator().manual_seed(0)
        b, ta, tv = 3, 7, 5
        audio_mask = torch.ones(b, ta, dtype=torch.bool)
        visual_mask = torch.ones(b, tv, dtype=torch.bool)
        audio_mask[0, 4:] = False
        visual_mask[1] = False   # sample 1: audio only
        audio_mask[2] = False    # sample 2: visual only
        if cfg.task == "regression":
            labels = torch.rand(b, cfg.num_labels, generator=g) * 4 + 1
        elif cfg.task == "soft_label_classification":
            labels = torch.rand(b, cfg.num_labels, generator=g).softmax(-1)
        else:
            labels = torch.arange(b) % cfg.num_labels
        return {"audio_features": torch.randn(b, ta, cfg.audio_dim, generator=g), "audio_mask": audio_mask,
                "visual_features": torch.randn(b, tv, cfg.visual_dim, generator=g), "visual_mask": visual_mask,
                "labels": labels}

    # ---- inputs --------------------------------------------------------------------------
    def prepare_inputs(self, audio_features, audio_mask, visual_features, visual_mask):
        """Check shapes, fill in masks, turn a missing modality into one masked zero frame,
        zero padded frames. Returns (audio, audio_mask, visual, visual_mask)."""
        present = [x for x in (audio_features, visual_features) if x is not None]
        if not present:
            raise ValueError("give audio_features, visual_features or both")
        b, device = present[0].shape[0], present[0].device
        dtype = present[0].dtype if present[0].is_floating_point() else torch.float32
        out = []
        for name, x, mask, dim in (("audio", audio_features, audio_mask, self.config.audio_dim),
                                   ("visual", visual_features, visual_mask, self.config.visual_dim)):
            if x is None:
                x = torch.zeros(b, 1, dim, device=device, dtype=dtype)
                mask = torch.zeros(b, 1, dtype=torch.bool, device=device)
            else:
                if x.dim() != 3 or x.shape[-1] != dim or x.shape[0] != b:
                    raise ValueError(f"{name}_features has shape {tuple(x.shape)}; expected (batch={b}, time, "
                                     f"{name}_dim={dim}) — check config.{name}_dim against your encoder")
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
                elif mask.shape != x.shape[:2]:
                    raise ValueError(f"{name}_mask has shape {tuple(mask.shape)}; expected {tuple(x.shape[:2])}")
                mask = mask.bool()
                if name in (self.config.feature_normalization or ()):
                    mean, std = getattr(self, f"{name}_feature_mean"), getattr(self, f"{name}_feature_std")
                    x = (x - mean.to(x.dtype)) / (std.to(x.dtype) + NORMALIZATION_EPS)
                x = x * mask.unsqueeze(-1).to(x.dtype)
            out += [x, mask]
        return tuple(out)

    # ---- forward -------------------------------------------------------------------------
    def forward(
        self,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_weights: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> EmotionRecognitionOutput:
        """loss_weights: which loss terms `out.loss` sums, with what weights (see compute_loss)."""
        audio, audio_mask, visual, visual_mask = self.prepare_inputs(audio_features, audio_mask, visual_features, visual_mask)
        heads = self.compute_heads(audio, audio_mask, visual, visual_mask)
        if self.config.output_scale is not None or self.config.output_offset is not None:
            heads = {**heads, **{k: self.rescale(heads[k]) for k in ("fused_logits", "audio_logits", "visual_logits")
                                 if heads.get(k) is not None}}
        a_logits, v_logits, fused = heads.get("audio_logits"), heads.get("visual_logits"), heads.get("fused_logits")
        # a modality counts as present for a sample when it has a real frame AND the model has a head for it
        a_present = audio_mask.any(1) & (a_logits is not None)
        v_present = visual_mask.any(1) & (v_logits is not None)
        template = next(x for x in (fused, a_logits, v_logits) if x is not None)
        zeros = torch.zeros_like(template)
        a_logits_, v_logits_ = (a_logits if a_logits is not None else zeros), (v_logits if v_logits is not None else zeros)
        both = a_present & v_present
        if fused is None:  # unimodal / late-fusion models without a fusion head: average the heads
            fused = (a_logits_ + v_logits_) / 2 if (a_logits is not None and v_logits is not None) else template
        mean_of_heads = self.config.prediction == "heads_mean" and a_logits is not None and v_logits is not None \
            and heads.get("fused_logits") is not None
        joint = (fused + a_logits_ + v_logits_) / 3 if mean_of_heads else fused
        logits = torch.where(both.unsqueeze(-1), joint, torch.where(a_present.unsqueeze(-1), a_logits_,
                                                                    torch.where(v_present.unsqueeze(-1), v_logits_, zeros)))
        head_used = torch.full(a_present.shape, -1, dtype=torch.long, device=a_present.device)
        head_used[v_present] = 2
        head_used[a_present] = 1
        head_used[both] = 3 if mean_of_heads else 0
        out = EmotionRecognitionOutput(
            logits=logits, audio_logits=a_logits, visual_logits=v_logits, fused_logits=fused,
            audio_reconstruction=heads.get("audio_reconstruction"), visual_reconstruction=heads.get("visual_reconstruction"),
            audio_present=a_present, visual_present=v_present, head_used=head_used,
            fused_embedding=heads.get("fused_embedding"), audio_embedding=heads.get("audio_embedding"),
            visual_embedding=heads.get("visual_embedding"),
        )
        if labels is not None:
            out.loss = self.compute_loss(out, labels, audio, audio_mask, visual, visual_mask, loss_weights)
        return out

    def pooled_input(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, t, d) input -> the (b, d) target of a pooled reconstruction (mean over real frames) and
        the (b,) samples it applies to."""
        from ..nn.layers import masked_mean

        return masked_mean(x, mask), mask.any(1)

    def rescale(self, x: torch.Tensor) -> torch.Tensor:
        """A regression head's output on the labels' scale (see output_scale / output_offset)."""
        cfg = self.config
        if cfg.output_scale is not None:
            x = x * x.new_tensor(cfg.output_scale)
        return x if cfg.output_offset is None else x + x.new_tensor(cfg.output_offset)

    # ---- losses --------------------------------------------------------------------------
    def head_loss(self, pred: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The task loss of one head's outputs (b, num_labels) on the samples where `keep` is true:
        cross-entropy with the config's class weights, soft-label cross-entropy, or 1 - CCC."""
        cfg = self.config
        if cfg.task == "regression":
            return losses.ccc_loss(pred, labels.to(pred.dtype), keep, reduction=cfg.ccc_reduction)
        weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, device=pred.device, dtype=torch.float32)
        fn = losses.soft_cross_entropy if cfg.task == "soft_label_classification" else losses.cross_entropy
        return fn(pred.float(), labels, keep, weight)

    def default_loss_weights(self) -> dict[str, float]:
        """The training loss: the answer (`logits`), aux_loss_weight x each unimodal head,
        reconstruction_loss_weight x each reconstruction."""
        aux, rec = self.config.aux_loss_weight, self.config.reconstruction_loss_weight
        return {"logits": 1.0, "audio": aux, "visual": aux, "audio_reconstruction": rec, "visual_reconstruction": rec}

    def compute_loss(self, out: EmotionRecognitionOutput, labels, audio, audio_mask, visual, visual_mask,
                     weights: dict[str, float] | None = None) -> torch.Tensor:
        """sum of weight x term over `weights` (default: `default_loss_weights()`), the terms being
        logits: the answer, on the samples with any input; fused: the fusion head, on the samples
        with both modalities; audio / visual: that unimodal head, on the samples that have its
        modality; audio_reconstruction / visual_reconstruction: masked MSE against the inputs.
        Terms the model lacks (no such head or reconstruction) and zero weights are left out."""
        weights = self.default_loss_weights() if weights is None else weights
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(f"unknown loss term(s) {unknown}; terms: {', '.join(LOSS_TERMS)}")
        heads = {"logits": (out.logits, out.audio_present | out.visual_present),
                 "fused": (out.fused_logits, out.audio_present & out.visual_present),
                 "audio": (out.audio_logits, out.audio_present), "visual": (out.visual_logits, out.visual_present)}
        inputs = {"audio_reconstruction": (out.audio_reconstruction, audio, audio_mask),
                  "visual_reconstruction": (out.visual_reconstruction, visual, visual_mask)}
        terms = []
        for term, w in weights.items():
            if w and term in heads and heads[term][0] is not None:
                pred, keep = heads[term]
                terms.append(w * self.head_loss(pred, labels, keep))
            elif w and term in inputs and inputs[term][0] is not None:
                rec, x, mask = inputs[term]
                if rec.dim() == 2:  # a pooled reconstruction targets the pooled input
                    x, mask = self.pooled_input(x, mask)
                terms.append(w * losses.masked_mse(rec, x, mask))
        return sum(terms) if terms else out.logits.sum() * 0.0
