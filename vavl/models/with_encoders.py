"""Full models: speech and face encoders in front of a fusion model, saved as one folder.

    model = vavl.create_model("auxformer", audio_encoder="wav2vec2-large-robust",
                              visual_encoder="efficientnet_b2", num_labels=6)
    out = model(input_values=wave, attention_mask=mask, pixel_values=crops, pixel_mask=face_mask)
    model.save_pretrained(dir); AutoModel.from_pretrained(dir)   # after `import vavl`

A named encoder comes with its pretrained weights (`pretrained_encoders=False` asks for an untrained
one, and the config's encoder spec then says `"weights": "random-init"`).
The config holds the fusion model's config and a spec of each encoder (architecture, options),
so the folder rebuilds offline; every weight, encoders included, is in model.safetensors. The
processor (crop size, normalisation, fps) is saved next to it as preprocessor_config.json.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from ..encoders.base import Encoder
from ..core.errors import ConfigError
from .outputs import EmotionRecognitionOutput
from .auto import register_auto


class AudioVisualConfig(PretrainedConfig):
    """fusion: the fusion model's config as a dict (with its model_type).
    audio_encoder / visual_encoder: encoder specs (vavl.encoders.build.encoder_spec) or None.
    processor: AudioVisualProcessor settings used at inference."""

    model_type = "vavl_audio_visual"

    fusion: dict | None = None
    audio_encoder: dict | None = None
    visual_encoder: dict | None = None
    processor: dict | None = None

    def build_fusion_config(self) -> PretrainedConfig:
        if not self.fusion:
            raise ConfigError("AudioVisualConfig.fusion is empty: build full models with vavl.create_model(..., audio_encoder=...)")
        d = dict(self.fusion)
        return AutoConfig.for_model(d.pop("model_type"), **d)


class AudioVisualModel(PreTrainedModel):
    """Encoders + fusion model. Raw inputs (input_values / pixel_values) go through the encoders;
    feature inputs (audio_features / visual_features) go straight to the fusion model."""

    config_class = AudioVisualConfig
    base_model_prefix = "vavl_av"
    main_input_name = "input_values"

    def __init__(self, config: AudioVisualConfig, fusion: PreTrainedModel | None = None,
                 audio_encoder: Encoder | None = None, visual_encoder: Encoder | None = None):
        super().__init__(config)
        from ..encoders.build import encoder_from_spec

        for key in ("fusion", "audio_encoder", "visual_encoder", "processor"):   # what a hand-edited config.json can break
            value = getattr(config, key, None)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"config.json: {key!r} must be an object (as save_pretrained writes it) or null, "
                                  f"got {type(value).__name__} {str(value)[:40]!r}")

        self.fusion = fusion if fusion is not None else AutoModel.from_config(config.build_fusion_config())
        if audio_encoder is None and config.audio_encoder:
            audio_encoder = encoder_from_spec(config.audio_encoder)
        if visual_encoder is None and config.visual_encoder:
            visual_encoder = encoder_from_spec(config.visual_encoder)
        self.audio_encoder, self.visual_encoder = audio_encoder, visual_encoder
        for module in self.modules():  # every part initialised itself (or holds pretrained weights)
            module._is_hf_initialized = True
        self._processor = None
        self.post_init()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, fusion: PreTrainedModel, audio_encoder: str | Encoder | None = None,
                   visual_encoder: str | Encoder | None = None, pretrained_encoders: bool = True,
                   processor: dict | None = None) -> "AudioVisualModel":
        """Encoders (preset names with their pretrained weights, folders, timm names or modules) + a
        fusion model. The fusion config's audio_dim / visual_dim follow the encoders' output_dim."""
        from ..encoders.build import build_encoder, encoder_spec

        encoders = {}
        for modality, enc in (("audio", audio_encoder), ("visual", visual_encoder)):
            if isinstance(enc, (str, os.PathLike)):
                enc = build_encoder(enc, pretrained=pretrained_encoders)
            if enc is not None and enc.modality != modality:
                raise ConfigError(f"{modality}_encoder={getattr(enc, 'name', type(enc).__name__)!r} is a {enc.modality} encoder")
            encoders[modality] = enc
        dims = {f"{m}_dim": e.output_dim for m, e in encoders.items() if e is not None}
        fcfg = fusion.config
        if any(getattr(fcfg, k) != v for k, v in dims.items()):
            if getattr(fcfg, "_name_or_path", ""):
                raise ConfigError(f"the pretrained fusion model {fcfg._name_or_path} takes "
                                  f"{ {k: getattr(fcfg, k) for k in dims} } but the encoders give {dims}")
            d = fcfg.to_dict()
            d.update(dims)
            d.pop("model_type", None)
            fusion = type(fusion)(type(fcfg)(**d))
        from ..media.processor import AudioVisualProcessor

        proc = AudioVisualProcessor.for_encoders(encoders["audio"], encoders["visual"], **(processor or {}))
        specs = {m: None if e is None else {**encoder_spec(e), **_weights_fields(e)} for m, e in encoders.items()}
        config = AudioVisualConfig(
            fusion=fusion.config.to_dict(), processor=proc.to_dict(),
            audio_encoder=specs["audio"], visual_encoder=specs["visual"],
            id2label=dict(fusion.config.id2label), label2id=dict(fusion.config.label2id))
        model = cls(config, fusion=fusion, audio_encoder=encoders["audio"], visual_encoder=encoders["visual"])
        model._processor = proc
        return model

    @property
    def processor(self):
        """The AudioVisualProcessor this model takes its inputs from."""
        if self._processor is None:
            from ..media.processor import AudioVisualProcessor

            self._processor = AudioVisualProcessor.for_encoders(self.audio_encoder, self.visual_encoder,
                                                                **{k: v for k, v in (self.config.processor or {}).items()
                                                                   if k != "processor_class"})
        return self._processor

    @processor.setter
    def processor(self, value) -> None:
        self._processor = value
        self.config.processor = value.to_dict()

    # ---- the fusion model's answers, so that no caller asks which shape it holds ----------------
    @property
    def emotion_config(self):
        """The fusion model's config: labels, task, prediction rule, loss weights."""
        return self.fusion.config

    @property
    def fusion_model(self) -> PreTrainedModel:
        """The model that takes encoder features (b, t, d)."""
        return self.fusion

    @property
    def task(self) -> str:
        return self.fusion.config.task

    @property
    def label_names(self) -> list[str]:
        return self.fusion.config.label_names

    def input_origin(self, modality: str) -> torch.Tensor | None:
        return self.fusion.input_origin(modality)

    def head_loss(self, pred: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.fusion.head_loss(pred, labels, keep)

    def set_feature_statistics(self, modality: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.fusion.set_feature_statistics(modality, mean, std)

    def branches(self) -> dict:
        """The fusion model's branches (VAVL's schedule), if it has them."""
        if not hasattr(self.fusion, "branches"):
            raise AttributeError(f"{type(self.fusion).__name__} has no branches()")
        return self.fusion.branches()

    def set_attn_implementation(self, attn_implementation: str) -> None:
        """The fusion model's attention (the encoders keep transformers' own)."""
        self.fusion.set_attn_implementation(attn_implementation)

    def layer_ids(self) -> dict[str, int]:
        """Layer-wise learning-rate decay over the whole model: parameter name -> layer id. Each
        encoder's ids (Encoder.layer_ids) are shifted so that both encoders' top layers get the
        same id T; every parameter of the fusion model gets T + 1, above all encoder layers."""
        parts = {name: enc.layer_ids() for name, enc in (("audio_encoder", self.audio_encoder),
                                                         ("visual_encoder", self.visual_encoder)) if enc is not None}
        tops = {name: max(ids.values(), default=0) for name, ids in parts.items()}
        top = max(tops.values(), default=0)
        out = {f"{name}.{n}": i + top - tops[name] for name, ids in parts.items() for n, i in ids.items()}
        out.update({f"fusion.{n}": top + 1 for n, _ in self.fusion.named_parameters()})
        return out

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Config, weights, the processor and a Hub-ready README.md (vavl.models.cards)."""
        from .cards import write_card

        from ..core.files import public_modes

        self.config.processor = self.processor.to_dict()
        self.config.fusion = self.fusion.config.to_dict()   # as it is now (a trainer may have recorded its provenance)
        super().save_pretrained(save_directory, *args, **kwargs)
        public_modes(save_directory)   # the weights get the umask's permissions, like every other file
        self.processor.save_pretrained(save_directory)
        write_card(save_directory, self)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        from ..encoders.build import import_for_spec
        from .provenance import check_encoder_weights

        config = kwargs.get("config")
        if not isinstance(config, AudioVisualConfig):
            config = AudioVisualConfig.from_pretrained(pretrained_model_name_or_path)
        for spec in (config.audio_encoder, config.visual_encoder):   # imported here, not on the meta device
            import_for_spec(spec)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info=True
        check_encoder_weights(model, str(pretrained_model_name_or_path))
        path = os.path.join(str(pretrained_model_name_or_path), "preprocessor_config.json")
        if os.path.exists(path):
            from ..media.processor import AudioVisualProcessor

            model._processor = AudioVisualProcessor.from_pretrained(str(pretrained_model_name_or_path))
        return loaded

    # ---- forward -----------------------------------------------------------------------------
    def encode(self, input_values=None, attention_mask=None, pixel_values=None, pixel_mask=None) -> dict[str, Any]:
        """Raw inputs -> {"audio_features", "audio_mask", "visual_features", "visual_mask"} (None where not given)."""
        out = {"audio_features": None, "audio_mask": None, "visual_features": None, "visual_mask": None}
        if input_values is not None:
            if self.audio_encoder is None:
                raise ConfigError("this model has no audio encoder: pass audio_features instead of input_values")
            out["audio_features"], out["audio_mask"] = self.audio_encoder(input_values, attention_mask)
        if pixel_values is not None:
            if self.visual_encoder is None:
                raise ConfigError("this model has no visual encoder: pass visual_features instead of pixel_values")
            out["visual_features"], out["visual_mask"] = self.visual_encoder(pixel_values, pixel_mask)
        return out

    def forward(self, input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, pixel_mask: torch.Tensor | None = None,
                audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
                visual_features: torch.Tensor | None = None, visual_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> EmotionRecognitionOutput:
        enc = self.encode(input_values, attention_mask, pixel_values, pixel_mask)
        if enc["audio_features"] is None:
            enc["audio_features"], enc["audio_mask"] = audio_features, audio_mask
        if enc["visual_features"] is None:
            enc["visual_features"], enc["visual_mask"] = visual_features, visual_mask
        return self.fusion(**enc, labels=labels, **kwargs)


def _weights_fields(encoder: Encoder) -> dict[str, Any]:
    """What a full model's config says of an encoder's weights: "weights" (pretrained / random-init /
    folder / none) and, for untrained ones, the seed they were drawn from."""
    origin = getattr(encoder, "_vavl_weights", {})
    return {"weights": origin.get("weights"), **({"seed": origin["seed"]} if "seed" in origin else {})}


register_auto(AudioVisualConfig, AudioVisualModel)
