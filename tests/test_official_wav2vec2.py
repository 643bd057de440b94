"""`vavl convert wav2vec2-official`: a tiny Wav2Vec2Model saved the way the official AuxFormer / VAVL
wrappers save theirs (`torch.save(wav2vec_model.state_dict(), "final_wav2vec.pt")`, the positional
convolution's weight norm in the older weight_g / weight_v naming) converts into a speech encoder
folder whose features are the model's last hidden states on the waveform z-scored with the given
global statistics, and `vavl extract --audio-encoder DIR` extracts with it."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from vavl.cli import main
from vavl.core.errors import DataError
from vavl.convert.official_wav2vec2 import load_official_wav2vec2
from vavl.encoders import build_encoder

MEAN, STD = 0.01, 0.2


def official_file(tmp_path):
    """A small wav2vec2 with large-robust's front end (7 convolutions, strides 5,2,...,2) saved as a
    plain state dict with weight_g / weight_v (as older transformers named them)."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=16, intermediate_size=48,
                            conv_dim=(8,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
    model = Wav2Vec2Model(config).eval()
    old = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
           for k, v in model.state_dict().items()}
    assert any(k.endswith("weight_g") for k in old)
    torch.save(old, tmp_path / "final_wav2vec.pt")
    return model, tmp_path / "final_wav2vec.pt"


def test_converted_encoder_gives_the_official_features_with_the_global_z_scoring(tmp_path):
    model, path = official_file(tmp_path)
    out = tmp_path / "encoder"
    assert main(["convert", "wav2vec2-official", str(path), "--wave-mean", str(MEAN), "--wave-std", str(STD),
                 "--out", str(out)]) == 0
    enc = build_encoder(str(out)).eval()
    assert enc.wave_stats == [MEAN, STD] and enc.output_dim == 32
    wave = torch.randn(2, 8000) * 0.3 + 0.05
    with torch.no_grad():
        feats, mask = enc(wave)
        want = model((wave - MEAN) / (STD + 1e-6)).last_hidden_state
    assert mask.all() and (feats - want).abs().max() < 1e-5
    per_clip = load_official_wav2vec2(path)          # without statistics: each clip z-scored alone
    assert per_clip.wave_stats is None and per_clip.normalize


def test_extract_takes_the_converted_folder(tmp_path):
    from vavl.data.cache import FeatureCache
    from vavl.data.extract import extract
    from vavl.data.prepare import prepare
    from vavl.data.synthetic import make_corpus

    model, path = official_file(tmp_path)
    load_official_wav2vec2(path, wave_mean=MEAN, wave_std=STD).save_pretrained(tmp_path / "encoder")
    make_corpus("crema-d", tmp_path / "corpus", n_speakers=1, clips_per_class=1, duration=1.0)
    quiet = open(os.devnull, "w")
    prepare("crema-d", tmp_path / "corpus", tmp_path / "m.jsonl", log=quiet)
    summary = extract(tmp_path / "m.jsonl", tmp_path / "cache", str(tmp_path / "encoder"), None, progress=False, log=quiet)
    assert summary["failed"] == 0 and summary["cached"] > 0
    cache = FeatureCache(tmp_path / "cache")
    assert cache.settings["audio_dim"] == 32 and cache.settings["audio_wave_stats"] == [MEAN, STD]


def test_bad_files_are_one_line_data_errors(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "code.pt").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(DataError, match="weights-only"):
        load_official_wav2vec2(tmp_path / "code.pt")
    torch.save({"encoder.layers.0.attention.q_proj.weight": torch.zeros(4, 4)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="Wav2Vec2Model"):
        load_official_wav2vec2(tmp_path / "other.pt")
    _, path = official_file(tmp_path)
    with pytest.raises(DataError, match="both"):
        load_official_wav2vec2(path, wave_mean=0.0)
    assert main(["convert", "wav2vec2-official", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == 2
    assert np.isfinite(MEAN)
