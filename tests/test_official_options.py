"""The options the official recipes are made of, each on its own: the official modality shut-off
(per batch, multiplied by 0) in training and on dev batches, train-statistics z-scoring held by the
model, the official initialisation, Adam with L2, the summed CCC loss, and the scoring fixes
(tied soft labels, speaker bootstrap)."""
from __future__ import annotations

import math

import pytest
import torch

import vavl
from vavl.data.augment import modality_dropout
from vavl.data.conditions import apply_condition, parse_condition
from vavl.data import read_manifest
from vavl.data.datasets import cached_dataset, feature_statistics, fill_feature_statistics
from vavl.core.errors import ConfigError
from vavl.evaluation.scoring import gold_classes
from vavl.models.loading import load_model
from vavl.nn.losses import ccc, ccc_loss

from test_finetune import CLASSES, ROOT, finetune, make_corpus, tiny_overrides

SMALL = dict(audio_dim=8, visual_dim=6, num_labels=3, hidden_size=8, num_heads=2, num_layers=1)


def feature_batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"ids": [f"c{i}" for i in range(b)], "audio_features": torch.randn(b, 5, 8, generator=g) + 1,
            "audio_mask": torch.ones(b, 5, dtype=torch.bool), "visual_features": torch.randn(b, 3, 6, generator=g) + 1,
            "visual_mask": torch.ones(b, 3, dtype=torch.bool)}


def test_per_batch_zero_shut_off_follows_the_official_draw():
    torch.manual_seed(0)
    counts = {"audio": 0, "visual": 0, None: 0}
    for _ in range(3000):
        batch = feature_batch()
        out = modality_dropout(dict(batch), 0.2, 0.2, mode="zero", per="batch")
        assert torch.equal(out["audio_mask"], batch["audio_mask"]) and torch.equal(out["visual_mask"], batch["visual_mask"])
        a_off, v_off = not out["audio_features"].any(), not out["visual_features"].any()
        assert not (a_off and v_off)                              # one draw: never both
        if a_off or v_off:                                        # the whole batch, not some clips
            assert torch.equal(out["visual_features" if a_off else "audio_features"],
                               batch["visual_features" if a_off else "audio_features"])
        counts["audio" if a_off else "visual" if v_off else None] += 1
    assert abs(counts["audio"] / 3000 - 0.2) < 0.025 and abs(counts["visual"] / 3000 - 0.2) < 0.025
    with pytest.raises(ConfigError, match="per=batch"):
        modality_dropout(feature_batch(), 0.2, 0.2, mode="zero", per="sample")


def test_shut_off_on_dev_batches_is_seeded_by_the_batch_and_keeps_masks():
    cond = parse_condition("shut-off:0.4")
    seen = set()
    for seed in range(40):
        batch = feature_batch()
        once, again = apply_condition(batch, cond, seed), apply_condition(batch, cond, seed)
        assert all(torch.equal(once[k], again[k]) for k in ("audio_features", "visual_features"))   # reproducible
        assert torch.equal(once["audio_mask"], batch["audio_mask"]) and torch.equal(once["visual_mask"], batch["visual_mask"])
        seen.add((bool(once["audio_features"].any()), bool(once["visual_features"].any())))
    assert seen == {(True, True), (False, True), (True, False)}
    with pytest.raises(ConfigError, match="0, 0.5"):
        parse_condition("shut-off:0.7")


def test_feature_normalization_is_held_by_the_model_and_zero_means_zero_after_it(tmp_path):
    model = vavl.create_model("auxformer", **SMALL, feature_normalization=["visual"]).eval()
    plain = vavl.create_model("auxformer", **SMALL).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "feature_" not in k})
    mean, std = torch.linspace(-1, 1, 6), torch.linspace(0.5, 2, 6)
    model.set_feature_statistics("visual", mean, std)
    batch = feature_batch()
    with torch.no_grad():
        ours = model(audio_features=batch["audio_features"], visual_features=batch["visual_features"]).logits
        by_hand = plain(audio_features=batch["audio_features"],
                        visual_features=(batch["visual_features"] - mean) / (std + 1e-6)).logits
    assert torch.allclose(ours, by_hand, atol=1e-6)
    model.save_pretrained(tmp_path)                              # the statistics travel with the weights
    assert torch.equal(load_model(str(tmp_path)).visual_feature_mean, mean)
    # "multiplied by 0" on a model that normalizes: the normalized input is 0, i.e. the input is the mean
    zeroed = modality_dropout(dict(batch), 0.0, 0.999, mode="zero", per="batch", origins={"visual": model.input_origin("visual")})
    assert torch.allclose(zeroed["visual_features"], mean.expand(4, 3, 6))
    with pytest.raises(ConfigError, match="feature_normalization"):
        plain.set_feature_statistics("visual", mean, std)


