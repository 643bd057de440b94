"""Cross-corpus evaluation: a model with CREMA-D's classes (its card says CREMA-D) scored on a RAVDESS
manifest through a label-map preset; what the map drops is counted, and metrics.json names both corpora."""
import collections
import json

import pytest
import torch

import vavl
from vavl import cli
from vavl.core.errors import DataError
from vavl.data import read_manifest
from vavl.data.cache import FeatureCache
from vavl.data.label_maps import PRESETS, apply_label_map, load_label_map
from vavl.data.prepare import prepare
from vavl.models.cards import write_card

from test_corpora import ravdess_tree

CREMA = ("angry", "disgust", "fear", "happy", "neutral", "sad")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    prepare("ravdess", ravdess_tree(root / "ravdess"), root / "ravdess.jsonl", log=open("/dev/null", "w"))
    records = read_manifest(root / "ravdess.jsonl")
    cache, g = FeatureCache(root / "cache"), torch.Generator().manual_seed(0)
    for r in records:
        cache.write(r["id"], torch.randn(6, 8, generator=g), torch.randn(4, 8, generator=g), {})
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0,
                              id2label=dict(enumerate(CREMA)))
    model.save_pretrained(root / "model")
    write_card(root / "model", model, corpus="CREMA-D", name="tiny")
    return root, records


def evaluate(root, out, *extra):
    return cli.main(["evaluate", "--model", str(root / "model"), "--manifest", str(root / "ravdess.jsonl"),
                     "--cache", str(root / "cache"), "--conditions", "av,audio", "--bootstrap", "0", "--split", "all", "--out", str(out), *extra])


def test_a_crema_d_model_scores_ravdess_through_a_preset(setup, tmp_path, capsys):
    root, records = setup
    labels = collections.Counter(r["label"] for r in records)
    assert evaluate(root, tmp_path / "plain") == 2                      # without a map: the classes differ
    assert "differ from the model's" in capsys.readouterr().err
    assert evaluate(root, tmp_path / "out", "--label-map", "ravdess-to-crema-d") == 0
    res = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert res["label_map"] == "ravdess-to-crema-d" and res["dropped_by_label_map"] == {"surprised": labels["surprised"]}
    assert res["n_samples"] == len(records) - labels["surprised"] == res["conditions"]["av"]["fused"]["n"]
    assert (res["train_corpus"], res["test_corpus"]) == ("CREMA-D", "RAVDESS")
    assert res["labels"] == list(CREMA)
    assert "clips dropped" in capsys.readouterr().out
    assert evaluate(root, tmp_path / "nc", "--label-map", "ravdess-to-crema-d-no-calm") == 0
    dropped = json.loads((tmp_path / "nc" / "metrics.json").read_text())["dropped_by_label_map"]
    assert dropped == {"calm": labels["calm"], "surprised": labels["surprised"]}


def test_label_map_files_and_what_they_refuse(setup, tmp_path):
    root, records = setup
    (tmp_path / "map.json").write_text(json.dumps({"calm": "neutral", "fearful": "fear", "surprised": None}))
    name, mapping = load_label_map(tmp_path / "map.json")
    kept, dropped = apply_label_map(records, mapping, CREMA)
    surprised = sum(r["label"] == "surprised" for r in records)
    assert name == "map.json" and {r["label"] for r in kept} == set(CREMA) and dropped == {"surprised": surprised}
    assert next(r for r in kept if r.get("label_before_map") == "calm")["label"] == "neutral"
    (tmp_path / "map.csv").write_text("from,to\ncalm,neutral\nsurprised,\n")
    with pytest.raises(DataError, match=r"the manifest's labels \['fearful'\] are not model classes"):
        apply_label_map(records, load_label_map(tmp_path / "map.csv")[1], CREMA)
    with pytest.raises(DataError, match=r"maps to \['joyful'\], which are not classes of the model"):
        apply_label_map(records, {"happy": "joyful"}, CREMA)
    with pytest.raises(DataError, match="neither a preset"):
        load_label_map("ravdess-to-nowhere")
    assert evaluate(root, tmp_path / "x", "--label-map", str(tmp_path / "map.csv")) == 2
    assert all(set(v.values()) - {None} <= set(CREMA) for v in PRESETS.values())
