"""Datasets of manifest clips for scoring and training: cached features or decoded media, with the
checks that come before any model runs.

    records = select_records(read_manifest(path), "vavl-1", "test", fold=None)
    data = cached_dataset(cache_dir, records, config)        # encoder features (FeatureDataset)
    data = RawClipDataset(records, processor, config)        # media decoded on the fly (models with encoders)
    loader = DataLoader(IndexedDataset(data), collate_fn=collate, ...)   # batches carry each clip's index
    splits = training_splits(relabel(records, "labels.intended"), "vavl-1", None)   # train / dev / test, checked
    check_split_labels(splits, ["angry", "happy", "sad"])      # every label known and seen in training
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..core.errors import ConfigError, DataError
from .cache import FeatureCache, FeatureDataset
from .collate import encode_labels
from .manifest import split_records


class IndexedDataset(torch.utils.data.Dataset):
    """Adds each sample's position, so gathered predictions map back to clips."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return {**self.dataset[i], "index": i}


class RawClipDataset(torch.utils.data.Dataset):
    """Manifest records -> processor inputs for models with encoders (decoding on the fly)."""

    def __init__(self, records: list[dict], processor, config=None):
        self.records, self.processor, self.config = records, processor, config

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        prepare = getattr(self.processor, "raw_inputs", self.processor)   # HiCMAE: raw inputs, cut into views by the model
        inputs = prepare(load_clip(rec, self.processor))
        sample = {"id": rec["id"], "speaker": rec.get("speaker"), "record": rec, "sample_rate": self.processor.sample_rate}
        for key in ("input_values", "attention_mask", "pixel_values", "pixel_mask"):
            value = inputs.get(key)
            sample[key] = None if value is None else torch.as_tensor(value)[0]
        if self.config is not None:
            sample["labels"] = encode_labels(rec, self.config)
        return sample


RAW_MAX_SECONDS = 120.0   # raw-media training / evaluation takes clips up to this long (a clip is one sample)


def load_clip(record: dict, processor):
    """A record's audio and video (one file, or separate files as in CREMA-D) as one DecodedClip.
    A file longer than RAW_MAX_SECONDS (by its header, or by what decodes: at most that much is
    decoded) is refused in one line pointing at `vavl extract`, which takes long files a window at
    a time."""
    video, audio = record.get("video"), record.get("audio")
    if not video and not audio:
        raise DataError(f"clip {record['id']!r} has neither an audio nor a video path in the manifest")
    if not video or not audio or video == audio:
        return _bounded(processor, video or audio)
    v, a = _bounded(processor, video, audio=False), _bounded(processor, audio, video=False)
    return replace(v, audio=a.audio, sample_rate=a.sample_rate, duration=max(v.duration, a.duration))


def _bounded(processor, path, **kw):
    from ..core.errors import MediaError
    from ..media.decode import probe
    from .extract_long import unbounded_duration

    limit = RAW_MAX_SECONDS
    try:
        declared = probe(path).duration
    except MediaError:
        declared = 0.0   # decoding says what is wrong with it
    clip = processor.decode(path, end=limit, **kw) if declared <= limit else None
    if clip is None or clip.start + (clip.decoded or 0.0) >= limit - 1e-3:
        raise DataError(f"{path}: {max(declared, limit):.0f} s long or more; training and evaluation from raw media "
                        f"take clips up to {limit:g} s: cut it into clips, or run `vavl extract` (it takes long files "
                        "a window at a time) and use the cache")
    return unbounded_duration(clip, limit)


def cached_dataset(cache: str | Path, records: list[dict], config) -> FeatureDataset:
    """The records' cached features, checked: every clip is in the cache and the feature widths
    are the model's audio_dim / visual_dim."""
    if not Path(cache).is_dir():
        raise DataError(f"{cache}: feature cache not found; run `vavl extract` on the manifest first")
    store = FeatureCache(cache)
    missing = [r["id"] for r in records if not store.has(r["id"])]
    if missing:
        raise DataError(f"{cache}: {len(missing)} of {len(records)} clips are not in the cache (e.g. {missing[:3]}); "
                        "run `vavl extract` on this manifest first")
    first = store.read(records[0]["id"])
    for m in ("audio", "visual"):
        x = first.get(f"{m}_features")
        if x is not None and x.shape[-1] != getattr(config, f"{m}_dim"):
            raise ConfigError(f"{cache}: {m} features are {x.shape[-1]}-d but the model's {m}_dim is "
                              f"{getattr(config, f'{m}_dim')}; use the cache made with the model's encoders")
    return FeatureDataset(store, records, config)


def data_source(dataset) -> str:
    """"raw" when samples hold waveforms / face crops, "features" when they hold encoder features."""
    if isinstance(dataset, RawClipDataset):
        return "raw"
    sample = dataset[0]
    return "raw" if sample.get("input_values") is not None or sample.get("pixel_values") is not None else "features"


def select_records(records: list[dict], protocol: str | None, split: str, fold: int | None) -> list[dict]:
    """The clips to score: a protocol's split (a fold's test/dev/train part), or every clip without a protocol."""
    if protocol is None:
        if fold is not None:
            raise ConfigError("--fold needs --protocol (the k-fold protocol the fold belongs to)")
        return records
    chosen = split_records(records, protocol, fold)[split]
    if not chosen:
        raise DataError(f"protocol {protocol!r} has no {split!r} clips" + (f" for fold {fold}" if fold is not None else ""))
    return chosen


