"""recipes/configs/crema_d/hicmae.yaml: HiCMAE's official CREMA-D fine-tuning
(sunlicai/HiCMAE scripts/voxceleb2/audio_visual/hicmae_pretrain_base/cream-d/finetune_170.sh and
run_class_finetuning_av.py), loaded through the recipe's own load_config and checked value by value;
and the recipe, which cannot train a whole HiCMAE model yet, stops on it with one clear line."""
from __future__ import annotations

import pytest

import vavl  # noqa: F401  (registers the families)
from vavl.core.errors import ConfigError
from vavl.models.hicmae import CLASSES, HiCMAEConfig

from test_finetune import ROOT, finetune, make_corpus
from test_hicmae_model import TINY

CONFIG = ROOT / "recipes/configs/crema_d/hicmae.yaml"
# finetune_170.sh, as read: --batch_size 14 on CUDA_VISIBLE_DEVICES=0,1,2,3 (4 processes), --lr 1e-3, --epochs 50,
# --opt adamw --opt_betas 0.9 0.999 --weight_decay 0.05, --depth 10 --depth_audio 10 --fusion_depth 2
# --num_frames 16 --input_size 160 --input_size_audio 256 --nb_classes 6;
# run_class_finetuning_av.py defaults: --layer_decay 0.75, --warmup_epochs 5, --drop_path 0.1, --clip_grad None,
# --seed 0, val batch int(1.5 x batch_size); lr scaled by total batch / 256
OFFICIAL = dict(batch=14, gpus=4, lr=1e-3, epochs=50, betas=[0.9, 0.999], weight_decay=0.05, depth=10, depth_audio=10,
                fusion_depth=2, num_frames=16, input_size=160, input_size_audio=256, nb_classes=6, layer_decay=0.75,
                warmup_epochs=5, drop_path=0.1, seed=0)


def test_hicmae_config_loads_and_holds_the_official_values():
    cfg = finetune.load_config(CONFIG, [])
    o, t, m = OFFICIAL, cfg.train, cfg.model.config
    assert cfg.model.name == "hicmae.crema_d" and cfg.seed == o["seed"]
    assert t.batch_size == o["batch"] and t.eval_batch_size == int(1.5 * o["batch"])
    assert t.lr == pytest.approx(o["lr"] * o["batch"] * o["gpus"] / 256)          # RUN:476-478
    assert t.epochs == o["epochs"] and t.warmup_ratio == pytest.approx(o["warmup_epochs"] / o["epochs"])
    assert t.optimizer == "adamw" and list(t.betas) == o["betas"] and t.weight_decay == o["weight_decay"]
    assert t.lr_scheduler == "cosine" and t.layer_decay == o["layer_decay"] and t.max_grad_norm == 0.0
    assert t.mixed_precision == "fp16" and not t.freeze_encoders
    # the architecture: the config's values are the official ones, and the model's defaults (the released model)
    official_arch = {"num_hidden_layers": o["depth"], "audio_num_hidden_layers": o["depth_audio"],
                     "fusion_num_hidden_layers": o["fusion_depth"], "num_frames": o["num_frames"],
                     "image_size": o["input_size"], "audio_target_length": o["input_size_audio"],
                     "drop_path_rate": o["drop_path"]}
    assert {k: m[k] for k in official_arch} == official_arch
    assert all(getattr(HiCMAEConfig(), k) == v for k, v in official_arch.items())
    assert list(cfg.data.labels) == list(CLASSES["crema-d"]) and len(cfg.data.labels) == o["nb_classes"]
    # the intended label on HiCMAE's folds, end to end; no dev split, so no selection on test
    assert cfg.data.protocol == "hicmae-1" and cfg.data.label_field == "label" and cfg.data.cache is None
    assert cfg.evaluate.dev is False
    text = CONFIG.read_text()
    assert "recipes/finetune.py --config recipes/configs/crema_d/hicmae.yaml" in text
    for not_copied in ("mixup", "RandAugment", "label smoothing", "val list IS its test list"):
        assert not_copied in text


def test_hicmae_config_fold_override_passes_the_checks_and_bad_values_do_not():
    assert finetune.load_config(CONFIG, ["data.protocol=hicmae-3"]).data.protocol == "hicmae-3"
    with pytest.raises(ConfigError, match="layer_decay"):
        finetune.load_config(CONFIG, ["train.layer_decay=0"])


def test_the_recipe_stops_on_a_whole_hicmae_model_with_one_line(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=12)
    over = [f"data.manifest={corpus / 'manifest.jsonl'}", f"output_dir={tmp_path / 'run'}", "data.protocol=vavl-1",
            "data.labels=[angry,happy,sad]", "log.wandb=false", "log.progress=false", "train.mixed_precision=no",
            "model.init=null"] + [f"model.config.{k}={v}" for k, v in {**TINY, "drop_path_rate": 0.1}.items()]
    cfg = finetune.load_config(CONFIG, over)
    with pytest.raises(ConfigError, match="one whole model with its own encoders") as err:
        finetune.main(cfg, str(CONFIG))
    assert "\n" not in str(err.value) and "hicmae.crema_d" in str(err.value)
