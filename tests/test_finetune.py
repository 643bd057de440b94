"""recipes/finetune.py on hand-made cached features: every config runs, bad input fails early,
a killed run resumes to the same weights, two processes match one."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vavl.data import write_manifest
from vavl.data.augment import modality_dropout
from vavl.data.cache import FeatureCache
from vavl.core.errors import ConfigError, DataError

from launch_utils import free_port, launch
from tiny_encoders import tiny_wav2vec2_dir

torch.set_num_threads(1)   # tiny models: threads only fight over the shared cores
ROOT = Path(__file__).resolve().parents[1]
# crema_d/hicmae.yaml records HiCMAE's official fine-tuning, which the recipe cannot run yet (one whole model, not
# encoders + fusion): tests/test_hicmae_recipe.py checks it loads and that a run stops with one clear line
NOT_RUNNABLE = {"crema_d/hicmae.yaml"}
CONFIGS = sorted(p for p in (ROOT / "recipes" / "configs").glob("*/*.yaml")
                 if p.relative_to(ROOT / "recipes" / "configs").as_posix() not in NOT_RUNNABLE)
CLASSES = ["angry", "happy", "sad"]
TINY = {  # per architecture family: the smallest valid shapes
    "auxformer": {"hidden_size": 16, "num_layers": 1, "num_heads": 2},
    "vavl": {"hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8, "num_attention_heads": 2, "num_audio_layers": 1,
             "num_visual_layers": 1, "num_shared_layers": 1, "conv_kernel_size": 3},
    "baseline": {"hidden_size": 16},
}

spec = importlib.util.spec_from_file_location("finetune_recipe", ROOT / "recipes" / "finetune.py")
finetune = importlib.util.module_from_spec(spec)
spec.loader.exec_module(finetune)


def make_corpus(root: Path, n: int = 48, splits=("train", "dev", "test"), labels=None, missing=None, width: int = 8) -> Path:
    """Cached features with a class signal in both modalities; 2/3 train, 1/6 dev, 1/6 test.
    missing(i) -> "audio" / "visual" / None: the modality clip i lacks. width: of the audio features."""
    g = torch.Generator().manual_seed(0)
    cache = FeatureCache(root / "cache")
    cache.init({"audio": "test", "visual": "test"})
    recs = []
    for i in range(n):
        c = i % len(CLASSES)
        split = splits[0] if i < n * 2 // 3 else splits[1] if i < n * 5 // 6 else splits[2]
        a = torch.randn(5 + i % 3, width, generator=g)
        a[:, c] += 2.0
        v = torch.randn(4, 6, generator=g)
        v[:, c] += 2.0
        gone = missing(i) if missing else None
        cache.write(f"c{i:03d}", None if gone == "audio" else a, None if gone == "visual" else v, {})
        label = labels(i, split) if labels else CLASSES[c]
        recs.append({"id": f"c{i:03d}", "speaker": f"{split}-{i % 5}", "label": label, "labels": {"intended": label, "perceived-av": label, "consensus-av": label},
                     "attributes": {"arousal": c + 1.0, "valence": 3.0 - c, "dominance": 1.0 + c / 2},
                     "folds": {"vavl-1": split}})
    write_manifest(recs, root / "manifest.jsonl")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_overrides(config_path: Path, corpus: Path, out: Path) -> list[str]:
    text = config_path.read_text()
    family = "vavl" if "name: vavl" in text else "auxformer" if ("name: auxformer" in text or "name: mult" in text) else "baseline"
    over = [f"data.manifest={corpus / 'manifest.jsonl'}", f"data.cache={corpus / 'cache'}", f"output_dir={out}",
            "data.protocol=vavl-1", "data.fold=null", "log.wandb=false", "log.progress=false", "train.batch_size=8"]
    if "regression" not in text:
        over += [f"data.labels=[{','.join(CLASSES)}]"]
    over += [f"model.config.{k}={v}" for k, v in TINY[family].items()]
    return over


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_runs_a_few_steps(config_path, corpus, tmp_path):
    text = config_path.read_text()
    assert text.startswith("#") and "recipes/finetune.py --config " + str(config_path.relative_to(ROOT)) in text
    cfg = finetune.load_config(config_path, tiny_overrides(config_path, corpus, tmp_path) + ["train.max_steps=2", "train.epochs=1"])
    out = finetune.main(cfg, str(config_path))
    assert out["summary"]["step"] == 2
    card = (tmp_path / "README.md").read_text()
    assert cfg["model"]["name"] in card and "dev_best" in card
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    audio_clips = 0 if config_path.stem == "visual_only" else 8      # audio alone: a visual-only model has no answer
    assert results["test/audio+video"]["n"] == 8 and results["dev/audio"]["n_unique"] == audio_clips
    assert all(json.loads(line)["step"] >= 1 for line in (tmp_path / "log.jsonl").read_text().splitlines())


def test_training_learns_and_saves_a_loadable_model(corpus, tmp_path):
    import vavl  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModel

    cfg = finetune.load_config(ROOT / "recipes/configs/crema_d/auxformer.yaml",
                               tiny_overrides(ROOT / "recipes/configs/crema_d/auxformer.yaml", corpus, tmp_path)
                               + ["train.epochs=6", "train.lr=3e-3", "train.warmup_ratio=0"])
    out = finetune.main(cfg)
    assert out["results"]["test/audio+video"]["UA"] > 0.6          # chance is 1/3
    model = AutoModel.from_pretrained(tmp_path)
    assert model.config.label_names == CLASSES and model.config.class_weights is not None


def test_unknown_key_is_an_error_listing_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch'.*train\.epochs"):
        finetune.load_config(None, ["data.manifest=x.jsonl", "train.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {manifest: x.jsonl}\noptimiser: adam\n")
    with pytest.raises(ConfigError, match=f"{bad}: unknown config key 'optimiser'"):
        finetune.load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        finetune.load_config(None, ["data.manifest=x", "train.epochs"])


def test_config_values_are_typed_and_every_error_is_one_line(tmp_path):
    base = ["data.manifest=x.jsonl"]
    for over, match in [("train.epochs=abc", r"^command line: train\.epochs: .*'abc'"),
                        ("train.modality_dropout={audio: 0.3, video: 0.1}", "unknown config key 'train.modality_dropout.video'"),
                        ("data.fold=first", r"data\.fold: .*'first'"), ("train.metric=acc", "train.metric='acc' must be one of"),
                        ("evaluate.conditions=[av,blur]", "unknown condition 'blur'"), ("data.labels=angry", r"data\.labels")]:
        with pytest.raises(ConfigError, match=match) as err:
            finetune.load_config(None, base + [over])
        assert "\n" not in str(err.value), str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {manifest: x.jsonl}\ntrain: {lr: fast}\n")
    with pytest.raises(ConfigError, match=f"^{bad}: train.lr: .*'fast'"):
        finetune.load_config(bad)
    bad.write_text("train: [\n")
    with pytest.raises(ConfigError, match=f"^{bad}: not valid YAML") as err:
        finetune.load_config(bad)
    assert "\n" not in str(err.value)
    cfg = finetune.load_config(None, base + ["train.lr=3e-3", "data.labels=[a,b]", "data.fold=null", "train.epochs=2",
                                             "train.modality_dropout={audio: 0.3}", "model.config.hidden_size=8"])
    assert cfg.train.lr == 0.003 and list(cfg.data.labels) == ["a", "b"] and cfg.data.fold is None and cfg.train.epochs == 2
    assert (cfg.train.modality_dropout.audio, cfg.train.modality_dropout.visual) == (0.3, 0.0)
    assert dict(cfg.model.config) == {"hidden_size": 8}


def test_cli_reports_user_errors_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "recipes/finetune.py"), "--config",
                        str(ROOT / "recipes/configs/crema_d/auxformer.yaml"), "train.lr_rate=1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown config key 'train.lr_rate'" in r.stderr and "Traceback" not in r.stderr


def test_no_training_clips_fails_before_training(tmp_path):
    root = make_corpus(tmp_path / "c", n=12, splits=("dev", "dev", "test"))
    cfg = finetune.load_config(None, [f"data.manifest={root / 'manifest.jsonl'}", f"data.cache={root / 'cache'}",
                                      f"output_dir={tmp_path / 'out'}", "log.wandb=false"])
    with pytest.raises(DataError, match="no training clips"):
        finetune.main(cfg)
    assert not (tmp_path / "out").exists()


def test_label_unseen_in_training_fails_before_training(tmp_path):
    root = make_corpus(tmp_path / "c", n=24, labels=lambda i, split: "fear" if split == "test" else CLASSES[i % 3])
    over = [f"data.manifest={root / 'manifest.jsonl'}", f"data.cache={root / 'cache'}", f"output_dir={tmp_path / 'out'}",
            "log.wandb=false", "model.name=auxformer_w2v2l_effb2.crema_d"]
    # without data.labels the classes are the training split's: a test label outside them stops the run
    with pytest.raises(DataError, match=r"test clips have label\(s\) \['fear'\] outside the model's classes \['angry', 'happy', 'sad'\]"):
        finetune.main(finetune.load_config(None, over))
    with pytest.raises(DataError, match=r"data.labels \['fear'\] never occur in the training split"):
        finetune.main(finetune.load_config(None, over + ["data.labels=[angry,fear,happy,sad]"]))
    with pytest.raises(DataError, match=r"outside the model's classes"):
        finetune.main(finetune.load_config(None, over + ["data.labels=[angry,happy,sad]"]))
    assert not (tmp_path / "out").exists()


def test_model_config_fields_are_checked(corpus, tmp_path):
    path = ROOT / "recipes/configs/crema_d/auxformer.yaml"
    cfg = finetune.load_config(path, tiny_overrides(path, corpus, tmp_path) + ["model.config.hiden_size=8"])
    with pytest.raises(ConfigError, match="unknown field.*hiden_size"):
        finetune.main(cfg)


@pytest.mark.parametrize("schedule", ["joint", "vavl"])
def test_killed_run_resumes_to_the_same_weights(corpus, tmp_path, schedule):
    path = ROOT / "recipes/configs/crema_d/vavl.yaml"
    common = tiny_overrides(path, corpus, tmp_path) + [
        f"train.schedule={schedule}", "train.epochs=2", "train.checkpoint_every=1", "train.checkpoints_to_keep=20",
        "train.modality_dropout={audio: 0.3, visual: 0.3}", "evaluate.test=false"]
    full = finetune.load_config(path, common + [f"output_dir={tmp_path / 'full'}"])
    finetune.main(full)
    part = common + [f"output_dir={tmp_path / 'part'}"]
    first = finetune.main(finetune.load_config(path, part + ["train.stop_after_steps=3"]))   # mid epoch 1 (4 batches)
    assert first["summary"]["stopped"] == "stop_after_steps" and first["summary"]["step"] == 3
    finetune.main(finetune.load_config(path, part + ["resume=latest"]))
    a = load_file(str(tmp_path / "full/checkpoints/step_8/model.safetensors"))
    b = load_file(str(tmp_path / "part/checkpoints/step_8/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads(x) for x in (tmp_path / "part/log.jsonl").read_text().splitlines()]
    assert sorted({r["epoch"] for r in logs if "dev_loss" in r}) == [0, 1]


@pytest.mark.xdist_group("multiprocess")
def test_two_processes_match_one(corpus, tmp_path):
    path = ROOT / "recipes/configs/crema_d/auxformer.yaml"
    over = tiny_overrides(path, corpus, tmp_path) + [
        "train.epochs=2", "train.modality_dropout={audio: 0.0, visual: 0.0}", "train.lr=3e-3", "train.class_weights=null",
        "model.config.attn_dropout=0", "model.config.relu_dropout=0", "model.config.res_dropout=0",
        "model.config.embed_dropout=0", "model.config.out_dropout=0", "train.eval_batch_size=3",
        "model.config.causal_mask=false"]   # the official future mask depends on padded lengths, i.e. on batch makeup
    one = finetune.main(finetune.load_config(path, over + [f"output_dir={tmp_path / 'one'}"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(ROOT / "recipes/finetune.py"), "--config", str(path),
           *[o.replace("train.batch_size=8", "train.batch_size=4") for o in over], f"output_dir={tmp_path / 'two'}"]
    r = launch(cmd, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((tmp_path / "two/results.json").read_text())["results"]
    for key, res in one["results"].items():
        assert two[key]["n"] == res["n"] == two[key]["n_unique"] == 8      # every sample scored once (8 = 3+3+2 per split)
        for m in ("UA", "WA", "loss"):
            assert abs(two[key][m] - res[m]) < 0.02, (key, m, two[key][m], res[m])
    w1, w2 = load_file(str(tmp_path / "one/model.safetensors")), load_file(str(tmp_path / "two/model.safetensors"))
    gap = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert gap < 2e-3, gap       # same training math, up to the order of float sums (8 Adam steps at lr 3e-3)


def test_recipe_scores_equal_vavl_evaluate_on_the_same_clips(tmp_path):
    """One scoring path: the recipe's test rows are `vavl evaluate`'s numbers on the test split,
    and the audio-only / video-only rows count only the clips that have that modality."""
    from vavl import cli
    from vavl.evaluation.scoring import headline

    root = make_corpus(tmp_path / "c", missing=lambda i: {1: "visual", 3: "audio"}.get(i % 4))
    path = ROOT / "recipes/configs/crema_d/auxformer.yaml"
    finetune.main(finetune.load_config(path, tiny_overrides(path, root, tmp_path / "run") + ["train.epochs=3", "train.lr=3e-3"]))
    report = json.loads((tmp_path / "run/results.json").read_text())
    assert cli.main(["evaluate", "--model", str(tmp_path / "run"), "--manifest", str(root / "manifest.jsonl"), "--protocol", "vavl-1",
                     "--split", "test", "--cache", str(root / "cache"), "--conditions", "av,audio,video", "--batch-size", "64",
                     "--out", str(tmp_path / "report")]) == 0
    metrics = json.loads((tmp_path / "report/metrics.json").read_text())
    assert report["metrics"]["test"]["conditions"] == metrics["conditions"]
    for name, condition in (("audio+video", "av"), ("audio", "audio"), ("video", "video")):
        assert report["results"][f"test/{name}"] == headline(metrics, condition)
    test_clips = range(40, 48)
    assert report["results"]["test/audio+video"]["n"] == 8
    assert report["results"]["test/audio"]["n"] == sum(i % 4 != 3 for i in test_clips) == 6
    assert report["results"]["test/video"]["n"] == sum(i % 4 != 1 for i in test_clips) == 6


def test_layer_decay_follows_the_layer_ids_the_model_declares(tmp_path):
    """End to end: the fusion model at train.lr, the speech encoder's top layer at encoder_lr, each
    layer below it x layer_decay, its CNN front end below every layer."""

    import vavl
    from finetune_model import param_groups   # the recipe's own file (recipes/ is on sys.path once the recipe loaded)

    tiny_wav2vec2_dir(tmp_path / "w2v", hidden=16, layers=2, conv=16)
    model = vavl.create_model("auxformer", audio_encoder=str(tmp_path / "w2v"), visual_encoder="face-grey", **TINY["auxformer"])
    model.audio_encoder.set_frozen(False)
    cfg = finetune.load_config(None, ["data.manifest=x", "train.lr=1e-3", "train.encoder_lr=1e-4", "train.layer_decay=0.5"])
    lr_of = {id(p): g["lr"] for g in param_groups(model, cfg, end_to_end=True) for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(lr_of) == sum(p.requires_grad for p in named.values())
    assert {lr_of[id(p)] for n, p in named.items() if n.startswith("fusion.")} == {1e-3}
    layers = model.audio_encoder.model.encoder.layers
    assert {lr_of[id(p)] for p in layers[1].parameters()} == {1e-4}
    assert {lr_of[id(p)] for p in layers[0].parameters()} == {1e-4 * 0.5}
    cnn = model.audio_encoder.model.feature_extractor
    assert {lr_of[id(p)] for p in cnn.parameters()} == {1e-4 * 0.5 ** 2}


def test_modality_dropout_never_removes_the_last_modality():
    torch.manual_seed(0)
    batch = {"audio_mask": torch.ones(500, 3, dtype=torch.bool), "visual_mask": torch.ones(500, 2, dtype=torch.bool)}
    batch["visual_mask"][:100] = False                          # audio-only samples keep their audio
    out = modality_dropout(batch, audio=0.5, visual=0.5)
    a, v = out["audio_mask"].any(1), out["visual_mask"].any(1)
    assert (a | v).all() and a[:100].all()
    assert 0.3 < (~a[100:]).float().mean() < 0.6 and 0.3 < (~v[100:]).float().mean() < 0.6
    with pytest.raises(ConfigError):
        modality_dropout(batch, audio=1.0)


def test_end_to_end_fine_tunes_the_encoders(tmp_path):
    """data.cache=null: raw clips through the encoders; the speech encoder's transformer layers
    learn (at layer-decayed rates) while its CNN feature encoder stays frozen."""

    from vavl.data.prepare import prepare
    from vavl.data.synthetic import make_corpus

    make_corpus("crema-d", tmp_path / "corpus", n_speakers=5, clips_per_class=1, duration=1.0, size=(96, 72), fps=10)
    prepare("crema-d", tmp_path / "corpus", tmp_path / "m.jsonl", log=open(os.devnull, "w"))
    tiny_wav2vec2_dir(tmp_path / "w2v", hidden=16, layers=2, conv=16)
    before = load_file(tmp_path / "w2v" / "model.safetensors")
    cfg = finetune.load_config(ROOT / "recipes/configs/crema_d/auxformer.yaml", [
        f"data.manifest={tmp_path / 'm.jsonl'}", "data.cache=null", "data.protocol=speaker-5fold", "data.fold=0",
        f"output_dir={tmp_path / 'run'}", "log.wandb=false", "log.progress=false", "train.batch_size=4",
        "train.max_steps=3", "train.epochs=1", "train.lr=1e-2", "train.layer_decay=0.5", "train.class_weights=null",
        f"model.audio_encoder={tmp_path / 'w2v'}", "model.visual_encoder=face-grey",
        *[f"model.config.{k}={v}" for k, v in TINY["auxformer"].items()]])
    out = finetune.main(cfg)
    assert out["summary"]["step"] == 3
    import vavl  # noqa: F401
    from transformers import AutoModel

    trained = AutoModel.from_pretrained(tmp_path / "run")
    after = {k.split("audio_encoder.model.", 1)[1]: v for k, v in trained.state_dict().items() if k.startswith("audio_encoder.model.")}
    layer = [k for k in before if k.startswith("encoder.layers.1.") and k.endswith("weight")][0]
    cnn = [k for k in before if k.startswith("feature_extractor.conv_layers.0.") and k.endswith("weight")][0]
    assert not torch.allclose(after[layer], before[layer]), "transformer layers of the speech encoder did not learn"
    assert torch.equal(after[cnn], before[cnn]), "the CNN feature encoder must stay frozen"
    # the saved config says the fusion model is trained (no "untrained" note), on what, end to end
    prov = trained.emotion_config.provenance
    assert prov["weights"] == "trained" and prov["features"] == {"cache": None, "end_to_end": True}
    assert prov["synthetic"] is True and prov["protocol"] == "speaker-5fold" and prov["fold"] == 0


def test_a_custom_corpus_trains_the_classes_of_its_training_split(tmp_path, capsys):
    """recipes/configs/custom/auxformer.yaml on a 4-class corpus of one's own, without data.labels: the model
    has those 4 classes (not the registry entry's 6 CREMA-D ones, two of which never occur) and the run names
    them; a configured class that the training split never has is an error, as an unseen test label is."""
    from transformers import AutoModel

    four = ["angry", "happy", "neutral", "sad"]   # CREMA-D names, so the entry's 6 classes would have "fit"
    root = make_corpus(tmp_path / "c", n=48, labels=lambda i, split: four[i % 4])
    config = ROOT / "recipes/configs/custom/auxformer.yaml"
    over = [f"data.manifest={root / 'manifest.jsonl'}", f"data.cache={root / 'cache'}", f"output_dir={tmp_path / 'run'}",
            "data.protocol=vavl-1", "data.fold=null", "log.progress=false", "train.batch_size=8", "train.max_steps=2",
            "train.epochs=1"] + [f"model.config.{k}={v}" for k, v in TINY["auxformer"].items()]
    finetune.main(finetune.load_config(config, over), str(config))
    assert AutoModel.from_pretrained(tmp_path / "run").config.label_names == four
    assert f"data.labels: 4 classes found in the training split ('label'): {four}" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"data.labels \['fear'\] never occur in the training split"):
        finetune.main(finetune.load_config(config, over + ["data.labels=[angry,fear,happy,neutral,sad]"]))
