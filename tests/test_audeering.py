"""`vavl convert audeering`: a random model saved in the exact layout of
audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim -> a vavl model whose outputs equal the
authors' head (dense -> tanh -> out_proj over the time mean) within 1e-6, attributes in the
checkpoint's order, the license in the card; bad folders are DataErrors."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, Wav2Vec2FeatureExtractor

import vavl
import vavl.encoders
from media_utils import tone
from tiny_encoders import AUDEERING_LABELS, tiny_audeering_dir
from vavl.cli import main
from vavl.convert import load_audeering
from vavl.core.errors import DataError
from vavl.media import write_clip


def reference(model, folder, wave: np.ndarray) -> torch.Tensor:
    """The authors' recipe: their feature extractor (zero mean, unit variance), wav2vec2, time mean, head."""
    inputs = Wav2Vec2FeatureExtractor.from_pretrained(folder)(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(inputs["input_values"])[0]


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_converted_model_equals_the_authors_head(tmp_path, weights):
    folder, ref = tiny_audeering_dir(tmp_path / "hub", weights)
    model = load_audeering(folder)
    assert model.label_names == AUDEERING_LABELS and model.fusion.config.task == "regression"
    assert model.audio_encoder.normalize and model.audio_encoder.name == "audeering-dim"
    for seconds in (1.0, 2.7):
        wave = (0.3 * np.random.default_rng(int(seconds * 10)).standard_normal(int(seconds * 16000))).astype(np.float32)
        with torch.no_grad():
            ours = model(input_values=torch.from_numpy(wave)[None]).logits[0]
        assert (ours - reference(ref, folder, wave)).abs().max() <= 1e-6, seconds


def test_cli_writes_a_loadable_model_with_its_license_and_predicts(tmp_path):
    folder, ref = tiny_audeering_dir(tmp_path / "hub")
    out = tmp_path / "converted"
    assert main(["convert", "audeering", folder, "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "audeering_dim.msp_podcast" in card
    loaded = AutoModel.from_pretrained(out).eval()
    clip = write_clip(tmp_path / "speech.wav", audio=tone(1.5), sample_rate=16000)
    r = vavl.predict(clip, model=loaded)
    assert r["label"] is None and list(r["scores"]) == AUDEERING_LABELS and r["modalities"] == ["audio"]
    wave = loaded.processor(clip)["input_values"][0].numpy()
    expected = reference(ref, folder, wave)
    assert np.allclose([r["scores"][k] for k in AUDEERING_LABELS], expected.numpy(), atol=1e-5)


def test_encoder_preset_loads_the_backbone_of_the_hub_layout(tmp_path):
    """`audeering-dim` with pretrained=True takes the `wav2vec2.*` weights (the head is left out)."""
    folder, ref = tiny_audeering_dir(tmp_path / "hub")
    enc = vavl.encoders.build_encoder("audeering-dim", pretrained=True, source=folder).eval()
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        expected = ref.wav2vec2((wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)).last_hidden_state
        assert torch.allclose(enc(wave)[0], expected, atol=1e-5)
    assert enc.frame_rate == 50.0 and enc.normalize


def test_registry_entry_is_the_converted_architecture(tmp_path):
    folder, _ = tiny_audeering_dir(tmp_path / "hub")
    model = load_audeering(folder)
    entry = vavl.get_entry("audeering_dim.msp_podcast")
    assert entry.audio_encoder == "audeering-dim" and "CC-BY-NC-SA-4.0" in entry.description
    assert type(model.fusion) is entry.model_class
    assert model.fusion.config.attributes == entry.config["attributes"]


def test_bad_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        load_audeering(tmp_path)
    folder, _ = tiny_audeering_dir(tmp_path / "hub")
    state = torch.load(f"{folder}/pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.out_proj")}, f"{folder}/pytorch_model.bin")
    with pytest.raises(DataError, match="classifier.out_proj.weight"):
        load_audeering(folder)
    (tmp_path / "hub" / "pytorch_model.bin").unlink()
    with pytest.raises(DataError, match="no model.safetensors or pytorch_model.bin"):
        load_audeering(folder)
    cfg = json.loads((tmp_path / "hub" / "config.json").read_text())
    (tmp_path / "hub" / "config.json").write_text(json.dumps({**cfg, "id2label": {}}))
    with pytest.raises(DataError, match="id2label"):
        load_audeering(folder)
