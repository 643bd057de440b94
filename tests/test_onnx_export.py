"""`vavl export onnx`: every registered fusion model (tiny shapes) exports with dynamic batch and
time axes and missing modalities as masks, and onnxruntime agrees with PyTorch within 1e-4; a full
model with a speech and a face encoder exports too."""
from __future__ import annotations

import dataclasses

import onnxruntime
import pytest
import torch

import vavl
from tiny_encoders import tiny_full_model
from vavl.cli import main as cli
from vavl.core.errors import ConfigError
from vavl.inference.export import TOLERANCE, export_onnx, torch_can_export
from vavl.models.base import EmotionModel

SMALL = {"audio_dim": 12, "visual_dim": 10, "hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8,
         "num_attention_heads": 2, "num_heads": 2, "num_layers": 1, "num_audio_layers": 1, "num_visual_layers": 1,
         "num_shared_layers": 1, "conv_kernel_size": 5, "cnn_channels": [4, 8]}
OLD_TORCH = not torch_can_export()   # the lower end (constraints-min.txt): export refuses in one line


def small_overrides(name):
    fields = {f.name for f in dataclasses.fields(vavl.get_entry(name).model_class.config_class)}
    return {k: v for k, v in SMALL.items() if k in fields}


def small(name):
    torch.manual_seed(0)
    return vavl.create_model(name, **small_overrides(name)).eval()


def distinct_fusion_models():
    """Every registered fusion model whose tiny config builds a different network: entries that differ
    only in the encoder pairing they are meant for (the feature widths are SMALL's here), or in the
    names and order of their labels, export the very same graph (e.g. auxformer_{ast,w2v2l,whisperS}_effb2.crema_d
    and auxformer_w2v2l_videomae.crema_d; vavl.official and vavl_{w2v2l,w2v2dim}_effb2.crema_d): the first name stands
    for them."""
    seen, names = set(), []
    for name in vavl.list_models():
        entry = vavl.get_entry(name)
        if not issubclass(entry.model_class, EmotionModel):
            continue
        config = entry.model_class.config_class(**{**entry.config, **small_overrides(name)}).to_dict()
        config["num_labels"] = len(config.pop("id2label"))
        for key in ("label2id", "provenance", "_name_or_path", "transformers_version"):
            config.pop(key, None)
        key = (entry.model_class, repr(sorted(config.items())))
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


FUSION = distinct_fusion_models()


def run(path, **inputs):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})


@pytest.mark.parametrize("name", FUSION)
def test_every_fusion_model_exports_and_onnxruntime_agrees(name, tmp_path):
    model = small(name)
    if OLD_TORCH:
        with pytest.raises(ConfigError, match="needs torch >= 2.14"):
            export_onnx(model, tmp_path / "m.onnx", optimize=False)
        assert not (tmp_path / "m.onnx").exists()
        return
    worst = export_onnx(model, tmp_path / "m.onnx", optimize=False)
    assert worst <= TOLERANCE
    # other sizes than the traced ones, a clip with no audio at all and one with no video
    c, g = model.config, torch.Generator().manual_seed(5)
    inputs = {"audio_features": torch.randn(4, 13, c.audio_dim, generator=g), "audio_mask": torch.ones(4, 13, dtype=torch.bool),
              "visual_features": torch.randn(4, 3, c.visual_dim, generator=g), "visual_mask": torch.ones(4, 3, dtype=torch.bool)}
    inputs["audio_mask"][1] = False
    inputs["visual_mask"][2] = False
    inputs["audio_mask"][3, 9:] = False
    with torch.no_grad():
        ref = model(**inputs).logits
    got = torch.from_numpy(run(tmp_path / "m.onnx", **inputs)[0])
    assert torch.allclose(got, ref, atol=TOLERANCE), (got - ref).abs().max()


def test_a_full_model_with_encoders_exports(tmp_path):
    model = tiny_full_model(tmp_path).eval()
    if OLD_TORCH:
        with pytest.raises(ConfigError, match="needs torch >= 2.14"):
            export_onnx(model, tmp_path / "full.onnx", optimize=False)
        return
    assert export_onnx(model, tmp_path / "full.onnx", optimize=False) <= TOLERANCE
    session = onnxruntime.InferenceSession(str(tmp_path / "full.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_values", "attention_mask", "pixel_values", "pixel_mask"]


def test_cli_exports_a_saved_model_and_says_what_is_wrong(tmp_path, capsys):
    # the command's path (load the folder, export, optimise, check with onnxruntime) on a model quick to export:
    # every fusion model's own export is tested above
    small("late_fusion_w2v2l_effb2.crema_d").save_pretrained(tmp_path / "m")
    if OLD_TORCH:
        assert cli(["export", "onnx", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "m.onnx")]) == 2
        assert "needs torch >= 2.14" in capsys.readouterr().err
        return
    assert cli(["export", "onnx", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    assert {o.name for o in onnxruntime.InferenceSession(str(tmp_path / "m.onnx")).get_outputs()} >= {"logits"}
    assert cli(["export", "onnx", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "nowhere" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["export", "onnx", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x.onnx")]) == 2
