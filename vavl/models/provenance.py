"""Where a model's features came from: the encoders that made a feature cache, rebuilt from what
`vavl extract` recorded in its cache.json, and the check that a full model still holds them.

    encoders = cache_encoders(settings, where="cache/crema_d")      # {"audio": Encoder, "visual": Encoder | None}
    model = model_from_cache(fusion, settings, encoders)           # AudioVisualModel: takes media files
    check_encoder_weights(model, "runs/aux")                       # at load: refuses other weights

cache.json names each encoder (a preset or timm name, or a folder) and its weights: "pretrained"
(the hub id), "random-init" (the seed), "folder" or "none" (hand-crafted features), with a sha256 of
their values. A model trained on the cache gets the same encoders in front of its fusion model,
the cache's processor settings (fps, face crop, max_side) and, in its config, each encoder's
identity (`identity` in the encoder spec); a folder whose encoders do not hash to the recorded
sha256 is refused with one line naming both.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from ..core.errors import ConfigError

REBUILDABLE = ("pretrained", "random-init", "folder", "none")


class NotRebuildable(ConfigError):
    """The cache's encoder was passed in code (a module), or its cache.json predates the record."""


def describe_weights(identity: dict | None) -> str:
    """"pretrained facebook/wav2vec2-base", "random-init (seed 0)", "folder /x/enc", "none (hand-crafted)"."""
    if not identity:
        return "unknown"
    kind, source = identity.get("weights"), identity.get("source")
    if kind == "pretrained":
        return f"pretrained ({source})" if source else "pretrained"
    if kind == "random-init":
        return f"random-init (untrained, seed {identity.get('seed', 0)})"
    if kind == "folder":
        return f"folder {source}"
    if kind == "none":
        return "none (hand-crafted features, no weights)"
    return str(kind)


def _short(sha: str | None) -> str:
    return f"sha256 {sha[:16]}" if sha else "no sha256"


def rebuild_encoder(name: str, identity: dict, modality: str, where: str):
    """One encoder of a cache, with the weights cache.json records, checked against its sha256."""
    from ..encoders.build import build_encoder, weights_identity

    kind = (identity or {}).get("weights")
    if not name or kind not in REBUILDABLE:
        raise NotRebuildable(f"{where}: the {modality} encoder {name!r} ({describe_weights(identity)}) was given in code, "
                             "not by name or folder; it cannot be rebuilt from cache.json")
    try:
        if kind == "folder":
            folder = identity.get("source") or name
            if not os.path.isdir(folder):
                raise ConfigError(f"the {modality} encoder folder {folder} (cache.json) is not there any more")
            encoder = build_encoder(folder)
        else:
            encoder = build_encoder(name, pretrained=kind == "pretrained", seed=int(identity.get("seed", 0)))
    except ConfigError as e:   # weights neither cached nor downloadable, a folder gone: say so, go on without
        raise NotRebuildable(f"{where}: {e}") from None
    got = weights_identity(encoder)["sha256"]
    if identity.get("sha256") and got != identity["sha256"]:
        raise ConfigError(f"{where}: the {modality} encoder {name} ({describe_weights(identity)}) now has weights with "
                          f"{_short(got)}, but the cached features were made with {_short(identity['sha256'])}; "
                          "extract the features again with these weights, or restore the weights that made them")
    return encoder


