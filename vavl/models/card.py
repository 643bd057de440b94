"""Hub-ready model cards: the README.md of every saved model folder, with the Hugging Face Hub's
model-card metadata in its YAML header (parsed back by `huggingface_hub.ModelCard`):

    library_name: vavl, pipeline_tag, license (the strictest of the training corpus' and the
    encoders' weights' licenses), datasets, base_model (the encoders' hub ids), tags, and a
    model-index block with the evaluation results a run measured (task, dataset, split and
    protocol, the label scored, metric names and values).

`save_pretrained` of every vavl model writes one (`write_card`), never over a README.md that
vavl did not write; the fine-tune recipe and the converters write theirs with what they know
(corpus, label, results).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# Hub license ids, least to most restrictive (share-alike and non-commercial terms add up)
LICENSE_ORDER = ("mit", "bsd-3-clause", "apache-2.0", "cc-by-4.0", "odbl", "cc-by-sa-4.0", "cc-by-nc-4.0",
                 "cc-by-nc-sa-4.0", "other")
SHARE_ALIKE, NON_COMMERCIAL = {"odbl", "cc-by-sa-4.0", "cc-by-nc-sa-4.0"}, {"cc-by-nc-4.0", "cc-by-nc-sa-4.0"}
CORPORA = {  # corpus -> (Hub dataset type, license of the data)
    "CREMA-D": ("crema-d", "odbl"),                 # Open Database License
    "RAVDESS": ("ravdess", "cc-by-nc-sa-4.0"),
    "MSP-IMPROV": ("msp-improv", "other"),          # academic license agreement
    "MSP-Podcast": ("msp-podcast", "other"),
}
MARK = "library_name: vavl"   # how a card vavl wrote is recognised
TASK_NAME = "Audio-visual emotion recognition"


def hub_license(name: str | None) -> str | None:
    """"Apache-2.0", "CC-BY-NC-SA-4.0", ... -> the Hub's ids ("apache-2.0", "cc-by-nc-sa-4.0")."""
    return None if not name else name.strip().lower().replace(" ", "-")


def strictest(licenses) -> str | None:
    """The most restrictive of the licenses (None when there are none); share-alike data with
    non-commercial weights gives cc-by-nc-sa-4.0; a license not in LICENSE_ORDER counts as "other"."""
    found = {hub_license(x) for x in licenses if x}
    if not found:
        return None
    known = {x if x in LICENSE_ORDER else "other" for x in found}
    top = max(known, key=LICENSE_ORDER.index)
    if top != "other" and known & SHARE_ALIKE and known & NON_COMMERCIAL:
        return "cc-by-nc-sa-4.0"
    return top


def _license_of(name: str | None, source: str | None) -> str | None:
    """The license of an encoder's weights: its preset's, or timm's pretrained config's."""
    from ..encoders.base import get_encoder_preset, list_encoders

    if name in list_encoders():
        return get_encoder_preset(name).license
    import timm

    model_name = name if name and timm.is_model(name) else None
    cfg = timm.models.get_pretrained_cfg(model_name) if model_name else None
    return cfg.license if cfg else None


def _encoder(spec: dict | None) -> tuple[str | None, str | None]:
    """(hub id, license) of a full model's encoder spec; (None, None) for untrained or hand-crafted ones."""
    if not spec or spec.get("weights") in ("random-init", "none"):
        return None, None
    from ..encoders.base import get_encoder_preset, list_encoders

    name = spec.get("name") or spec.get("model_name")
    source = spec.get("source") or (get_encoder_preset(name).source if name in list_encoders() else None)
    return source, _license_of(name, source)


def cached_features(settings: dict) -> dict[str, Any]:
    """What a feature cache's settings (cache.json of `vavl extract`) say about the encoders a model
    trained on it depends on: {"base_model": hub ids, "licenses": ..., "modalities": ...}."""
    out: dict[str, Any] = {"base_model": [], "licenses": [], "modalities": set()}
    for modality in ("audio", "visual"):
        name, weights = settings.get(f"{modality}_encoder"), settings.get(f"{modality}_weights") or {}
        if not name:
            continue
        out["modalities"].add(modality)
        if weights.get("weights") == "pretrained":
            out["base_model"].append(weights.get("source"))
            out["licenses"].append(_license_of(name, weights.get("source")))
    return out


def encoders(model) -> list[tuple[str, str | None, str | None]]:
    """(modality, hub id, license) of each encoder a full model carries."""
    out = []
    for modality in ("audio", "visual"):
        spec = getattr(model.config, f"{modality}_encoder", None)
        if isinstance(spec, dict):
            out.append((modality, *_encoder(spec)))
    return out