def test_training_statistics_are_population_moments_over_every_frame(tmp_path):
    corpus = make_corpus(tmp_path)
    records = [r for r in read_manifest(corpus / "manifest.jsonl") if r["folds"]["vavl-1"] == "train"]
    model = vavl.create_model("auxformer", **SMALL, feature_normalization=["visual", "audio"])
    data = cached_dataset(corpus / "cache", records, model.config)
    frames = torch.cat([data[i]["visual_features"] for i in range(len(data))]).double()
    mean, std = feature_statistics(data, "visual")
    assert torch.allclose(mean.double(), frames.mean(0), atol=1e-6) and torch.allclose(std.double(), frames.std(0, unbiased=False), atol=1e-6)
    fill_feature_statistics(model, data)
    assert torch.allclose(model.visual_feature_std, std) and model.audio_feature_mean.abs().sum() > 0


def test_official_init_is_pytorch_defaults_with_the_official_xavier_layers():
    torch.manual_seed(0)
    official = vavl.create_model("auxformer", **SMALL, init_scheme="official")
    ours = vavl.create_model("auxformer", **SMALL)
    layer = official.fusion.a_mem.layers[0]
    d = layer.fc1.in_features
    xavier = math.sqrt(6 / (d + 4 * d))
    assert layer.fc1.weight.abs().max() <= xavier and not layer.fc1.bias.any()          # modules/transformer.py Linear
    assert not layer.attn.qkv.bias.any() and not layer.attn.out_proj.bias.any()          # nn.MultiheadAttention's reset
    head = official.fusion_head.out                                                       # a plain nn.Linear: defaults
    assert head.bias.abs().max() > 0 and head.weight.abs().max() <= 1 / math.sqrt(head.in_features)
    assert not ours.fusion_head.out.bias.any()                                            # vavl's scheme: zero biases
    with pytest.raises(ConfigError, match="init_scheme"):
        vavl.create_model("auxformer", **SMALL, init_scheme="he")


def test_summed_ccc_loss_and_adam_with_l2(tmp_path):
    g = torch.Generator().manual_seed(0)
    pred, gold = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    assert torch.allclose(ccc_loss(pred, gold, reduction="sum"), (1 - ccc(pred, gold)).sum())
    assert torch.allclose(ccc_loss(pred, gold, reduction="sum"), 3 * ccc_loss(pred, gold))
    corpus = make_corpus(tmp_path)
    config = ROOT / "recipes/configs/crema_d/vavl_official.yaml"
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run"))
    built = finetune.build_model(cfg, "single_label_classification", CLASSES, (8, 6), None)
    optimizers = finetune.make_optimizers(built, cfg, end_to_end=False)
    assert set(optimizers) == {"audio", "visual", "shared", "fusion"}
    for opt in optimizers.values():   # torch.optim.Adam adds weight_decay * w to the gradient (L2), unlike AdamW
        assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 5e-7 and opt.defaults["betas"] == (0.95, 0.999)


def test_vavl_schedule_steps_every_learning_rate_schedule_once_per_batch(tmp_path):
    corpus = make_corpus(tmp_path)
    config = ROOT / "recipes/configs/crema_d/vavl.yaml"
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run")
                               + ["train.lr_scheduler=cosine", "train.warmup_ratio=0", "train.epochs=1", "evaluate.dev=false"])
    run = finetune.setup(cfg)
    try:
        finetune.train(run)
        steps = run["state"].step
        assert steps == run["total_steps"] == 4
        for name, sched in run["schedulers"].items():
            # a cosine schedule ends at 0 after its steps; the shared branch's, stepped twice per batch,
            # used to reach 0 half-way through and climb back to the full rate by the end
            assert sched.scheduler.last_epoch == steps and sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12), name
    finally:
        run["accelerator"].end_training()


def test_tied_soft_labels_are_left_out_like_tied_hard_labels():
    votes = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.0, 0.0, 0.0], [0.4, 0.2, 0.4]])
    assert gold_classes(votes).tolist() == [-100, 1, -100, -100]


@pytest.mark.parametrize("config_name,batch", [("crema_d/vavl_official.yaml", 32), ("msp_improv/vavl_official.yaml", 9)])
def test_vavl_official_configs_batch_the_sorted_file_names_at_the_official_size(tmp_path, config_name, batch):
    """The official VAVL loader sorts the clips' file names and runs train, dev and test unshuffled at
    one batch size (VAVL utils/data_manager.py, train.py:105-107); the manifest's order is not that."""
    from vavl.data import write_manifest

    corpus = make_corpus(tmp_path)
    records = read_manifest(corpus / "manifest.jsonl")
    write_manifest(records[::-1], corpus / "manifest.jsonl")       # a manifest in another order
    config = ROOT / "recipes/configs" / config_name
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run") + ["train.batch_size=4"])
    assert cfg.data.order == "sorted" and cfg.train.eval_batch_size == batch and not cfg.train.shuffle
    assert cfg.model.config.official_batching and cfg.model.config.init_scheme == "official"
    run = finetune.setup(cfg)
    try:
        for split, dataset in run["datasets"].items():
            ids = [r["id"] for r in dataset.records]
            assert ids == sorted(ids) and len(ids) > 1, split
        first = next(iter(run["train_dl"]))
        assert first["ids"] == sorted(r["id"] for r in records if r["folds"]["vavl-1"] == "train")[:4]
    finally:
        run["accelerator"].end_training()


