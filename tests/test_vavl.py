"""VAVL: parity with the official code on the reference fixture, checkpoint import, temporal modelling, masks."""
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vavl
from vavl.cli import main as cli_main
from vavl.convert import load_official_vavl
from vavl.core.errors import ConfigError, DataError
from vavl.models.vavl import VAVLConfig, VAVLForEmotionRecognition

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference-parity" / "vavl"
OURS = {"pred_av": "fused_logits", "pred_a": "audio_logits", "pred_v": "visual_logits", "rec_a": "audio_reconstruction",
        "rec_v": "visual_reconstruction", "rep_a": "audio_embedding", "rep_v": "visual_embedding"}


@pytest.fixture(scope="module")
def io():
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def official():
    return load_official_vavl(FIXTURE, num_heads=4, corpus="crema-d")


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(audio_dim=12, visual_dim=10, proj_dim=8, hidden_size=16, head_hidden_size=8, num_attention_heads=2,
               num_audio_layers=1, num_visual_layers=1, num_shared_layers=1, conv_kernel_size=5, num_labels=4)
    return VAVLForEmotionRecognition(VAVLConfig(**{**cfg, **kw}))


def assert_matches_official(out, io, i, row=0):
    for ref, ours in OURS.items():
        diff = (out[ours][row] - io[f"{i}.{ref}"][0]).abs().max().item()
        assert diff < 1e-5, f"clip {i}: {ours} differs from official {ref} by {diff}"


def test_parity_with_official_outputs(official, io):
    assert not official.training and official.config.framewise
    assert (official.config.hidden_size, official.config.head_hidden_size, official.config.num_shared_layers) == (64, 32, 2)
    with torch.no_grad():
        for i in range(3):
            assert_matches_official(official(audio_features=io[f"{i}.x_aud"], visual_features=io[f"{i}.x_vid"]), io, i)


def test_framewise_batch_of_padded_clips_gives_official_outputs(official, io):
    audio = [io[f"{i}.x_aud"][0] for i in range(3)]
    visual = [io[f"{i}.x_vid"][0] for i in range(3)]
    pad = torch.nn.utils.rnn.pad_sequence
    amask = pad([torch.ones(len(a), dtype=torch.bool) for a in audio], batch_first=True)
    vmask = pad([torch.ones(len(v), dtype=torch.bool) for v in visual], batch_first=True)
    with torch.no_grad():
        out = official(audio_features=pad(audio, batch_first=True), audio_mask=amask,
                       visual_features=pad(visual, batch_first=True), visual_mask=vmask)
    for i in range(3):
        assert_matches_official(out, io, i, row=i)


def test_converted_model_survives_save_and_auto_load(official, io, tmp_path):
    official.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, VAVLForEmotionRecognition) and loaded.config.framewise
    loaded.eval()
    with torch.no_grad():
        assert_matches_official(loaded(audio_features=io["1.x_aud"], visual_features=io["1.x_vid"]), io, 1)


def test_cli_convert_writes_a_loadable_folder(tmp_path, io):
    assert cli_main(["convert", "vavl", str(FIXTURE), "--num-heads", "4", "--corpus", "crema-d", "--out", str(tmp_path / "m")]) == 0
    model = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert model.config.label_names == ["angry", "sad", "disgust", "fear", "neutral", "happy"]   # six.json order
    assert model.config.prediction == "fused"   # the official VAVL test scores the fusion head
    with torch.no_grad():
        assert_matches_official(model(audio_features=io["2.x_aud"], visual_features=io["2.x_vid"]), io, 2)


