"""Model cards, all rendered here: the Hub-ready README.md of every saved model folder, and the zoo's
cards of registry entries (zoo/*.md, written by the developer script zoo/update.py).

A saved folder's card carries the Hugging Face Hub's model-card metadata in its YAML header (parsed
back by `huggingface_hub.ModelCard`): library_name: vavl, pipeline_tag, license (the strictest of the
training corpus' and the encoders' weights' licenses), datasets, base_model (the encoders' hub ids),
tags, and a model-index block with the results a run measured. `save_pretrained` of every vavl model
writes one (`write_card`), never over a README.md that vavl did not write.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..encoders.base import encoder_cards
from .registry import ModelEntry, get_entry, list_models

# Hub license ids, least to most restrictive (share-alike and non-commercial terms add up)
LICENSE_ORDER = ("mit", "bsd-3-clause", "apache-2.0", "cc-by-4.0", "odbl", "cc-by-sa-4.0", "cc-by-nc-4.0",
                 "cc-by-nc-sa-4.0", "other")
SHARE_ALIKE, NON_COMMERCIAL = {"odbl", "cc-by-sa-4.0", "cc-by-nc-sa-4.0"}, {"cc-by-nc-4.0", "cc-by-nc-sa-4.0"}
CORPORA = {  # corpus -> (Hub dataset type, license of the data)
    "CREMA-D": ("crema-d", "odbl"),                 # Open Database License
    "RAVDESS": ("ravdess", "cc-by-nc-sa-4.0"),
    "MSP-IMPROV": ("msp-improv", "other"),          # academic license agreement
    "MSP-Podcast": ("msp-podcast", "other"),
    "IEMOCAP": ("iemocap", "other"),                # USC release agreement
    "MELD": ("meld", "other"),                      # the MELD repository's terms; its clips come from a TV series
}
SYNTHETIC = "synthetic"   # corpus of a model trained on vavl.data.synthetic's clips: no dataset, no data license
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
    """model-index entries from {split: metrics.json dict of vavl.evaluation.scoring}: for each condition
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
    scored_on = corpus
    if corpus == SYNTHETIC:   # made by vavl itself: no dataset to name, no data license, and a tag that says so
        corpus, tags = None, [*(tags or []), "synthetic-data"]
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
                         eval_results=eval_results(results, scored_on, label, protocol, tag) or None)


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


# ---- the zoo's cards of registry entries --------------------------------------------------
MARKER = "<!-- generated from vavl/models/registry.py entries by `python zoo/update.py`: edit the entry, then run it -->"
TASK_NAMES = {"single_label_classification": "classification", "soft_label_classification": "soft-label classification",
              "regression": "regression"}


def _config(entry: ModelEntry):
    return entry.model_class.config_class(**entry.config)


def task_of(entry: ModelEntry) -> str:
    return TASK_NAMES.get(getattr(_config(entry), "task", None), "other")


def count_parameters(entry: ModelEntry) -> int:
    """Parameters of the model itself (encoders not counted), built on the meta device: no memory, no init."""
    with torch.device("meta"):
        model = entry.model_class(_config(entry))
    return sum(p.numel() for p in model.parameters())


def _targets(entry: ModelEntry) -> str:
    cfg = _config(entry)
    names = getattr(cfg, "label_names", None)
    if not names:
        return entry.labels or "—"
    kind = "attributes" if getattr(cfg, "task", None) == "regression" else f"{len(names)} classes"
    return f"{kind}: {', '.join(names)}"


def results_table(metrics: dict) -> str:
    """UA (classes) or mean CCC (attributes) per condition and head, from a `vavl evaluate`
    metrics.json dict (vavl.evaluation.scoring.evaluate)."""
    regression = metrics.get("task") == "regression"
    key, label = ("mean_ccc", "mean CCC") if regression else ("UA", "UA (%)")
    rows = []
    for cond, heads in metrics["conditions"].items():
        cells = []
        for head in ("fused", "audio", "visual"):
            v = (heads.get(head) or {}).get(key)
            cells.append("—" if v is None else (f"{v:.3f}" if regression else f"{100 * v:.1f}"))
        rows.append(f"| {cond} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    return (f"{label} per condition and head (fused = what a user gets):\n\n"
            f"| condition | fused | audio head | visual head |\n|---|---|---|---|\n{table}\n")


def prediction_rule(rule: str) -> str:
    """A model card's words for config.prediction."""
    return {"heads_mean": "`heads_mean`: the mean of the fused, audio and visual heads (the official AuxFormer rule); "
                          "one modality: its own head",
            "fused": "`fused`: the fusion head for clips with both modalities; one modality: its own head"}[rule]


