"""Analysis: saliency finds the seconds that carry the label, embedding maps separate the classes the
model learned, the error summary matches scikit-learn; all through `vavl analyze` too."""
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import vavl
from vavl import cli
from vavl.evaluation.analysis import embedding_map, error_summary, saliency_over_time
from vavl.data import collate, write_manifest
from vavl.data.cache import FeatureCache, FeatureDataset
from vavl.core.errors import ConfigError
from vavl.evaluation.scoring import Predictions, predict_dataset

LABELS = {0: "angry", 1: "happy", 2: "neutral", 3: "sad"}
SIGNAL = slice(8, 12)   # audio frames 8..11 of 20 carry the class; everything else is noise


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(4, 8, generator=g) * 3
    cache, records = FeatureCache(root / "cache"), []
    for i in range(160):
        audio = torch.randn(20, 8, generator=g) * 0.3
        audio[SIGNAL] += prototypes[i % 4]
        cache.write(f"c{i:03d}", audio, torch.randn(5, 8, generator=g), {"duration": 2.0})
        records.append({"id": f"c{i:03d}", "speaker": f"s{i % 4 // 2}{i % 3}", "label": LABELS[i % 4],
                        "folds": {"p-speaker-overlap": "train" if i < 120 else "test"}})
    write_manifest(records, root / "manifest.jsonl")
    torch.manual_seed(0)
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0,
                              dropout=0.0, id2label=LABELS)
    train = FeatureDataset(cache, records[:120], model.config)
    batch = collate([{**train[i], "index": i} for i in range(len(train))])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = model(audio_features=batch["audio_features"], visual_features=batch["visual_features"], labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(root / "model")
    test = FeatureDataset(cache, records[120:], model.config)
    return root, model, test


@pytest.mark.parametrize("method", ["gradient", "occlusion"])
def test_saliency_peaks_on_the_frames_that_carry_the_label(trained, method):
    _, model, test = trained
    hits = 0
    for i in range(8):
        sal = saliency_over_time(model, test[i], method=method)
        audio = sal["audio"]
        assert audio.shape == (20,) and sal["visual"].shape == (5,)
        hits += int(SIGNAL.start <= int(np.argmax(audio)) < SIGNAL.stop)
    assert hits >= 7


def test_embedding_map_separates_learned_classes(trained, tmp_path):
    _, model, test = trained
    pred = predict_dataset(model, test, "av", embeddings=True, progress=False)
    points = embedding_map(pred, model.config.label_names, tmp_path / "emb.png", source="audio")
    assert points.shape == (40, 2) and (tmp_path / "emb.png").stat().st_size > 0
    gold = pred.labels.numpy()
    assert skm.silhouette_score(points, gold) > 0.3                      # classes form clusters
    speakers = np.asarray(pred.speakers)
    assert skm.silhouette_score(points, speakers) < skm.silhouette_score(points, gold)
    with pytest.raises(ConfigError, match="no visual_embedding|available"):
        embedding_map(Predictions(ids=[], speakers=[], labels=pred.labels, logits=pred.logits,
                                  audio_present=pred.audio_present, visual_present=pred.visual_present),
                      model.config.label_names, tmp_path / "x.png", source="visual")


def test_error_summary_matches_sklearn():
    rng = np.random.default_rng(0)
    gold = torch.from_numpy(rng.integers(0, 4, 100))
    logits = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    logits[gold == 1, 2] += 5                                               # happy is mostly taken for neutral
    pred = Predictions(ids=[str(i) for i in range(100)], speakers=["s"] * 100, labels=gold, logits=logits,
                       audio_present=torch.ones(100, dtype=torch.bool), visual_present=torch.ones(100, dtype=torch.bool))
    s = error_summary(pred, list(LABELS.values()))
    guess = logits.argmax(-1).numpy()
    recall = skm.recall_score(gold.numpy(), guess, average=None, labels=range(4))
    assert [c["recall"] for c in s["per_class"].values()] == pytest.approx(list(recall))
    assert s["most_confused"][0]["gold"] == "happy" and s["most_confused"][0]["predicted"] == "neutral"
    assert s["UA"] == pytest.approx(skm.balanced_accuracy_score(gold.numpy(), guess))


def test_vavl_analyze_writes_figures_and_summaries(trained, tmp_path):
    root, _, _ = trained
    out = tmp_path / "analysis"
    args = ["analyze", "--model", str(root / "model"), "--manifest", str(root / "manifest.jsonl"), "--cache", str(root / "cache"),
            "--protocol", "p-speaker-overlap", "--split", "test", "--out", str(out), "--clip", "c130", "--saliency", "occlusion"]
    assert cli.main(args) == 0
    for name in ("embedding_fused.png", "errors.md", "errors.json", "saliency_c130.png"):
        assert (out / name).stat().st_size > 0
    sal = json.loads((out / "saliency_c130.json").read_text())
    times = np.asarray(sal["audio"]["times"])
    assert times[0] == pytest.approx(0.05) and times[-1] == pytest.approx(1.95)   # 20 frames over 2 s
    peak = times[int(np.argmax(sal["audio"]["saliency"]))]
    assert 0.8 <= peak <= 1.2                                                   # frames 8..11 = 0.8..1.2 s
    assert json.loads((out / "errors.json").read_text())["n"] == 40
    assert cli.main(args[:-4] + ["--clip", "nope"]) == 2


# ---- every registered model, and a full model with encoders ------------------------------------
A_DIM, V_DIM = 12, 16   # face-grey at 4 px gives 16-d rows, mfcc with 12 coefficients 12-d


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """12 clips with random features, four classes and three attributes (for regression models)."""
    root = tmp_path_factory.mktemp("analysis_registry")
    g = torch.Generator().manual_seed(0)
    cache, records = FeatureCache(root / "cache"), []
    for i in range(12):
        cache.write(f"c{i:02d}", torch.randn(9, A_DIM, generator=g), torch.randn(4, V_DIM, generator=g), {"duration": 1.0})
        records.append({"id": f"c{i:02d}", "speaker": f"s{i % 3}", "label": LABELS[i % 4],
                        "attributes": {a: float(torch.rand(1, generator=g)) for a in ("arousal", "dominance", "valence")}})
    write_manifest(records, root / "manifest.jsonl")
    return root


def _small(name):
    from dataclasses import fields

    from test_zoo_models import SMALL

    entry = vavl.get_entry(name)
    known = {f.name for f in fields(entry.model_class.config_class)}
    small = {**{k: v for k, v in SMALL.items() if k in known}, "audio_dim": A_DIM, "visual_dim": V_DIM}
    if entry.config.get("task", entry.model_class.config_class().task) != "regression":
        small["id2label"] = LABELS
    torch.manual_seed(0)
    return vavl.create_model(name, **small)


def _analyze(model_dir, root, out, saliency):
    return cli.main(["analyze", "--model", str(model_dir), "--manifest", str(root / "manifest.jsonl"),
                     "--cache", str(root / "cache"), "--out", str(out), "--clip", "c05", "--saliency", saliency])


REGISTRY = [n for n in vavl.list_models() if hasattr(vavl.get_entry(n).model_class, "compute_heads")]


@pytest.mark.parametrize("name", REGISTRY)
def test_vavl_analyze_works_for_every_registered_model(name, small_corpus, tmp_path):
    model = _small(name).eval()
    model.save_pretrained(tmp_path / "model")
    sample = {"audio_features": torch.randn(9, A_DIM), "visual_features": torch.randn(4, V_DIM)}
    takes = {m: saliency_over_time(model, sample, "gradient")[m] is not None for m in ("audio", "visual")}
    assert any(takes.values())
    for method in ("gradient", "occlusion"):
        sal = saliency_over_time(model, sample, method)
        # a value per frame for each modality the model takes, none for one it ignores
        assert {m: None if sal[m] is None else sal[m].shape for m in takes} == \
            {m: ((9,) if m == "audio" else (4,)) if t else None for m, t in takes.items()}
    assert _analyze(tmp_path / "model", small_corpus, tmp_path / "out", "occlusion") == 0
    written = json.loads((tmp_path / "out" / "saliency_c05.json").read_text())
    assert {m for m in ("audio", "visual") if m in written} == {m for m, t in takes.items() if t}
    assert (tmp_path / "out" / "saliency_c05.png").stat().st_size > 0


def test_vavl_analyze_works_for_a_full_model_with_encoders(small_corpus, tmp_path):
    """A model with encoders (as the demo writes) takes the cached features as its fusion model does."""
    from vavl.encoders.build import build_encoder
    from vavl.models.with_encoders import AudioVisualModel

    for name in ("auxformer", "mult"):
        fusion = _small(name)
        model = AudioVisualModel.from_parts(fusion, build_encoder("mfcc", n_mfcc=A_DIM), build_encoder("face-grey", image_size=4))
        model.eval().save_pretrained(tmp_path / name)
        for saliency in ("gradient", "occlusion"):
            assert _analyze(tmp_path / name, small_corpus, tmp_path / f"out_{name}_{saliency}", saliency) == 0
            written = json.loads((tmp_path / f"out_{name}_{saliency}" / "saliency_c05.json").read_text())
            assert len(written["audio"]["saliency"]) == 9 and len(written["visual"]["saliency"]) == 4
