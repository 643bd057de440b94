"""AuxFormer: parity with the official model (fixture made by running ilucasgoncalves/AuxFormer),
conversion + save/load, batch and padding invariance, missing modality, config checks, CLI."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vavl
from vavl.cli import main as cli
from vavl.convert import load_official_auxformer
from vavl.core.errors import ConfigError, DataError
from vavl.nn.attention import attention_mask
from vavl.models.auxformer import AuxFormerConfig, AuxFormerForEmotionRecognition
from vavl.models.auxformer.modeling_auxformer import positions

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference-parity" / "auxformer"
HEADS = {"fused_logits": "output", "audio_logits": "output_a_aux", "visual_logits": "output_v_aux"}
OFFICIAL_CREMA_D = ["angry", "sad", "disgust", "fear", "neutral", "happy"]  # config/config_files/crema-d/six.json


def official_prediction(io) -> torch.Tensor:
    """What the official test.py predicts: the mean of the three heads."""
    return (io["output"] + io["output_a_aux"] + io["output_v_aux"]) / 3
TINY = dict(audio_dim=8, visual_dim=6, hidden_size=16, num_heads=4, num_layers=2, aux_hidden_sizes=[12, 8], num_labels=4)


def tiny(**kw):
    torch.manual_seed(0)
    return AuxFormerForEmotionRecognition(AuxFormerConfig(**{**TINY, **kw})).eval()


@pytest.fixture(scope="module")
def official():
    return load_official_auxformer(FIXTURE / "final_head.pt", corpus="crema-d"), load_file(FIXTURE / "io.safetensors")


def outputs(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def test_parity_with_official_outputs(official):
    model, io = official
    cfg = model.config
    assert (cfg.audio_dim, cfg.visual_dim, cfg.hidden_size, cfg.num_layers, cfg.num_labels) == (1024, 50, 50, 5, 6)
    out = outputs(model, audio_features=io["x_aud"], visual_features=io["x_vid"])
    for ours, ref in HEADS.items():
        err = (out[ours] - io[ref]).abs().max().item()
        assert err < 1e-5, f"{ours} differs from official {ref} by {err}"
    assert (out.logits - official_prediction(io)).abs().max().item() < 1e-5   # the official three-head mean
    assert out.heads_used() == ["heads_mean"] * 3


def test_training_path_matches_official_when_dropout_draws_nothing(official):
    # train mode runs other kernels (manual attention with dropout); with p so small that no element
    # is ever dropped it must give the official numbers too
    model, io = official
    tiny_p = {k: 1e-9 for k in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")}
    train = AuxFormerForEmotionRecognition(AuxFormerConfig(**{**model.config.to_dict(), **tiny_p}))
    train.load_state_dict(model.state_dict())
    out = train.train()(audio_features=io["x_aud"], visual_features=io["x_vid"], labels=torch.tensor([0, 1, 2]))
    for ours, ref in HEADS.items():
        assert torch.allclose(out[ours], io[ref], atol=1e-5), ours
    out.loss.backward()


def test_converted_model_survives_save_and_automodel(official, tmp_path):
    model, io = official
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AuxFormerForEmotionRecognition) and loaded.config.official_positions
    out = outputs(loaded, audio_features=io["x_aud"], visual_features=io["x_vid"])
    for ours, ref in HEADS.items():
        assert torch.allclose(out[ours], io[ref], atol=1e-5), ours


def test_converted_checkpoint_predicts_the_official_class_with_the_official_names(tmp_path):
    io = load_file(FIXTURE / "io.safetensors")
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--corpus", "crema-d", "--out", str(tmp_path / "m")]) == 0
    model = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert model.config.label_names == OFFICIAL_CREMA_D and model.config.prediction == "heads_mean"
    out = outputs(model, audio_features=io["x_aud"], visual_features=io["x_vid"])
    official = [OFFICIAL_CREMA_D[i] for i in official_prediction(io).argmax(-1).tolist()]
    assert [model.config.id2label[i] for i in out.logits.argmax(-1).tolist()] == official
    # the rule matters here: on clip 1 the fused head alone would say "fear", the official mean says "sad"
    assert out.fused_logits.argmax(-1).tolist() != out.logits.argmax(-1).tolist()


def test_converter_needs_to_know_what_the_outputs_are(tmp_path, capsys):
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--corpus" in err and "final_head.pt" in err
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--labels", "a,b,c", "--out", str(tmp_path / "m")]) == 2
    assert "6 outputs but 3 class names" in capsys.readouterr().err
    labels = "w,x,y,z,u,v"
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--labels", labels, "--out", str(tmp_path / "m")]) == 0
    assert AutoModel.from_pretrained(tmp_path / "m").config.label_names == labels.split(",")


def test_cli_convert_and_missing_file(tmp_path, capsys):
    assert cli(["convert", "auxformer", str(FIXTURE / "final_head.pt"), "--corpus", "crema-d", "--out", str(tmp_path / "m")]) == 0
    assert AutoModel.from_pretrained(tmp_path / "m").config.model_type == "vavl_auxformer"
    capsys.readouterr()
    assert cli(["convert", "auxformer", str(tmp_path / "nope.pt"), "--corpus", "crema-d", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.pt" in err


def test_wrong_checkpoint_names_the_file(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(DataError, match="notes.pt"):
        load_official_auxformer(text, corpus="crema-d")
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(DataError, match="other.pt"):
        load_official_auxformer(other, corpus="crema-d")
    with pytest.raises(DataError, match="final_head.pt.*num-heads"):
        load_official_auxformer(FIXTURE / "final_head.pt", num_heads=7, corpus="crema-d")


def test_same_clip_alone_in_a_batch_and_padded():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    a, v = torch.randn(1, 9, 8, generator=g), torch.randn(1, 5, 6, generator=g)
    alone = outputs(model, audio_features=a, visual_features=v)
    audio, visual = torch.randn(3, 12, 8, generator=g), torch.randn(3, 7, 6, generator=g)
    audio[1, :9], visual[1, :5] = a[0], v[0]
    amask, vmask = torch.ones(3, 12, dtype=torch.bool), torch.ones(3, 7, dtype=torch.bool)
    amask[1, 9:], vmask[1, 5:], amask[0, 10:], vmask[2] = False, False, False, False
    batch = outputs(model, audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask)
    for key in ("fused_logits", "audio_logits", "visual_logits", "fused_embedding", "audio_embedding"):
        assert torch.allclose(alone[key][0], batch[key][1], atol=1e-5), key
    # a masked frame in the middle counts as cut out: positions and the future mask come from the mask
    holes = torch.ones(1, 9, dtype=torch.bool)
    holes[0, 3] = False
    masked = outputs(model, audio_features=a, audio_mask=holes, visual_features=v)
    cut = outputs(model, audio_features=torch.cat([a[:, :3], a[:, 4:]], 1), visual_features=v)
    assert torch.allclose(masked.fused_logits, cut.fused_logits, atol=1e-5)


def test_missing_modality_never_nan_and_routes_to_aux_heads():
    model = tiny()
    audio, visual = torch.randn(3, 6, 8), torch.randn(3, 4, 6)
    amask, vmask = torch.ones(3, 6, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    vmask[1], amask[2] = False, False
    out = outputs(model, audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask)
    assert out.heads_used() == ["fused", "audio", "visual"]
    assert all(torch.isfinite(out[k]).all() for k in ("logits", "fused_logits", "audio_logits", "visual_logits"))
    assert torch.equal(out.logits[1], out.audio_logits[1]) and torch.equal(out.logits[2], out.visual_logits[2])
    only_audio = outputs(model, audio_features=audio[:1])
    assert only_audio.heads_used() == ["audio"] and torch.isfinite(only_audio.fused_logits).all()
    assert torch.allclose(only_audio.audio_logits, out.audio_logits[:1], atol=1e-5)
    model.train()
    loss = model(audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask,
                 labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.fusion.a_mem.layers[0].alpha.grad is not None


@pytest.mark.parametrize("field, value", [("num_heads", 5), ("num_layers", 0), ("attn_dropout", 1.5),
                                          ("aux_hidden_sizes", [8, 0]), ("aux_repeats", 0), ("hidden_size", -16)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        AuxFormerConfig(**{**TINY, field: value})


def test_future_mask_matches_official_formula():
    # official: triu(-inf, 1 + |tk - tq|) on the padded (tq, tk) grid
    for tq, tk in ((5, 5), (4, 7), (7, 3)):
        ref = ~torch.isinf(torch.triu(torch.full((tq, tk), float("-inf")), 1 + abs(tk - tq)))
        ours = attention_mask(torch.ones(2, tq, dtype=torch.bool), torch.ones(2, tk, dtype=torch.bool), causal=True)
        assert torch.equal(ours, ref)
        padded = attention_mask(torch.ones(1, tq + 2, dtype=torch.bool).index_fill(1, torch.tensor([tq, tq + 1]), False),
                                torch.ones(1, tk, dtype=torch.bool), causal=True)
        assert torch.equal(padded[0, 0, :tq], ref)


def test_official_positions_follow_feature_zero():
    x = torch.randn(1, 4, 3)
    x[0, 1, 0] = 0.0
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert positions(x, mask, official=True).tolist() == [[1, 0, 3, 4]]
    assert positions(x, mask, official=False).tolist() == [[1, 2, 3, 4]]


def test_zoo_entries():
    assert vavl.get_entry("auxformer").name == "auxformer.official"
    crema = vavl.get_entry("auxformer_w2v2l_effb2.crema_d")
    assert (crema.audio_encoder, crema.visual_encoder) == ("wav2vec2-large-robust", "efficientnet_b2")
    model = vavl.create_model("auxformer_w2v2l_effb2.msp_improv", num_layers=1)
    assert model.config.task == "regression" and model.config.label_names == ["arousal", "valence", "dominance"]
    assert vavl.create_model("auxformer_w2v2l_effb2.crema_d", num_layers=1).config.label_names[0] == "angry"