def render_card(title: str, intro: str, facts: list[tuple[str, str]], sections: list[tuple[str, str]],
                header: str = "") -> str:
    """A model card: `header` (a marker or YAML front matter), "# title", the intro, a two-column
    table of facts, then one "## name" section per (name, markdown) pair. The zoo's cards and the
    fine-tune recipe's card of a trained model are both written with it."""
    table = "\n".join(f"| {k} | {v} |" for k, v in facts)
    body = "".join(f"\n## {name}\n\n{text}" for name, text in sections)
    return f"{header}\n# {title}\n\n{intro}\n\n| | |\n|---|---|\n{table}\n{body}"


def _results_section(name: str, record: dict | None) -> str:
    if record is None:
        return ("No results yet: no run of this entry has been trained and scored. Results appear here only from\n"
                f"`zoo/results/{name}.json`, written by `python zoo/update.py record` from the `metrics.json` of a real\n"
                "`vavl evaluate` run, together with the data it ran on.\n")
    return f"Data: {record['data']}\n\nCommand: `{record['command']}`\n\n{results_table(record['metrics'])}"


def card_text(name: str, results: dict | None = None) -> str:
    """The markdown model card of a registry entry; `results`: the recorded run (zoo/results/<name>.json)."""
    e = get_entry(name)
    cls = e.model_class
    config = json.dumps(e.config, indent=2, sort_keys=True, default=str)
    encoders = ", ".join(f"{k}={v!r}" for k, v in (("audio_encoder", e.audio_encoder), ("visual_encoder", e.visual_encoder)) if v)
    raw = f'\nmodel = vavl.create_model("{e.name}", {encoders})   # takes raw media' if encoders else ""
    builtin = getattr(cls, "builtin_encoders", None) or {}   # models that hold their encoders (HiCMAE)
    train = (f"accelerate launch recipes/finetune.py --config {e.recipe}" if e.recipe and e.recipe.endswith(".yaml")
             else e.recipe or "—")
    facts = [("architecture", f"`{e.architecture}` (`{cls.__module__}.{cls.__name__}`)"), ("task", task_of(e)),
             ("targets", _targets(e)), ("label definition", e.labels or "—"),
             ("prediction", getattr(cls, "prediction_text", None) or prediction_rule(getattr(_config(e), "prediction", "fused"))),
             ("audio encoder", f"`{e.audio_encoder}`" if e.audio_encoder else builtin.get("audio", "none")),
             ("visual encoder", f"`{e.visual_encoder}`" if e.visual_encoder else builtin.get("visual", "none")),
             ("corpus", e.corpus or "—"), ("protocol", e.protocol or "—"), ("recipe", f"`{e.recipe}`" if e.recipe else "—"),
             ("weights", f"`{e.hub_id}`" if e.hub_id else "published upstream: see Published weights" if e.weights
              else "not published"),
             ("parameters", f"{count_parameters(e):,} ({'encoders included' if builtin else 'fusion model; encoders not counted'})"),
             ("paper", e.paper or "—")]
    use = getattr(cls, "use_text", None)
    sections = [("Published weights", e.weights)] if e.weights else []
    sections += [
        ("Configuration", f'Registry defaults (any field can be overridden: `vavl.create_model("{e.name}", key=value)`):\n\n'
                          f"```json\n{config}\n```\n"),
        ("Use", use.format(name=e.name) if use else
         f'```python\nimport vavl\nmodel = vavl.create_model("{e.name}")   # takes encoder features (b, t, d){raw}\n```\n\n'
         f"Train: `{train}`\n\nEvaluate with missing modalities: `vavl evaluate --model RUN_DIR --manifest M --protocol P --cache CACHE "
         "--conditions av,audio,video --out REPORT`\n"),
        ("Results", _results_section(e.name, results))]
    return render_card(e.name, f"{e.description or e.architecture}\n\n**Status:** {e.status}", facts, sections, header=MARKER)


def index_text() -> str:
    rows = []
    for name in list_models():
        e = get_entry(name)
        rows.append(f"| [{name}]({name}.md) | {task_of(e)} | {e.corpus or '—'} | {e.status} |")
    encoders = "\n".join(f"- {line}" for line in encoder_cards())
    return (f"{MARKER}\n# Model zoo\n\nOne card per registry entry (`vavl.list_models()`); `vavl zoo show NAME` prints one.\n\n"
            "| model | task | corpus | status |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "## Encoders\n\nEncoder presets (`vavl zoo encoders`): what each is, how often it gives a row, its width, "
            "and the license of its upstream weights.\n\n" + encoders + "\n")


def zoo_files(results: dict[str, dict] | None = None) -> dict[str, str]:
    """file name -> content of every generated file in zoo/ (results: entry name -> recorded run)."""
    results = results or {}
    return {"README.md": index_text(), **{f"{name}.md": card_text(name, results.get(name)) for name in list_models()}}


def list_table() -> str:
    rows = [("name", "status", "corpus", "task")]
    for name in list_models():
        e = get_entry(name)
        rows.append((name, e.status, e.corpus or "—", task_of(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