def test_auxformer_official_config_scores_dev_at_32_and_test_at_1_with_the_padded_batch_function():
    cfg = finetune.load_config(ROOT / "recipes/configs/crema_d/auxformer_official.yaml", ["data.manifest=m.jsonl"])
    assert cfg.train.shuffle and cfg.train.batch_size == cfg.train.eval_batch_size == 32 and cfg.evaluate.test_batch_size == 1
    assert cfg.model.config.official_batching and cfg.data.order == "manifest"
    assert {"zero-audio", "zero-video"} <= set(cfg.evaluate.conditions)
    with pytest.raises(ConfigError, match="data.order"):
        finetune.load_config(ROOT / "recipes/configs/crema_d/auxformer_official.yaml", ["data.manifest=m.jsonl", "data.order=random"])


@pytest.mark.parametrize("redraw", [True, False])
def test_official_auxformer_dev_shut_off_is_drawn_afresh_every_epoch(tmp_path, monkeypatch, redraw):
    """Official train.py:206-216 draws the dev shut-off anew every epoch; vavl's default keeps one draw."""
    corpus = make_corpus(tmp_path)
    config = ROOT / "recipes/configs/crema_d/auxformer_official.yaml"
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run")
                               + ["train.epochs=3", "evaluate.test=false", f"evaluate.dev_redraw={str(redraw).lower()}"])
    assert finetune.load_config(config, ["data.manifest=m.jsonl"]).evaluate.dev_redraw
    seeds, real = [], finetune.score

    def spy(run, model, split, names, bootstrap, seed=None):
        seeds.append(seed)
        return real(run, model, split, names, bootstrap, seed=seed)

    monkeypatch.setattr(finetune, "score", spy)
    run = finetune.setup(cfg)
    try:
        finetune.train(run)
    finally:
        run["accelerator"].end_training()
    assert seeds == ([cfg.seed, cfg.seed + 1, cfg.seed + 2] if redraw else [cfg.seed] * 3)
    batch = {"ids": [f"c{i}" for i in range(32)], "audio_features": torch.ones(32, 2, 8), "visual_features": torch.ones(32, 2, 6)}
    draws = {int(apply_condition(batch, parse_condition("shut-off:0.2"), s)["audio_features"].sum() == 0) for s in range(20)}
    assert draws == {0, 1}   # another seed, another draw for the same batch


@pytest.mark.parametrize("flip", [False, True])
def test_official_arousal_flip_alternates_the_training_targets_only_when_asked(tmp_path, monkeypatch, flip):
    """VAVL utils/dataset.py:79-83 flips arousal in place on every read: 6 - x, x, 6 - x, ... epoch by epoch."""
    corpus = make_corpus(tmp_path)
    config = ROOT / "recipes/configs/msp_improv/vavl_official.yaml"
    assert finetune.load_config(config, ["data.manifest=m.jsonl"]).data.official_arousal_flip is False
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run")
                               + ["train.epochs=3", "evaluate.test=false", f"data.official_arousal_flip={str(flip).lower()}"])
    stored = {r["id"]: r["attributes"]["arousal"] for r in read_manifest(corpus / "manifest.jsonl")}
    seen, real = [], finetune.train_step_vavl

    def spy(acc, model, batch, *args, **kwargs):
        index = list(getattr(model, "module", model).config.label_names).index("arousal")
        seen.append([(i, float(v)) for i, v in zip(batch["ids"], batch["labels"][:, index])])
        return real(acc, model, batch, *args, **kwargs)

    monkeypatch.setattr(finetune, "train_step_vavl", spy)
    run = finetune.setup(cfg)
    try:
        finetune.train(run)
    finally:
        run["accelerator"].end_training()
    per_epoch = len(seen) // 3
    assert per_epoch and len(seen) == 3 * per_epoch
    for n, batch in enumerate(seen):
        flipped = flip and (n // per_epoch) % 2 == 0
        assert all(v == (6.0 - stored[i] if flipped else stored[i]) for i, v in batch), n


def test_official_arousal_flip_on_a_classifier_is_refused_before_training(tmp_path):
    corpus = make_corpus(tmp_path)
    config = ROOT / "recipes/configs/crema_d/vavl_official.yaml"
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run") + ["data.official_arousal_flip=true"])
    run = finetune.setup(cfg)
    try:
        with pytest.raises(ConfigError, match="official_arousal_flip"):
            finetune.train(run)
    finally:
        run["accelerator"].end_training()
    assert not (tmp_path / "run" / "log.jsonl").is_file() or not (tmp_path / "run" / "log.jsonl").read_text().strip()
