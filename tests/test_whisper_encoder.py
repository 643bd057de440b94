"""Whisper encoders: frames follow each clip's own length (50/s, no padding to 30 s), a clip's
features do not depend on its batch, a full 30 s input matches transformers' WhisperEncoder,
layer choice / weighted sums, loading from the hub layout and saving."""
import pytest
import torch
from transformers import WhisperFeatureExtractor, WhisperModel

from tiny_encoders import tiny_whisper_dir
from vavl.encoders import build_encoder
from vavl.encoders.build import encoder_from_spec, encoder_spec
from vavl.core.errors import ConfigError

SR = 16000


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    return tiny_whisper_dir(tmp_path_factory.mktemp("whisper") / "hub")


def tiny(hub_dir, **options):
    """The whisper-small preset, its weights loaded from a folder in the hub's layout."""
    return build_encoder("whisper-small", pretrained=True, source=hub_dir, **options).eval()


def test_frames_follow_the_clip_at_50_per_second(hub_dir):
    enc = tiny(hub_dir)
    assert enc.frame_rate == 50.0 and enc.output_dim == 32 and enc.sample_rate == SR
    wave = torch.randn(3, int(2.5 * SR))
    mask = torch.ones_like(wave, dtype=torch.bool)
    mask[1, SR:] = False
    mask[2, int(0.3 * SR):] = False
    with torch.no_grad():
        feats, fmask = enc(wave, mask)
    assert feats.shape == (3, 125, 32) and fmask.sum(1).tolist() == [125, 50, 15]   # 2.5 s, 1 s, 0.3 s
    assert (feats[~fmask] == 0).all() and (feats[fmask].abs().sum(-1) > 0).all()


def test_a_clip_does_not_depend_on_the_clips_batched_with_it(hub_dir):
    enc = tiny(hub_dir)
    g = torch.Generator().manual_seed(0)
    clips = [torch.randn(2 * SR, generator=g), torch.randn(SR, generator=g), torch.randn(2 * SR, generator=g)]
    wave = torch.zeros(3, 2 * SR)
    mask = torch.zeros(3, 2 * SR, dtype=torch.bool)
    for i, c in enumerate(clips):
        wave[i, : len(c)], mask[i, : len(c)] = c, True
    wave[1, SR:] = 5.0   # garbage in the padding
    with torch.no_grad():
        batch, bmask = enc(wave, mask)
        for i, c in enumerate(clips):
            alone, _ = enc(c[None])
            assert torch.allclose(batch[i, bmask[i]], alone[0], atol=1e-6), f"clip {i} changed with its batch"


def test_a_30_s_clip_matches_transformers_whisper_encoder(hub_dir):
    """At Whisper's own input length nothing is sliced: the outputs are transformers' outputs."""
    ref = WhisperModel.from_pretrained(hub_dir).encoder.eval()
    fe = WhisperFeatureExtractor.from_pretrained(hub_dir)
    wave = 0.1 * torch.randn(1, 30 * SR, generator=torch.Generator().manual_seed(1))
    feats = fe(wave[0].numpy(), sampling_rate=SR, return_tensors="pt")["input_features"]   # padded to 30 s = none
    with torch.no_grad():
        out = ref(feats, output_hidden_states=True)
        assert torch.allclose(tiny(hub_dir)(wave)[0], out.last_hidden_state, atol=1e-5)
        for layer in (0, 1, 2):
            assert torch.allclose(tiny(hub_dir, layer=layer)(wave)[0], out.hidden_states[layer], atol=1e-5), layer


def test_a_clip_longer_than_30_s_is_encoded_in_30_s_pieces(hub_dir):
    enc = tiny(hub_dir)
    g = torch.Generator().manual_seed(2)
    wave = 0.1 * torch.randn(1, 31 * SR, generator=g)
    with torch.no_grad():
        feats, fmask = enc(wave)
        first, _ = enc(wave[:, : 30 * SR])
        second, _ = enc(wave[:, 30 * SR:])
    assert fmask.sum() == 1550
    assert torch.allclose(feats[0], torch.cat([first[0], second[0]]), atol=1e-6)


def test_weighted_layers_learn_while_the_backbone_stays_frozen(hub_dir):
    enc = tiny(hub_dir, weighted=True).train()
    assert enc.layer_weights.shape == (3,)
    enc(torch.randn(1, SR))[0].sum().backward()
    assert enc.layer_weights.grad is not None and enc.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.model.parameters()) and not enc.model.training
    tuned = tiny(hub_dir, freeze=False).train()
    tuned(torch.randn(1, SR))[0].sum().backward()
    assert tuned.model.layers[0].self_attn.q_proj.weight.grad is not None
    with pytest.raises(ConfigError, match="hidden states 0..2"):
        tiny(hub_dir, layer=3)


def test_save_load_and_spec_round_trip(hub_dir, tmp_path):
    enc = tiny(hub_dir, weighted=True)
    enc.layer_weights.data = torch.tensor([0.5, -1.0, 2.0])
    enc.save_pretrained(tmp_path / "saved")
    again = build_encoder(tmp_path / "saved").eval()
    wave = torch.randn(1, SR)
    with torch.no_grad():
        assert again.weighted and torch.allclose(again(wave)[0], enc(wave)[0], atol=1e-6)
        plain = build_encoder(hub_dir).eval()   # a transformers Whisper folder is an encoder too
        assert torch.allclose(plain(wave)[0], tiny(hub_dir)(wave)[0], atol=1e-6)
    rebuilt = encoder_from_spec(encoder_spec(enc))
    assert type(rebuilt) is type(enc) and rebuilt.weighted
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in enc.parameters())