def pipeline_tag(modalities: set[str]) -> str:
    return "video-classification" if "visual" in modalities else "audio-classification"


def eval_results(results: dict | None, corpus: str | None, label: str | None, protocol: str | None, tag: str):
    """model-index entries from {split: metrics.json dict of vavl.evaluation}: for each condition
    the fused head's UA / WA / macro-F1 (classes) or mean CCC and per-attribute CCC (attributes)."""
    from huggingface_hub import EvalResult

    out = []
    dataset_type = CORPORA.get(corpus, (corpus.lower() if corpus else "custom", None))[0]
    for split, metrics in (results or {}).items():
        regression = metrics.get("task") == "regression"
        for condition, heads in metrics.get("conditions", {}).items():
            fused = heads.get("fused") or {}
            pairs = ([("mean_ccc", "mean CCC", fused.get("mean_ccc"))]
                     + [(f"ccc_{a}", f"CCC {a}", (fused.get(a) or {}).get("ccc")) for a in metrics.get("labels", [])]
                     if regression else
                     [("unweighted_accuracy", "UA", fused.get("UA")), ("accuracy", "WA", fused.get("WA")),
                      ("f1", "macro-F1", fused.get("macro_f1"))])
            for metric, name, value in pairs:
                if value is None:
                    continue
                out.append(EvalResult(task_type=tag, task_name=TASK_NAME, dataset_type=dataset_type,
                                      dataset_name=corpus or "custom manifest", dataset_split=split, dataset_config=label,
                                      dataset_args={"protocol": protocol, "condition": condition} if protocol else
                                      {"condition": condition},
                                      metric_type=metric, metric_name=f"{name} ({condition})", metric_value=float(value)))
    return out


def card_data(model, *, name: str, corpus: str | None = None, label: str | None = None, protocol: str | None = None,
              results: dict | None = None, base_model: list[str] | None = None, licenses: list[str] | None = None,
              modalities: set[str] | None = None, tags: list[str] | None = None, datasets: list[str] | None = None,
              license: str | None = None):
    """The YAML header as `huggingface_hub.ModelCardData`. corpus: what the model was trained (and
    scored) on; its license counts. license: the weights' own license where their publisher chose
    one (a converted upstream model), instead of the strictest of the inputs'."""
    from huggingface_hub import ModelCardData

    found = encoders(model)
    ids = list(base_model or []) + [hub_id for _, hub_id, _ in found if hub_id]
    modalities = modalities or {m for m, *_ in found} or {"audio", "visual"}
    data_license = CORPORA.get(corpus, (None, "other" if corpus else None))[1]
    license_ = hub_license(license) or strictest([data_license, *(lic for *_, lic in found), *(licenses or [])]) or "other"
    tag = pipeline_tag(modalities)
    c = model.config
    emotion = getattr(c, "fusion", None) or {}
    model_type = emotion.get("model_type") if isinstance(emotion, dict) else None
    all_tags = ["vavl", "emotion-recognition", "audio-visual-emotion-recognition", model_type or c.model_type,
                *(tags or [])]
    return ModelCardData(library_name="vavl", pipeline_tag=tag, license=license_,
                         datasets=datasets or ([corpus] if corpus else None), base_model=sorted(set(ids)) or None,
                         tags=list(dict.fromkeys(t for t in all_tags if t)), model_name=name,
                         eval_results=eval_results(results, corpus, label, protocol, tag) or None)


def render(model, body: str, **meta: Any) -> str:
    """The card: YAML header (card_data) and markdown body."""
    return f"---\n{card_data(model, **meta).to_yaml()}\n---\n\n{body.strip()}\n"


def default_body(model, name: str) -> str:
    c = model.config
    labels = getattr(c, "label_names", None) or getattr(model, "label_names", None) or []
    return (f"# {name}\n\nA vavl model ({type(model).__name__}). Outputs: {', '.join(map(str, labels)) or 'see config.json'}.\n\n"
            "```python\nimport vavl\nfrom transformers import AutoModel, pipeline\n"
            'model = AutoModel.from_pretrained("<this folder>")\n'
            'classify = pipeline("audio-visual-emotion-recognition", model="<this folder>")   # models with encoders\n```\n')


def write_card(folder, model, body: str | None = None, **meta: Any) -> Path | None:
    """Write folder/README.md unless a README.md that vavl did not write is there (it is kept)."""
    path = Path(folder) / "README.md"
    if path.is_file() and MARK not in path.read_text(encoding="utf-8", errors="replace"):
        return None
    name = meta.pop("name", None) or Path(folder).resolve().name
    path.write_text(render(model, body or default_body(model, name), name=name, **meta), encoding="utf-8")
    return path
