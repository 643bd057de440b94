"""The documented quick path closes with no code: prepare -> extract -> fine-tune -> `vavl predict` on a
folder of clips, with the recipe's best-model folder as it is; its scores are those of the cached
features (`vavl evaluate --cache`), and the folder says what made them."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vavl.data import read_manifest, split_records
from vavl.data.extract import extract
from vavl.data.prepare import prepare
from vavl.data.synthetic import make_corpus

ROOT = Path(__file__).resolve().parents[1]


def _vavl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "vavl.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic corpus of a user's own layout (5 speakers x 4 classes, one file per clip, every fourth
    audio-only), mfcc + face-rgb features, a tiny AuxFormer fine-tuned for two epochs by the recipe run
    as `vavl run finetune`."""
    root = tmp_path_factory.mktemp("workflow")
    corpus = make_corpus("custom", root / "corpus", n_speakers=5, clips_per_class=1, duration=0.8, size=(128, 96),
                         fps=10.0, seed=1)
    prepare("custom", corpus, root / "manifest.jsonl")
    extract(root / "manifest.jsonl", root / "cache", audio_encoder="mfcc", visual_encoder="face-rgb", fps=5.0,
            batch_size=8, max_side=160, progress=False)
    config = {"seed": 0, "output_dir": str(root / "run"),
              "model": {"name": "auxformer_w2v2l_effb2.crema_d",
                        "config": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "aux_repeats": 1}},
              "data": {"manifest": str(root / "manifest.jsonl"), "cache": str(root / "cache"),
                       "protocol": "speaker-5fold", "fold": 0, "labels": ["angry", "happy", "neutral", "sad"]},
              "train": {"epochs": 2, "batch_size": 8, "lr": 2e-3},
              "log": {"wandb": False, "progress": False}, "evaluate": {"conditions": ["av"], "bootstrap": 0}}
    (root / "finetune.yaml").write_text(yaml.safe_dump(config))
    r = _vavl("run", "finetune", "--config", root / "finetune.yaml", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    return root


def test_predict_takes_the_recipes_folder_and_matches_the_cache(trained, tmp_path):
    records = read_manifest(trained / "manifest.jsonl")
    test = split_records(records, "speaker-5fold", 0)["test"]
    clips = tmp_path / "clips"
    clips.mkdir()
    ids = {}
    for rec in test:
        media = rec["video"] or rec["audio"]
        shutil.copy(media, clips / Path(media).name)
        ids[Path(media).name] = rec["id"]
    r = _vavl("predict", clips, "--model", trained / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(test) and all(row["scores"] for row in rows)
    assert not any("untrained" in n for row in rows for n in row["notes"]), rows[0]["notes"]   # a trained model
    # the cache path, as `vavl evaluate --cache` reads it: the same folder, the cached features
    from vavl.data import collate, model_inputs
    from vavl.data.datasets import cached_dataset
    from vavl.models.loading import load_model

    model = load_model(str(trained / "run"))
    data = cached_dataset(trained / "cache", test, model.emotion_config)
    with torch.no_grad():
        cached = {s["id"]: model(**model_inputs(collate([s]), labels=False)).logits.softmax(-1)[0] for s in data}
    names = model.label_names
    assert names == ["angry", "happy", "neutral", "sad"]   # the data's class names, never LABEL_k
    for row in rows:
        clip_id = ids[Path(row["file"]).name]
        got = torch.tensor([row["scores"][n] for n in names])
        assert torch.allclose(got, cached[clip_id], atol=1e-4), (clip_id, got, cached[clip_id])


def test_the_folder_records_its_encoders_processor_and_data(trained):
    config = json.loads((trained / "run" / "config.json").read_text())
    settings = json.loads((trained / "cache" / "cache.json").read_text())
    assert config["audio_encoder"]["identity"]["sha256"] == settings["audio_weights"]["sha256"]
    assert config["visual_encoder"]["identity"]["name"] == "face-rgb"
    assert json.loads((trained / "run" / "preprocessor_config.json").read_text())["fps"] == 5.0   # extract's, not the default 4
    prov = config["fusion"]["provenance"]
    assert prov["synthetic"] is True and prov["protocol"] == "speaker-5fold" and prov["label_field"] == "label"
    assert prov["features"]["audio_encoder"] == "mfcc" and prov["splits"]["test"] == 4
    card = (trained / "run" / "README.md").read_text()
    assert "datasets:" not in card and "odbl" not in card and "synthetic" in card
    assert "auxformer_w2v2l_effb2.crema_d fine-tuned" not in card and "# AuxFormer" in card
    assert "mfcc" in card and "face-rgb" in card


def test_a_model_whose_encoder_weights_changed_refuses_to_load(trained, tmp_path):
    from vavl.core.errors import ConfigError
    from vavl.models.loading import load_model

    folder = tmp_path / "changed"
    shutil.copytree(trained / "run", folder, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((folder / "config.json").read_text())
    config["audio_encoder"]["identity"]["sha256"] = "0" * 64   # as if the features came from other weights
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="sha256 0000000000000000") as e:
        load_model(str(folder))
    assert "mfcc" in str(e.value) and "\n" not in str(e.value)


def test_evaluate_on_raw_media_takes_the_folder_and_reports_what_the_model_is(trained, tmp_path):
    r = _vavl("evaluate", "--model", trained / "run", "--manifest", trained / "manifest.jsonl", "--protocol", "speaker-5fold",
              "--fold", 0, "--split", "test", "--conditions", "av", "--bootstrap", 0, "--out", tmp_path / "report")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["source"] == "raw media" and metrics["n_samples"] == 4
    prov = metrics["model_provenance"]
    assert prov["encoders"]["audio"]["name"] == "mfcc" and len(prov["encoders"]["visual"]["sha256"]) == 64
    assert "none (hand-crafted" in prov["encoders"]["visual"]["weights"]
    assert prov["trained"]["synthetic"] is True and prov["trained"]["protocol"] == "speaker-5fold"
    assert metrics["data"] == {"corpus": None, "synthetic": True, "label_field": "label"}
    report = (tmp_path / "report" / "report.md").read_text()
    assert "encoders: audio `mfcc`" in report and "**synthetic clips**" in report and "label field `label`" in report


def test_the_cache_encoders_are_rebuilt_as_recorded_or_refused_in_one_line():
    """cache.json -> the encoders: an untrained one from its seed (the same weights, so the same
    sha256); other weights than those recorded stop with one line naming both hashes; an encoder
    passed in code cannot be rebuilt (the recipe then saves the fusion model alone)."""
    from vavl.core.errors import ConfigError
    from vavl.encoders import build_encoder
    from vavl.encoders.build import weights_identity
    from vavl.models.provenance import NotRebuildable, cache_encoders

    recorded = weights_identity(build_encoder("test_convnext", pretrained=False, seed=3))
    settings = {"visual_encoder": "test_convnext", "visual_weights": recorded}
    torch.manual_seed(99)
    rebuilt = cache_encoders(settings, "cache/x")["visual"]
    assert weights_identity(rebuilt) == recorded
    wrong = {**settings, "visual_weights": {**recorded, "sha256": "f" * 64}}
    with pytest.raises(ConfigError, match="cache/x: the visual encoder test_convnext") as e:
        cache_encoders(wrong, "cache/x")
    assert "f" * 16 in str(e.value) and recorded["sha256"][:16] in str(e.value) and "\n" not in str(e.value)
    assert not isinstance(e.value, NotRebuildable)   # a refusal, not a "go on without encoders"
    with pytest.raises(NotRebuildable, match="given in code"):
        cache_encoders({"audio_encoder": "MyEncoder", "audio_weights": {"weights": "given", "sha256": "0" * 64}}, "cache/y")