def cache_encoders(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """{"audio": Encoder | None, "visual": Encoder | None} from a cache's settings (cache.json).
    Raises NotRebuildable when an encoder cannot be rebuilt, ConfigError when its weights differ."""
    out = {}
    for modality in ("audio", "visual"):
        name = settings.get(f"{modality}_encoder")
        out[modality] = rebuild_encoder(name, settings.get(f"{modality}_weights") or {}, modality, where) if name else None
    if out["audio"] is None and out["visual"] is None:
        raise NotRebuildable(f"{where}: cache.json names no encoders")
    return out


def model_from_cache(fusion, settings: dict[str, Any], encoders: dict[str, Any]):
    """The fusion model (trained on the cache) behind the cache's encoders and processor settings:
    an AudioVisualModel that takes media files as the cache's clips were read."""
    from .with_encoders import AudioVisualModel

    processor = {k: v for k, v in (settings.get("processor") or {}).items() if k != "processor_class"}
    model = AudioVisualModel.from_parts(fusion, audio_encoder=encoders.get("audio"), visual_encoder=encoders.get("visual"),
                                        processor=processor)
    for modality in ("audio", "visual"):
        spec = getattr(model.config, f"{modality}_encoder")
        if spec is not None:
            identity = dict(settings.get(f"{modality}_weights") or {})
            spec["identity"] = {"name": settings.get(f"{modality}_encoder"), **identity}
            spec["weights"] = identity.get("weights", spec.get("weights"))
    return model


def check_encoder_weights(model, where: str) -> None:
    """A full model whose config records its encoders' sha256 (trained on a cache): the weights it
    holds must be those; another set of weights gives features the fusion model never saw."""
    from ..encoders.build import weights_identity

    for modality in ("audio", "visual"):
        spec = getattr(model.config, f"{modality}_encoder", None) or {}
        want = (spec.get("identity") or {}).get("sha256")
        encoder = getattr(model, f"{modality}_encoder", None)
        if not want or encoder is None:
            continue
        if any(t.is_floating_point() and t.dtype != torch.float32 for t in encoder.state_dict().values()):
            continue   # loaded in another precision on purpose: the recorded hash is of the fp32 weights
        got = weights_identity(encoder)["sha256"]
        if got != want:
            identity = spec["identity"]
            raise ConfigError(f"{where}: its {modality} encoder holds weights with {_short(got)}, but the model was trained "
                              f"on features of {identity.get('name')} ({describe_weights(identity)}, {_short(want)}); "
                              "save the model again with the encoder that made its features")


NOT_RECORDED = ("not recorded: a model not trained by recipes/finetune.py, or saved before vavl recorded it; "
                "its own card may say more")


def model_provenance(model) -> dict[str, Any]:
    """What a model is, for metrics.json and report.md: {"encoders": {modality: {"name", "weights",
    "sha256"}}, "trained": what the fine-tune recipe recorded (corpus or synthetic data, protocol,
    fold, label field, labels) or a line saying that nothing was}. A model built in code and never
    trained says "weights": "random-init"."""
    fusion_cfg = model.emotion_config
    prov = dict(getattr(fusion_cfg, "provenance", None) or {})
    features = prov.pop("features", None) or {}
    encoders = {}
    for modality in ("audio", "visual"):
        spec = getattr(model.config, f"{modality}_encoder", None) if model.config is not fusion_cfg else None
        if isinstance(spec, dict):
            identity = spec.get("identity") or {k: spec[k] for k in ("weights", "seed") if k in spec}
            name = identity.get("name") or spec.get("name") or spec.get("model_name") or spec.get("kind")
        elif features.get(f"{modality}_encoder"):
            identity, name = features.get(f"{modality}_weights") or {}, features[f"{modality}_encoder"]
        else:
            continue
        encoders[modality] = {"name": name, "weights": describe_weights(identity), "sha256": identity.get("sha256")}
    if features.get("cache"):
        prov["cache"] = features["cache"]
    return {"encoders": encoders or "none recorded (a model that takes features it was not told the origin of)",
            "trained": prov or NOT_RECORDED}


def provenance_lines(record: dict[str, Any]) -> list[str]:
    """report.md's lines for a model_provenance record."""
    enc = record.get("encoders")
    lines = []
    if isinstance(enc, dict):
        lines.append("- encoders: " + "; ".join(f"{m} `{e['name']}`, weights {e['weights']}"
                                                 + (f", sha256 `{e['sha256'][:16]}…`" if e.get("sha256") and not e["weights"].startswith("none") else "")
                                                 for m, e in enc.items()))
    else:
        lines.append(f"- encoders: {enc}")
    t = record.get("trained")
    if not isinstance(t, dict):
        lines.append(f"- trained: {t}")
    elif t.get("weights") == "random-init":
        lines.append("- trained: **no**: the fusion model was built in code and never trained; its scores carry no meaning")
    else:
        data = ("**synthetic clips** (vavl.data.synthetic), not real recordings" if t.get("synthetic")
                else f"`{t.get('corpus') or 'a custom manifest'}`")
        fold = "" if t.get("fold") is None else f", fold {t['fold']}"
        lines.append(f"- trained on: {data}, manifest `{t.get('manifest')}`, protocol `{t.get('protocol')}`{fold}, "
                     f"label field `{t.get('label_field')}`")
    return lines
