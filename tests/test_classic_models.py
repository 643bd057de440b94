"""Classic baselines on hand-crafted features: shapes, masks, learning a separable signal,
full models with classic encoders (raw waveform / crops in, save and reload), and training
through recipes/finetune.py on a cache of real classic features."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

import vavl
from vavl.data import write_manifest
from vavl.data.cache import FeatureCache
from vavl.encoders.base import get_encoder_preset
from vavl.models.classic.configuration_classic import image_shape
from vavl.models.classic.modeling_classic import left_align

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "sad"]
TINY = {"hidden_size": 16, "num_layers": 1, "cnn_channels": [8, 16], "dropout": 0.0}
CLASSIC = ["bilstm_mfcc.crema_d", "cnn_face_grey.crema_d", "early_fusion_mfcc_face_grey.crema_d",
           "late_fusion_bilstm_cnn.crema_d"]


def clip_media(label: int, rng: np.random.Generator, seconds=0.4, frames=4):
    """A clip whose class shows in both modalities: a low or a high tone; a face crop with
    horizontal or vertical stripes (phase jitter, pixel noise)."""
    t = np.arange(int(seconds * 16000)) / 16000
    freq = (250.0 if label == 0 else 2000.0) * rng.uniform(0.9, 1.1)
    wave = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.01 * rng.standard_normal(len(t))
    y, x = np.mgrid[0:48, 0:48]
    coord = y if label == 0 else x
    img = 0.5 + 0.4 * np.sin(2 * np.pi * coord / 8 + rng.uniform(0, 1, size=(frames, 1, 1)))
    img = np.clip(img + 0.1 * rng.standard_normal((frames, 48, 48)), 0, 1)
    crops = np.repeat(img[:, None], 3, axis=1)  # (t, 3, 48, 48) grey RGB in [0, 1]
    return torch.tensor(wave, dtype=torch.float32), torch.tensor(crops, dtype=torch.float32)


def normalise(crops, enc):
    mean, std = torch.tensor(enc.mean).view(1, 3, 1, 1), torch.tensor(enc.std).view(1, 3, 1, 1)
    return (crops - mean) / std


def featurise(n, seed):
    """Per clip: (MFCC frames, face-grey frames, label), made by the real classic encoders."""
    rng = np.random.default_rng(seed)
    mfcc, grey = get_encoder_preset("mfcc").build(False), get_encoder_preset("face-grey").build(False)
    out = []
    for i in range(n):
        wave, crops = clip_media(i % 2, rng)
        a, _ = mfcc(wave[None])
        v, _ = grey(normalise(crops, grey)[None])
        out.append((a[0], v[0], i % 2))
    return out


def test_image_shape_and_left_align():
    assert image_shape(48 * 48) == (1, 48) and image_shape(3 * 32 * 32) == (3, 32) and image_shape(2 * 4 * 4) == (2, 4)
    assert image_shape(10) == (1, 4)     # not an image: padded into 4x4
    x = torch.arange(5.0).view(1, 5, 1)
    aligned, lengths = left_align(x, torch.tensor([[False, True, False, True, True]]))
    assert aligned[0, :3, 0].tolist() == [1.0, 3.0, 4.0] and lengths.tolist() == [3]


def test_bilstm_skips_masked_frames_in_the_middle():
    model = vavl.create_model("bilstm_mfcc.crema_d", audio_dim=6, **TINY).eval()
    x = torch.randn(1, 6, 6)
    mask = torch.tensor([[True, False, True, True, False, True]])
    with torch.no_grad():
        holes = model(audio_features=x, audio_mask=mask).logits
        compact = model(audio_features=x[:, mask[0]]).logits
    assert torch.allclose(holes, compact, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIC)
def test_learns_a_separable_signal_from_classic_features(name, one_thread):
    torch.manual_seed(0)
    data = featurise(16, 0)
    model = vavl.create_model(name, id2label=dict(enumerate(CLASSES)), **TINY)
    batch = vavl.data.collate([{"id": str(i), "audio_features": a, "visual_features": v, "labels": torch.tensor(y)}
                               for i, (a, v, y) in enumerate(data)])
    inputs = vavl.data.model_inputs(batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model(**inputs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = featurise(16, 1)
    model.eval()
    tb = vavl.data.collate([{"id": str(i), "audio_features": a, "visual_features": v} for i, (a, v, _) in enumerate(test)])
    with torch.no_grad():
        pred = model(**vavl.data.model_inputs(tb)).logits.argmax(-1)
    assert (pred == torch.tensor([y for *_, y in test])).float().mean() >= 0.9, name


def test_full_model_from_raw_waveforms_and_crops(tmp_path):
    torch.manual_seed(0)
    model = vavl.create_model("late_fusion_bilstm_cnn.crema_d", audio_encoder="mfcc", visual_encoder="face-grey", **TINY).eval()
    rng = np.random.default_rng(0)
    (w0, c0), (w1, c1) = clip_media(0, rng), clip_media(1, rng, seconds=0.3, frames=3)
    waves = torch.zeros(2, len(w0))
    waves[0], waves[1, : len(w1)] = w0, w1
    amask = torch.zeros(2, len(w0), dtype=torch.bool)
    amask[0], amask[1, : len(w1)] = True, True
    grey = model.visual_encoder
    crops = torch.zeros(2, 4, 3, 48, 48)
    crops[0], crops[1, :3] = normalise(c0, grey), normalise(c1, grey)
    vmask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    with torch.no_grad():
        out = model(input_values=waves, attention_mask=amask, pixel_values=crops, pixel_mask=vmask)
        audio_only = model(input_values=waves, attention_mask=amask)
    assert out.heads_used() == ["fused"] * 2 and audio_only.heads_used() == ["audio"] * 2
    assert torch.allclose(audio_only.logits, out.audio_logits, atol=1e-5)
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        out2 = again(input_values=waves, attention_mask=amask, pixel_values=crops, pixel_mask=vmask)
    assert torch.allclose(out.logits, out2.logits, atol=1e-5)


def make_cache(root: Path) -> Path:
    cache = FeatureCache(root / "cache")
    cache.init({"audio_encoder": "mfcc", "visual_encoder": "face-grey"})
    recs = []
    for i, (a, v, y) in enumerate(featurise(24, 3)):
        split = "train" if i < 16 else "dev" if i < 20 else "test"
        cache.write(f"c{i:02d}", a, v, {})
        recs.append({"id": f"c{i:02d}", "speaker": f"{split}-{i % 4}", "label": CLASSES[y], "labels": {"intended": CLASSES[y]},
                     "folds": {"vavl-1": split}})
    write_manifest(recs, root / "manifest.jsonl")
    return root


@pytest.mark.parametrize("name", CLASSIC)
def test_trains_with_the_finetune_recipe(name, tmp_path, one_thread):
    spec = importlib.util.spec_from_file_location("finetune_recipe", ROOT / "recipes" / "finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    corpus = make_cache(tmp_path / "corpus")
    out = tmp_path / "run"
    cfg = finetune.load_config(None, [
        f"model.name={name}", f"data.manifest={corpus / 'manifest.jsonl'}", f"data.cache={corpus / 'cache'}",
        f"output_dir={out}", "data.protocol=vavl-1", f"data.labels=[{','.join(CLASSES)}]", "log.wandb=false",
        "log.progress=false", "train.batch_size=8", "train.epochs=2"] + [f"model.config.{k}={v}" for k, v in TINY.items()
                                                                       if k != "cnn_channels"])
    result = finetune.main(cfg)
    assert result["summary"]["step"] == 4
    assert json.loads((out / "results.json").read_text())["results"]["test/audio+video"]["n"] == 4
    model = AutoModel.from_pretrained(out)
    assert type(model).__name__ == type(vavl.create_model(name)).__name__ and model.config.audio_dim == 40


def test_masked_bilstm_equals_a_packed_bidirectional_lstm():
    """The export-friendly BiLSTM (left-aligned frames, backward direction reversed within each
    length) computes what torch's packed bidirectional LSTM computes."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from vavl.models.classic.configuration_classic import BiLSTMConfig
    from vavl.models.classic.modeling_classic import AudioBiLSTM, left_align

    torch.manual_seed(0)
    enc = AudioBiLSTM(BiLSTMConfig(audio_dim=6, hidden_size=5, num_layers=2, dropout=0.0)).eval()
    ref = torch.nn.LSTM(5, 5, 2, batch_first=True, bidirectional=True)
    for layer, (fwd, bwd) in enumerate(zip(enc.forward_lstms, enc.backward_lstms)):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, f"{name}_l{layer}").data.copy_(getattr(fwd, f"{name}_l0"))
            getattr(ref, f"{name}_l{layer}_reverse").data.copy_(getattr(bwd, f"{name}_l0"))
    x, mask = torch.randn(3, 7, 6), torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, ::2] = False   # holes, not only padding at the end
    with torch.no_grad():
        ours = enc(x, mask)
        aligned, lengths = left_align(x, mask)
        packed = pack_padded_sequence(enc.proj(enc.norm(aligned)), lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=7)
        valid = torch.arange(7) < lengths.unsqueeze(1)
        expected = (out * valid.unsqueeze(-1)).sum(1) / lengths.unsqueeze(1)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.equal(aligned[1, :3], x[1, mask[1]])   # real frames first, in order
