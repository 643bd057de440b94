"""Neural encoder presets: offline full-size architectures, tiny saved models through the real
from_pretrained path, layer choice / weighted sums / freezing, timm backbones, HSEmotion import."""
import pytest
import timm
import torch
from torch import nn

from vavl.encoders import build_encoder, get_encoder_preset, list_encoders
from vavl.encoders.build import encoder_from_spec, encoder_spec
from vavl.core.errors import ConfigError

from tiny_encoders import tiny_speech_dir

@pytest.mark.parametrize("name,layers,width,params", [
    ("wav2vec2-large-robust", 12, 1024, 164.3e6), ("wav2vec2-base", 12, 768, 94.4e6),
    ("hubert-large", 24, 1024, 315.4e6), ("wavlm-base-plus", 12, 768, 94.4e6), ("wavlm-large", 24, 1024, 315.5e6)])
def test_speech_presets_build_full_size_offline(name, layers, width, params):
    preset = get_encoder_preset(name)
    assert preset.source.startswith(("facebook/", "microsoft/")) and preset.output_dim == width
    with torch.device("meta"):  # the real architecture, without allocating its weights
        enc = build_encoder(name, pretrained=False)
    assert enc.model.config.num_hidden_layers == layers and len(enc.model.encoder.layers) == layers
    assert enc.output_dim == width and enc.modality == "audio" and enc.frame_rate == 50.0
    assert abs(sum(p.numel() for p in enc.parameters()) - params) / params < 0.01


def test_face_presets_and_any_timm_name():
    enc = build_encoder("efficientnet_b2", pretrained=False)
    assert enc.output_dim == 1408 and enc.image_size == 260 and enc.modality == "visual"
    other = build_encoder("test_efficientnet", pretrained=False)
    assert other.output_dim == timm.create_model("test_efficientnet", num_classes=0).num_features
    assert other.image_size == 160
    assert {"wav2vec2-large-robust", "efficientnet_b2"} <= set(list_encoders())
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("no_such_model_xyz")


def test_timm_output_width_is_what_the_backbone_returns():
    # MobileNetV3 has a pre-logits conv head: num_features (288) is not the pooled width (1024)
    enc = build_encoder("mobilenetv3_small_050", pretrained=False).eval()
    crops = torch.zeros(1, 2, 3, enc.image_size, enc.image_size)
    feats, mask = enc(crops, torch.ones(1, 2, dtype=torch.bool))
    assert feats.shape == (1, 2, enc.output_dim) and enc.output_dim == 1024


@pytest.mark.parametrize("family,stable", [("wav2vec2", True), ("hubert", False), ("wavlm", True)])
def test_transformers_folder_is_an_audio_encoder(tmp_path, family, stable):
    enc = build_encoder(tiny_speech_dir(tmp_path / family, family, stable)).eval()
    wave = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.bool)
    mask[1, 8000:] = False
    feats, fmask = enc(wave, mask)
    assert feats.shape == (2, 50, 32) and fmask.sum(1).tolist() == [50, 25]
    assert (feats[1, 25:] == 0).all()


def test_layer_choice_weighted_sum_and_freezing(tmp_path):
    d = tiny_speech_dir(tmp_path / "w")
    wave = torch.randn(1, 8000)
    layer1 = build_encoder(d, layer=1, normalize=False).eval()
    hidden = layer1.model(wave, output_hidden_states=True).hidden_states
    assert torch.allclose(layer1(wave)[0], hidden[1], atol=1e-5)
    weighted = build_encoder(d, weighted=True).train()
    weighted(wave)[0].sum().backward()
    assert weighted.layer_weights.grad is not None
    assert all(p.grad is None for p in weighted.model.parameters())  # frozen backbone
    assert not weighted.model.training  # ... and kept in eval mode
    tuned = build_encoder(d, freeze=False).train()
    tuned(wave)[0].sum().backward()
    assert tuned.model.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_speech_encoder_save_and_spec_round_trip(tmp_path):
    enc = build_encoder(tiny_speech_dir(tmp_path / "w"), weighted=True).eval()
    enc.layer_weights.data = torch.tensor([0.5, -1.0, 2.0])
    enc.save_pretrained(tmp_path / "saved")
    again = build_encoder(tmp_path / "saved").eval()
    wave = torch.randn(1, 4000)
    assert again.weighted and torch.allclose(again(wave)[0], enc(wave)[0], atol=1e-5)
    rebuilt = encoder_from_spec(encoder_spec(enc))
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in enc.parameters())
    assert enc(torch.randn(1, 100))[1].sum() >= 1  # shorter than one frame: still gives a frame


def test_face_encoder_skips_masked_frames_and_round_trips(tmp_path):
    enc = build_encoder("test_efficientnet", pretrained=False).eval()
    x = torch.randn(2, 3, 3, 64, 64)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    feats, fmask = enc(x, mask)
    assert feats.shape == (2, 3, enc.output_dim) and torch.equal(fmask, mask)
    assert (feats[~mask] == 0).all() and (feats[mask].abs().sum(-1) > 0).all()
    enc.save_pretrained(tmp_path / "face")
    again = build_encoder(tmp_path / "face").eval()
    assert torch.allclose(again(x, mask)[0], feats, atol=1e-5)


@pytest.mark.parametrize("whole_model", [True, False])
def test_hsemotion_checkpoint_import(tmp_path, whole_model):
    """A checkpoint fabricated in HSEmotion's format: torch.save of a whole timm EfficientNet-B2
    with an 8-class classifier (or its state dict)."""
    from vavl.cli import main
    from vavl.convert import load_hsemotion

    torch.manual_seed(0)
    ref = timm.create_model("efficientnet_b2", pretrained=False)
    ref.classifier = nn.Linear(1408, 8)
    ref.eval()
    path = tmp_path / "enet_b2_8.pt"
    torch.save(ref if whole_model else ref.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)  # any size goes through; 260 is what HSEmotion feeds
    with torch.no_grad():
        logits = ref(x)
        enc = load_hsemotion(path)
        feats, _ = enc(x[None])
        assert enc.image_size == 260 and enc.mean == (0.485, 0.456, 0.406) and len(enc.label_names) == 8
        assert enc.label_names[4] == "happiness"
        assert torch.allclose(enc.classify(feats[0]), logits, atol=1e-4)
    if not whole_model:
        return
    assert main(["convert", "hsemotion", str(path), "--out", str(tmp_path / "out")]) == 0
    with torch.no_grad():
        loaded = build_encoder(tmp_path / "out").eval()
        assert torch.allclose(loaded.classify(loaded(x[None])[0][0]), logits, atol=1e-4)
    # the official VAVL face extractor feeds 224 px crops (facial_features/face_extractor.py:42)
    assert main(["convert", "hsemotion", str(path), "--image-size", "224", "--out", str(tmp_path / "vavl")]) == 0
    assert build_encoder(tmp_path / "vavl").image_size == 224 and loaded.image_size == 260


def test_bad_hsemotion_file_is_a_config_error(tmp_path):
    from vavl.convert import load_hsemotion

    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="x.pt"):
        load_hsemotion(tmp_path / "x.pt")