def check_labels(config, records: list[dict], manifest: str = "manifest") -> None:
    """The model's classes must be the manifest's classes (regression: its attributes must be there)."""
    names = set(config.label_names)
    if config.task == "regression":
        have = {a for r in records for a, v in (r.get("attributes") or {}).items() if v is not None}
        missing = sorted(names - have)
        if missing:
            raise ConfigError(f"{manifest}: the model predicts attributes {sorted(names)} but no clip has {missing}; "
                              "evaluate on a manifest with those attributes or use a model trained on this one")
        return
    have = {r["label"] for r in records if r.get("label") is not None}
    have |= {k for r in records for k in (r.get("label_distribution") or {})}
    if have != names:
        raise ConfigError(f"{manifest}: the manifest's labels {sorted(have)} differ from the model's {sorted(names)} "
                          f"(unknown to the model: {sorted(have - names)}, never in the manifest: {sorted(names - have)}); "
                          "evaluate the model on the corpus/label definition it was trained for")


def relabel(records: list[dict], field: str, source: str = "manifest") -> list[dict]:
    """Records whose `label` is the value at a dotted `field` (e.g. "labels.perceived-av": a
    CREMA-D clip's perceived label); None where a record has no value there."""
    if field == "label":
        return records
    values = []
    for r in records:
        value = r
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values.append(value)
    if all(v is None for v in values):
        raise DataError(f"{source}: no record has a value at {field!r}; name a label field the manifest has")
    return [{**r, "label": v} for r, v in zip(records, values)]


def training_splits(records: list[dict], protocol: str, fold: int | None, source: str = "manifest") -> dict[str, list[dict]]:
    """train / dev / test under a protocol, checked for training: it needs training and dev clips."""
    splits = split_records(records, protocol, fold)
    where = f"protocol {protocol!r}" + ("" if fold is None else f" fold {fold}")
    if not splits["train"]:
        raise DataError(f"{source}: no training clips under {where}; check the protocol / fold against the manifest's folds")
    if not splits["dev"]:
        raise DataError(f"{source}: no dev clips under {where}; best-model selection needs them")
    return splits


def check_split_labels(splits: dict[str, list[dict]], names: list[str], source: str = "manifest") -> None:
    """Every class label of every split is one of `names` and occurs in training (a model cannot
    learn a class it never sees)."""
    train = {r.get("label") for r in splits["train"]} - {None}
    if not train:
        raise DataError(f"{source}: no training clip has a class label")
    for split, recs in splits.items():
        found = {r.get("label") for r in recs} - {None}
        if found - set(names):
            raise DataError(f"{source}: {split} clips have label(s) {sorted(found - set(names))} outside the model's "
                            f"classes {names}; give the full class list")
        if found - train:
            raise DataError(f"{source}: {split} label(s) {sorted(found - train)} never occur in training; "
                            "the model could not learn them — fix the split or the labels")


def cached_feature_dims(cache: str | Path, records: list[dict]) -> tuple[int | None, int | None]:
    """(audio_dim, visual_dim) of the features cached for the first records that have each modality."""
    store, dims = FeatureCache(cache), {"audio": None, "visual": None}
    for r in (r for r in records[:200] if store.has(r["id"])):
        item = store.read(r["id"])
        dims.update({m: int(item[f"{m}_features"].shape[-1]) for m in dims if dims[m] is None and item[f"{m}_features"] is not None})
    return dims["audio"], dims["visual"]


def feature_statistics(dataset: FeatureDataset, modality: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-dimension mean and standard deviation of `modality`'s frames over every clip of a
    cached dataset (population moments in float64, as the official AuxFormer / VAVL loaders
    compute their video statistics), or None when no clip has that modality."""
    total = squares = None
    count = 0
    for i in range(len(dataset)):
        x = dataset[i][f"{modality}_features"]
        if x is None or not len(x):
            continue
        x = x.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        squares = (x * x).sum(0) if squares is None else squares + (x * x).sum(0)
        count += len(x)
    if not count:
        return None
    mean = total / count
    return mean.float(), (squares / count - mean * mean).clamp(min=0).sqrt().float()


def fill_feature_statistics(model, train_set: FeatureDataset) -> None:
    """Give an EmotionModel the z-scoring statistics of the modalities in its
    config.feature_normalization, computed over the training clips."""
    for modality in model.config.feature_normalization or ():
        stats = feature_statistics(train_set, modality)
        if stats is None:
            raise DataError(f"feature_normalization lists {modality}, but no training clip has {modality} features")
        model.set_feature_statistics(modality, *stats)


def model_dataset(model, model_dir: str, records: list[dict], cache: str | None):
    """The dataset a saved model reads: its cached features, or the clips' media through the
    processor saved with it (models with encoders)."""
    from ..models.loading import takes_raw_media

    if cache is not None:
        return cached_dataset(cache, records, model.emotion_config)
    if not takes_raw_media(model):
        raise ConfigError(f"{model_dir}: this model takes encoder features, not media; give --cache CACHE "
                          "(made by `vavl extract` with the model's encoders)")
    from ..media.processor import AudioVisualProcessor

    if not Path(model_dir, "preprocessor_config.json").is_file():
        raise ConfigError(f"{model_dir}: no preprocessor_config.json; save the AudioVisualProcessor next to the model")
    if getattr(model, "takes_views", False):
        from ..media.hicmae import HiCMAEProcessor

        return RawClipDataset(records, HiCMAEProcessor.from_pretrained(model_dir), model.emotion_config)
    return RawClipDataset(records, AudioVisualProcessor.from_pretrained(model_dir), model.emotion_config)
