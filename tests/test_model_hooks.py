"""What models declare for training and loading: loss terms chosen by weight, VAVL's branches, layer
ids for layer-wise learning-rate decay, and strict loading of a saved folder."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import vavl
from vavl.nn import losses
from vavl.core.errors import ConfigError
from vavl.nn.layers import masked_mean
from vavl.models.loading import load_model
from vavl.models.vavl import VAVLConfig, VAVLForEmotionRecognition
from tiny_encoders import tiny_wav2vec2_dir


def tiny_vavl(**kw):
    torch.manual_seed(0)
    cfg = dict(audio_dim=12, visual_dim=10, proj_dim=8, hidden_size=16, head_hidden_size=8, num_attention_heads=2,
               num_audio_layers=1, num_visual_layers=1, num_shared_layers=1, conv_kernel_size=3, num_labels=4,
               reconstruction_loss_weight=0.5, class_weights=[1.0, 2.0, 0.5, 1.0])
    return VAVLForEmotionRecognition(VAVLConfig(**{**cfg, **kw})).eval()


def test_loss_weights_pick_terms_and_the_default_is_the_training_loss():
    model = tiny_vavl()
    batch = model.dummy_inputs
    labels = batch["labels"]
    with torch.no_grad():
        out = model(**batch)
        default = model(**batch, loss_weights=model.default_loss_weights()).loss
        visual = model(**batch, loss_weights={"visual": 1.0, "visual_reconstruction": 0.5}).loss
        fused = model(**batch, loss_weights={"fused": 2.0}).loss
    assert torch.equal(out.loss, default)
    # the same terms computed here from the outputs with vavl.nn.losses
    w = torch.tensor(model.config.class_weights)
    vmask = batch["visual_mask"]
    target = masked_mean(batch["visual_features"] * vmask.unsqueeze(-1), vmask)
    expect_visual = (losses.cross_entropy(out.visual_logits, labels, out.visual_present, w)
                     + 0.5 * losses.masked_mse(out.visual_reconstruction, target, vmask.any(1)))
    assert visual.item() == pytest.approx(expect_visual.item(), rel=1e-6)
    both = out.audio_present & out.visual_present
    assert fused.item() == pytest.approx(2 * losses.cross_entropy(out.fused_logits, labels, both, w).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="unknown loss term.*'visal'.*visual_reconstruction"):
        model(**batch, loss_weights={"visal": 1.0})


def test_vavl_branches_split_every_parameter_once():
    model = tiny_vavl()
    groups = {k: [p for m in mods for p in m.parameters()] for k, mods in model.branches().items()}
    assert set(groups) == {"audio", "visual", "shared", "fusion"} and all(groups.values())
    seen = [id(p) for ps in groups.values() for p in ps]
    assert len(seen) == len(set(seen)) and set(seen) == {id(p) for p in model.parameters()}
    assert any(p is model.fusion_head.out.weight for p in groups["fusion"])
    assert any(p is model.shared_norm.weight for p in groups["shared"])


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("w2v")
    torch.manual_seed(0)
    tiny_wav2vec2_dir(path, hidden=16, layers=3, conv=16)
    return path


def test_layer_ids_of_the_speech_encoder_and_of_a_full_model(w2v_dir):
    model = vavl.create_model("auxformer", audio_encoder=str(w2v_dir), visual_encoder="efficientnet_b0", pretrained_encoders=False,
                              hidden_size=16, num_layers=1, num_heads=2)
    speech = model.audio_encoder.layer_ids()
    assert set(speech) == {n for n, _ in model.audio_encoder.named_parameters()}
    for i, layer in enumerate(model.audio_encoder.model.encoder.layers, 1):
        names = {n for n, p in model.audio_encoder.named_parameters() if any(p is q for q in layer.parameters())}
        assert names and {speech[n] for n in names} == {i}
    assert speech["model.feature_extractor.conv_layers.0.conv.weight"] == 0
    face = model.visual_encoder.layer_ids()
    assert face["backbone.conv_stem.weight"] == 0 and face["backbone.conv_head.weight"] == max(face.values()) > 3
    ids = model.layer_ids()
    assert set(ids) == {n for n, _ in model.named_parameters()}
    top = max(ids.values())
    assert {ids[f"fusion.{n}"] for n, _ in model.fusion.named_parameters()} == {top}
    # both encoders' top layers line up just below the fusion model; each keeps its own depth below it
    assert ids["audio_encoder.model.encoder.layers.2.feed_forward.output_dense.weight"] == top - 1
    assert ids["visual_encoder.backbone.conv_head.weight"] == top - 1
    assert ids["audio_encoder.model.feature_extractor.conv_layers.0.conv.weight"] == top - 1 - 3


def test_load_model_is_strict(tmp_path):
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert not loaded.training and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    weights = load_file(tmp_path / "m" / "model.safetensors")
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=rf"weights do not fit.*1 missing.*{dropped}"):
        load_model(str(tmp_path / "m"))
    save_file({**weights, "extra.weight": torch.zeros(1)}, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"1 unexpected.*extra\.weight"):
        load_model(str(tmp_path / "m"))
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ConfigError, match="takes features, not media"):
        load_model(model, media=True)
