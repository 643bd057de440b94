"""HiCMAE configuration (Sun et al., "HiCMAE: Hierarchical Contrastive Masked Autoencoder for
Self-Supervised Audio-Visual Emotion Recognition", Information Fusion 2024; sunlicai/HiCMAE, MIT).

Defaults are the released fine-tuned model (`avit_dim512_patch16_160_a256` with the CREMA-D
script's `--depth 10 --depth_audio 10 --fusion_depth 2 --num_frames 16`): 80.8 M parameters."""
from __future__ import annotations

from transformers import PretrainedConfig

from ...core.errors import ConfigError
from ..base import TASKS, check_divides, check_positive_int

MISSING_MODALITY = ("zeros",)


class HiCMAEConfig(PretrainedConfig):
    """The audio-visual classifier of HiCMAE: a video ViT on face clips, an audio ViT on log-mel
    fbanks, a cross-modal fusion encoder and a linear head on four pooled features.

    image_size / patch_size / num_frames / tubelet_size: the video input (num_frames x 3 x
        image_size x image_size, cut into tubelet_size x patch_size x patch_size tubes).
    hidden_size / num_hidden_layers / num_attention_heads: the video ViT.
    audio_target_length / num_mel_bins / audio_patch_size: the fbank input (frames x mel bins).
    audio_hidden_size / audio_num_hidden_layers / audio_num_attention_heads: the audio ViT.
    fusion_num_hidden_layers / fusion_num_attention_heads: the cross-modal encoder (each layer is a
        video and an audio cross+self-attention block).
    mlp_ratio: feed-forward width / model width. qkv_bias: learnt query and value biases (the key
        has none). layer_norm_eps: of every LayerNorm (official 1e-6).
    drop_path_rate: stochastic depth of the encoder layers, rising linearly to this (training only;
        official 0.1). hidden_dropout_prob: dropout after attention / MLP outputs (official 0).
    missing_modality: what the model sees for a modality that is not given: "zeros", an all-zero
        input after normalisation (the mean face image of ImageNet statistics / the fbank at the
        official normalisation mean). HiCMAE was trained with both modalities always present and
        has no rule of its own; this is vavl's, so that missing-modality evaluation can run.
    task: "single_label_classification" (the released models) or "regression".
    """

    model_type = "vavl_hicmae"

    image_size: int = 160
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    hidden_size: int = 512
    num_hidden_layers: int = 10
    num_attention_heads: int = 8
    audio_target_length: int = 256
    num_mel_bins: int = 128
    audio_patch_size: int = 16
    audio_hidden_size: int = 512
    audio_num_hidden_layers: int = 10
    audio_num_attention_heads: int = 8
    fusion_num_hidden_layers: int = 2
    fusion_num_attention_heads: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.1
    hidden_dropout_prob: float = 0.0
    missing_modality: str = "zeros"
    task: str = "single_label_classification"

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = 6
        super().__post_init__(**kwargs)
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {str(v): k for k, v in self.id2label.items()}
        self.validate()

    @property
    def label_names(self) -> list[str]:
        return [str(self.id2label[i]) for i in range(self.num_labels)]

    @property
    def video_grid(self) -> tuple[int, int, int]:
        """(t, h, w) tokens of the video ViT."""
        side = self.image_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def audio_grid(self) -> tuple[int, int]:
        """(time, frequency) tokens of the audio ViT."""
        return self.audio_target_length // self.audio_patch_size, self.num_mel_bins // self.audio_patch_size

    def validate(self) -> None:
        check_positive_int(self, "image_size", "patch_size", "num_frames", "tubelet_size", "num_hidden_layers",
                           "audio_target_length", "num_mel_bins", "audio_patch_size", "audio_num_hidden_layers",
                           "fusion_num_hidden_layers", "fusion_num_attention_heads", "num_labels")
        check_divides(self, "hidden_size", "num_attention_heads")
        check_divides(self, "audio_hidden_size", "audio_num_attention_heads")
        check_divides(self, "hidden_size", "fusion_num_attention_heads")
        check_divides(self, "audio_hidden_size", "fusion_num_attention_heads")
        for size, part in (("image_size", "patch_size"), ("num_frames", "tubelet_size"),
                           ("audio_target_length", "audio_patch_size"), ("num_mel_bins", "audio_patch_size")):
            if getattr(self, size) % getattr(self, part):
                raise ConfigError(f"{part}={getattr(self, part)} does not divide {size}={getattr(self, size)}")
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {TASKS}")
        if self.missing_modality not in MISSING_MODALITY:
            raise ConfigError(f"missing_modality={self.missing_modality!r} must be one of {MISSING_MODALITY}")