def copy_fixture(tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(FIXTURE, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_dimensional_checkpoint_converts_as_regression_on_the_labels_scale(tmp_path, io):
    run = copy_fixture(tmp_path)
    for name in ("MLP_a_head.pt", "MLP_v_head.pt", "final_weights_head.pt"):  # a 3-output (arousal, dominance, valence) run
        state = torch.load(run / name, weights_only=True)
        state["out_layer.weight"], state["out_layer.bias"] = state["out_layer.weight"][:3], state["out_layer.bias"][:3]
        torch.save(state, run / name)
    assert cli_main(["convert", "vavl", str(run), "--num-heads", "4", "--corpus", "msp-improv", "--task", "regression",
                     "--out", str(tmp_path / "m")]) == 0
    model = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert model.config.task == "regression" and model.config.label_names == ["arousal", "dominance", "valence"]
    with torch.no_grad():
        out = model(audio_features=io["0.x_aud"], visual_features=io["0.x_vid"])
    for ours, ref in (("fused_logits", "pred_av"), ("audio_logits", "pred_a"), ("visual_logits", "pred_v")):
        # the official outputs are on the (x - 1) / 4 scale: vavl reports them on 1-5
        assert torch.allclose(out[ours], 4 * io[f"0.{ref}"][:, :3] + 1, atol=1e-5), ours
    with pytest.raises(DataError, match="3 outputs"):
        load_official_vavl(FIXTURE, num_heads=4, corpus="msp-improv", task="regression")


def test_checkpoint_with_positional_tables_loads(tmp_path, io):
    run = copy_fixture(tmp_path)
    state = torch.load(run / "final_acoustic_head.pt", weights_only=True)
    state["x_acoustic.encoder.layers.0.sequential.1.module.positional_encoding.pe"] = torch.randn(1, 100, 64)
    torch.save(state, run / "final_acoustic_head.pt")
    model = load_official_vavl(run, num_heads=4, corpus="crema-d")
    with torch.no_grad():
        assert_matches_official(model(audio_features=io["0.x_aud"], visual_features=io["0.x_vid"]), io, 0)


def test_bad_checkpoints_name_the_file(tmp_path):
    run = copy_fixture(tmp_path)
    with pytest.raises(ConfigError, match="num_heads=4"):
        load_official_vavl(run, num_heads=8, corpus="crema-d")
    (run / "MLP_v_head.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="MLP_v_head.pt"):
        load_official_vavl(run, num_heads=4, corpus="crema-d")
    (run / "MLP_v_head.pt").unlink()
    with pytest.raises(DataError, match="MLP_v_head.pt"):
        load_official_vavl(run, num_heads=4, corpus="crema-d")
    with pytest.raises(DataError, match="not a folder"):
        load_official_vavl(tmp_path / "nowhere", corpus="crema-d")
    state = torch.load(run / "final_weights_head.pt", weights_only=True)
    state["projav1.weight"] = state["projav1.weight"][:, :10]
    torch.save(state, run / "MLP_v_head.pt")
    with pytest.raises(DataError, match="MLP_v_head.pt.*shape"):
        load_official_vavl(run, num_heads=4, corpus="crema-d")


def test_batch_first_mode_models_time_and_framewise_does_not(official, io):
    temporal = load_official_vavl(FIXTURE, num_heads=4, framewise=False, corpus="crema-d")
    x_a, x_v = io["0.x_aud"], io["0.x_vid"]
    shuffled = torch.randperm(x_a.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = temporal(audio_features=x_a, visual_features=x_v), temporal(audio_features=x_a[:, shuffled], visual_features=x_v)
        c, d = official(audio_features=x_a, visual_features=x_v), official(audio_features=x_a[:, shuffled], visual_features=x_v)
    assert torch.isfinite(a.logits).all()
    assert not torch.allclose(a.audio_logits, b.audio_logits, atol=1e-4), "batch-first VAVL ignores frame order"
    assert torch.allclose(c.audio_logits, d.audio_logits, atol=1e-5), "framewise VAVL should be order-free"
    assert not torch.allclose(a.audio_logits, c.audio_logits, atol=1e-4)


def test_padding_does_not_leak_in_training_mode():
    """Masked BatchNorm statistics and zeroed conv inputs: in train mode (no dropout) a clip's
    real-frame outputs are the same alone and padded with garbage frames."""
    model = tiny(dropout=0.0, head_dropout=0.0).train()
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(1, 6, 12, generator=g), torch.randn(1, 4, 10, generator=g)
    alone = model(audio_features=a, visual_features=v)
    padded = model(audio_features=torch.cat([a, 50 * torch.randn(1, 9, 12, generator=g)], 1), audio_mask=torch.arange(15)[None] < 6,
                   visual_features=torch.cat([v, 50 * torch.randn(1, 5, 10, generator=g)], 1), visual_mask=torch.arange(9)[None] < 4)
    for key in ("fused_logits", "audio_logits", "visual_logits", "audio_reconstruction"):
        assert torch.allclose(alone[key], padded[key], atol=1e-5), key
    bn = model.audio_encoder.layers[0].conv.batch_norm
    assert torch.isfinite(bn.running_var).all() and bn.num_batches_tracked.item() == 2


def test_reconstruction_loss_targets_pooled_input():
    g = torch.Generator().manual_seed(0)
    batch = {"audio_features": torch.randn(2, 5, 12, generator=g), "visual_features": torch.randn(2, 3, 10, generator=g),
             "labels": torch.tensor([0, 3])}
    without = tiny(reconstruction_loss_weight=0.0).eval()(**batch).loss
    model = tiny(reconstruction_loss_weight=2.0).eval()
    out = model(**batch)
    expected = sum(((out[f"{m}_reconstruction"] - batch[f"{m}_features"].mean(1)) ** 2).mean() for m in ("audio", "visual"))
    assert torch.isclose(out.loss - without, 2.0 * expected, rtol=1e-4)


def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="task"):
        VAVLConfig(task="ranking")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        VAVLConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="conv_kernel_size"):
        VAVLConfig(conv_kernel_size=4)
    with pytest.raises(ConfigError, match="proj_dim"):
        VAVLConfig(proj_dim=0)
    with pytest.raises(ValueError, match="audio_dim"):
        tiny()(audio_features=torch.randn(1, 3, 13))


def test_registry_resolves_vavl_to_the_official_shape():
    entry = vavl.get_entry("vavl")
    assert entry.name == "vavl.official" and entry.audio_encoder == "wav2vec2-large-robust"
    model = vavl.create_model("vavl", hidden_size=16, num_attention_heads=2, proj_dim=8, head_hidden_size=8)
    assert model.config.label_names == ["angry", "sad", "disgust", "fear", "neutral", "happy"]   # official order
    assert vavl.get_entry("vavl_w2v2l_effb2").name == "vavl_w2v2l_effb2.crema_d"
    regression = vavl.create_model("vavl_w2v2l_effb2.msp_improv", hidden_size=16, num_attention_heads=2)
    assert regression.config.task == "regression" and regression.config.label_names == ["arousal", "valence", "dominance"]


def test_masked_batch_norm_matches_batch_norm_on_real_frames_and_skips_empty_batches():
    from vavl.models.vavl.conformer import MaskedBatchNorm1d

    torch.manual_seed(0)
    ref, ours = torch.nn.BatchNorm1d(4).train(), MaskedBatchNorm1d(4).train()
    x = torch.randn(3, 4, 6)
    assert torch.allclose(ref(x), ours(x, torch.ones(3, 6, dtype=torch.bool)), atol=1e-5)
    assert torch.allclose(ref.running_var, ours.running_var, atol=1e-6)
    before = ours.running_mean.clone()
    assert torch.isfinite(ours(x, torch.zeros(3, 6, dtype=torch.bool))).all()   # e.g. an audio-only batch
    assert torch.equal(ours.running_mean, before) and ours.num_batches_tracked.item() == 1


def test_missing_modality_uses_the_unimodal_head():
    model = tiny().eval()
    g = torch.Generator().manual_seed(3)
    a, v = torch.randn(2, 5, 12, generator=g), torch.randn(2, 4, 10, generator=g)
    with torch.no_grad():
        both = model(audio_features=a, visual_features=v)
        audio_only = model(audio_features=a)
        vmask = torch.tensor([[True] * 4, [False] * 4])
        mixed = model(audio_features=a, visual_features=v, visual_mask=vmask)
    assert audio_only.heads_used() == ["audio", "audio"] and torch.isfinite(audio_only.logits).all()
    assert torch.allclose(audio_only.logits, both.audio_logits, atol=1e-6)   # the audio head never sees video
    assert mixed.heads_used() == ["fused", "audio"]
    assert torch.allclose(mixed.logits[0], both.logits[0], atol=1e-6) and torch.allclose(mixed.logits[1], both.audio_logits[1], atol=1e-6)
