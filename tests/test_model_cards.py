"""Every saved model folder carries a Hub-ready README.md: library_name, pipeline_tag, the strictest
license of corpus and encoder weights, datasets, base_model, tags and the measured results as a
model-index, parsed back by huggingface_hub.ModelCard; the recipe can push the best model."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard

import vavl
from vavl.cli import main as cli
from vavl.models.cards import card_data, strictest

from test_finetune import ROOT, finetune, make_corpus, tiny_overrides

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference-parity" / "auxformer"


def test_strictest_license_of_data_and_weights():
    assert strictest(["MIT", "Apache-2.0"]) == "apache-2.0"
    assert strictest(["odbl", "Apache-2.0"]) == "odbl"
    assert strictest(["odbl", "CC-BY-NC-4.0"]) == "cc-by-nc-sa-4.0"        # share-alike data + non-commercial weights
    assert strictest(["cc-by-nc-sa-4.0", "mit"]) == "cc-by-nc-sa-4.0"      # RAVDESS
    assert strictest(["something-else", "mit"]) == "other" and strictest([None]) is None


def test_encoders_name_their_weights_and_licenses():
    model = SimpleNamespace(config=SimpleNamespace(
        model_type="vavl_audio_visual", fusion={"model_type": "vavl_auxformer"},
        audio_encoder={"kind": "speech", "name": "audeering-dim", "weights": "pretrained"},
        visual_encoder={"kind": "timm", "name": "efficientnet_b2", "model_name": "efficientnet_b2", "weights": "pretrained",
                        "source": "timm/efficientnet_b2.ra_in1k"}))
    data = card_data(model, name="m", corpus="CREMA-D")
    assert data.license == "cc-by-nc-sa-4.0"                               # odbl data, CC-BY-NC-SA audeering weights
    assert data.base_model == ["audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim", "timm/efficientnet_b2.ra_in1k"]
    assert data.pipeline_tag == "video-classification" and "vavl_auxformer" in data.tags and data.datasets == ["CREMA-D"]
    model.config.visual_encoder["weights"] = "random-init"                 # untrained: nothing to credit or license
    assert card_data(model, name="m").base_model == ["audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"]


def test_save_pretrained_writes_a_card_and_keeps_a_users_own(tmp_path):
    model = vavl.create_model("auxformer", audio_dim=8, visual_dim=6, num_labels=3, hidden_size=8, num_heads=2, num_layers=1)
    model.save_pretrained(tmp_path / "a")
    card = ModelCard.load(tmp_path / "a" / "README.md")
    assert card.data.library_name == "vavl" and card.data.license == "other" and card.data.pipeline_tag
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "README.md").write_text("# my notes\n")
    model.save_pretrained(tmp_path / "b")
    assert (tmp_path / "b" / "README.md").read_text() == "# my notes\n"


def test_converted_official_checkpoint_card(tmp_path):
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--corpus", "crema-d", "--out", str(tmp_path / "m")]) == 0
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.license == "odbl" and card.data.datasets == ["CREMA-D"]
    assert card.data.base_model == ["facebook/wav2vec2-large-robust"] and "ilucasgoncalves/AuxFormer" in card.text


def test_recipe_card_has_the_measured_results_as_a_model_index(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c")
    config = ROOT / "recipes/configs/crema_d/auxformer.yaml"
    out = tmp_path / "run"
    calls = []
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, **kw: calls.append(("create", repo, kw)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kw: calls.append(("upload", kw)) or "url")
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, out) + [
        "train.max_steps=2", "train.epochs=1", "data.corpus=RAVDESS", "evaluate.bootstrap=20",
        "hub.repo_id=someone/auxformer-test", "hub.push=true"])
    result = finetune.main(cfg, str(config))
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "vavl" and card.data.license == "cc-by-nc-sa-4.0" and card.data.datasets == ["RAVDESS"]
    evals = {(r.dataset_split, r.metric_name): r for r in card.data.eval_results}
    ua = evals[("test", "UA (av)")]
    assert ua.metric_value == pytest.approx(result["results"]["test/audio+video"]["UA"])
    assert ua.dataset_config == "labels.intended" and ua.dataset_args["protocol"] == "vavl-1"
    assert ("dev", "UA (audio)") in evals and ua.task_type == card.data.pipeline_tag
    # the push: the model folder's files, never the run's checkpoints
    (create, repo, kw), (upload, up) = calls
    assert repo == "someone/auxformer-test" and kw["private"] and up["repo_id"] == repo and up["folder_path"] == str(out)
    assert "README.md" in up["allow_patterns"] and "checkpoints/*" in up["ignore_patterns"]
