"""A recipe stops at the start on a protocol that shares speakers, naming them; under the
override's name the protocol trains, and its name (with the overlap) reaches results.json and the card."""
import json

import pytest

from vavl.core.errors import DataError
from vavl.data import read_manifest, write_manifest

from test_finetune import ROOT, finetune, make_corpus, tiny_overrides

CONFIG = ROOT / "recipes" / "configs" / "crema_d" / "early_fusion.yaml"


def test_the_finetune_recipe_refuses_a_leak_and_carries_the_override(tmp_path):
    corpus = make_corpus(tmp_path / "c")
    records = read_manifest(corpus / "manifest.jsonl")
    for i, r in enumerate(records):
        r["speaker"] = f"s{i % 4}"                     # every speaker in train, dev and test
    write_manifest(records, corpus / "manifest.jsonl")
    cfg = finetune.load_config(CONFIG, tiny_overrides(CONFIG, corpus, tmp_path / "out") + ["train.max_steps=1"])
    with pytest.raises(DataError, match=r"protocol 'vavl-1' puts 4 speaker\(s\) in more than one of its parts: "
                                        r"s0 \(dev, test, train\)"):
        finetune.main(cfg, str(CONFIG))
    for r in records:
        r["folds"] = {"vavl-1-speaker-overlap": r["folds"]["vavl-1"]}
    write_manifest(records, corpus / "manifest.jsonl")
    cfg = finetune.load_config(CONFIG, tiny_overrides(CONFIG, corpus, tmp_path / "out")
                               + ["train.max_steps=1", "train.epochs=1", "data.protocol=vavl-1-speaker-overlap"])
    assert finetune.main(cfg, str(CONFIG))["summary"]["step"] == 1
    assert "vavl-1-speaker-overlap" in (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["protocol"] == "vavl-1-speaker-overlap"
