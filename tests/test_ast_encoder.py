"""AST encoder: one embedding per window (window / hop in seconds), a window filling the model's
input equals transformers' ASTModel, shorter windows use the first columns of the positional
table, clips are independent of their batch, saving and bad options."""
import pytest
import torch
from transformers import ASTFeatureExtractor, ASTForAudioClassification

from tiny_encoders import AST_MAX_FRAMES, tiny_ast_dir
from vavl.encoders import build_encoder
from vavl.core.errors import ConfigError

SR = 16000
FULL = (400 + (AST_MAX_FRAMES - 1) * 160) / SR   # seconds whose Kaldi fbank has exactly max_length frames


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    return tiny_ast_dir(tmp_path_factory.mktemp("ast") / "hub")


def tiny(hub_dir, **options):
    return build_encoder("ast-audioset", pretrained=True, source=hub_dir, **options).eval()


def test_one_embedding_per_window(hub_dir):
    enc = tiny(hub_dir, window=0.3, hop=0.2)
    assert enc.frame_rate == 5.0 and enc.output_dim == 32
    wave = torch.randn(3, SR)
    mask = torch.ones_like(wave, dtype=torch.bool)
    mask[1, int(0.3 * SR):] = False   # exactly one window
    mask[2, int(0.05 * SR):] = False  # shorter than a window: one, padded in the fbank
    with torch.no_grad():
        feats, fmask = enc(wave, mask)
    # 1 s, windows of 0.3 s every 0.2 s: starts 0, .2, .4, .6 and .8 (the last one 0.2 s long)
    assert feats.shape == (3, 5, 32) and fmask.sum(1).tolist() == [5, 1, 1]
    assert (feats[~fmask] == 0).all()
    assert enc.windows(SR)[-1] == (int(0.8 * SR), SR)


def test_a_full_window_matches_transformers_ast(hub_dir):
    ref = ASTForAudioClassification.from_pretrained(hub_dir).audio_spectrogram_transformer.eval()
    fe = ASTFeatureExtractor.from_pretrained(hub_dir)
    wave = torch.randn(1, round(FULL * SR), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(fe(wave[0].numpy(), sampling_rate=SR, return_tensors="pt")["input_values"]).pooler_output
        feats, _ = tiny(hub_dir, window=FULL, hop=FULL)(wave)
    # transformers computes the fbank with torchaudio when it is installed, with numpy otherwise (2e-5 apart)
    assert feats.shape == (1, 1, 32) and torch.allclose(feats[0, 0], expected[0], atol=1e-4)


def test_a_short_window_sees_only_the_first_positions(hub_dir):
    """A 0.3 s window: transformers' AST layers on the window's own fbank, with the first t
    columns of each frequency row of the positional table."""
    enc = tiny(hub_dir, window=0.3, hop=0.3)
    ref = ASTForAudioClassification.from_pretrained(hub_dir).audio_spectrogram_transformer.eval()
    wave = torch.randn(1, int(0.3 * SR), generator=torch.Generator().manual_seed(1))
    window_extractor = type(enc.feature_extractor).from_dict({**enc.feature_extractor.to_dict(), "max_length": enc.window_frames})
    fbank = window_extractor(wave[0].numpy(), sampling_rate=SR, return_tensors="pt")["input_values"]
    emb = ref.embeddings
    f, t_max = emb.get_shape(ref.config)
    t = (fbank.shape[1] - ref.config.patch_size) // ref.config.time_stride + 1
    with torch.no_grad():
        grid = emb.position_embeddings[0, 2:].view(f, t_max, -1)[:, :t].reshape(f * t, -1)
        tokens = torch.cat([emb.cls_token[0], emb.distillation_token[0], emb.patch_embeddings(fbank)[0]])
        h = (tokens + torch.cat([emb.position_embeddings[0, :2], grid]))[None]
        for layer in ref.layers:
            h = layer(h, None)
        h = ref.layernorm(h)
        feats, _ = enc(wave)
    assert torch.allclose(feats[0, 0], (h[0, 0] + h[0, 1]) / 2, atol=1e-4)


def test_a_clip_does_not_depend_on_its_batch(hub_dir):
    enc = tiny(hub_dir, window=0.25, hop=0.25)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(SR, generator=g), torch.randn(SR // 2, generator=g)
    wave = torch.stack([a, torch.cat([b, torch.full((SR // 2,), 3.0)])])
    mask = torch.ones(2, SR, dtype=torch.bool)
    mask[1, SR // 2:] = False
    with torch.no_grad():
        batch, bmask = enc(wave, mask)
        assert torch.allclose(batch[1, bmask[1]], enc(b[None])[0][0], atol=1e-6)
        assert torch.allclose(batch[0], enc(a[None])[0][0], atol=1e-6)


def test_windows_the_model_cannot_take_are_config_errors(hub_dir, tmp_path):
    with pytest.raises(ConfigError, match="fbank frames"):
        tiny(hub_dir, window=1.1)          # 108 frames > this tiny model's 100
    with pytest.raises(ConfigError, match="window"):
        tiny(hub_dir, window=0.1)          # shorter than one patch
    enc = tiny(hub_dir, window=0.3, hop=0.1)
    enc.save_pretrained(tmp_path / "saved")
    again = build_encoder(tmp_path / "saved").eval()
    wave = torch.randn(1, SR)
    assert (again.window, again.hop) == (0.3, 0.1)
    with torch.no_grad():
        assert torch.allclose(again(wave)[0], enc(wave)[0], atol=1e-6)
