"""`--precision fp32|bf16|int8|auto` on the CPU: what auto picks and why, the encoders converted once
(bf16 weights, conv nets channels-last; int8 dynamic quantisation of Linear layers), `vavl predict` at
each precision, and a feature cache that never mixes precisions."""
import json

import pytest
import torch
from torch import nn

from media_utils import write_face_clip
from tiny_encoders import tiny_wav2vec2_dir
from vavl.cli import main
from vavl.core.devices import cpu_bf16_support, resolve_precision
from vavl.core.errors import ConfigError, DataError
from vavl.encoders import build_encoder
from vavl.encoders.precision import apply_precision, fold_batch_norms


def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively():
    assert resolve_precision("auto", "cpu", flags={"avx2", "amx_bf16", "amx_tile"}) == "bf16"
    assert resolve_precision("auto", "cpu", flags={"avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_precision("auto", "cpu", flags={"avx", "avx2", "avx512f"}) == "fp32"   # AVX-512 without BF16
    assert resolve_precision("auto", "cuda", flags={"amx_bf16"}) == "fp32"                 # GPUs: their own --bf16
    assert cpu_bf16_support({"avx2"}) == (False, "no AMX / AVX-512 BF16 in the CPU flags: bf16 would be emulated, "
                                                 "slower than fp32")
    assert resolve_precision("int8", "cpu") == "int8" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="int8 is dynamic quantisation for the CPU"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ConfigError, match="choose one of fp32, bf16, int8, auto"):
        resolve_precision("fp8", "cpu")


def test_vavl_env_says_what_auto_means_here(capsys):
    flags = open("/proc/cpuinfo").read()
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["cpu_precision"]
    assert info["auto"] == ("bf16" if native else "fp32") == resolve_precision("auto", "cpu")
    assert main(["env"]) == 0
    assert f'precision "auto" (CPU)    {info["auto"]} (' in capsys.readouterr().out


def _relative(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_encoders_are_converted_once_and_stay_close_to_fp32(tmp_path, one_thread):
    speech = build_encoder(tiny_wav2vec2_dir(tmp_path / "speech", hidden=64, conv=64)).eval()
    torch.manual_seed(0)
    face = build_encoder("test_efficientnet", image_size=64, pretrained=False).eval()
    wave, crops = torch.randn(2, 8000), torch.randn(1, 3, 3, 64, 64)
    with torch.inference_mode():
        ref = speech(wave)[0], face(crops)[0]
    converted = {}
    for precision in ("bf16", "int8"):
        s = apply_precision(build_encoder(str(tmp_path / "speech")), precision)
        torch.manual_seed(0)
        f = apply_precision(build_encoder("test_efficientnet", image_size=64, pretrained=False), precision)
        with torch.inference_mode():
            got = s(wave)[0], f(crops)[0]
        converted[precision] = (s, f)
        assert s.precision == f.precision == precision
        for r, g in zip(ref, got):
            assert g.shape == r.shape and torch.isfinite(g.float()).all()
            assert _relative(g, r) < 0.05, (precision, g.shape, _relative(g, r))
    s, f = converted["bf16"]   # the weights themselves are bf16 (not autocast); the conv net is channels-last
    assert {p.dtype for p in s.parameters()} == {p.dtype for p in f.parameters()} == {torch.bfloat16}
    conv = next(m for m in f.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    s, f = converted["int8"]   # every Linear of the transformer quantised; the convolutions stay fp32
    assert not any(isinstance(m, nn.Linear) for m in s.modules())
    quantised = [m for m in s.modules() if "quantized.dynamic" in type(m).__module__]
    assert quantised and {m.weight().qscheme() for m in quantised} == {torch.per_channel_affine}   # a scale per row
    assert all(m.weight().q_per_channel_scales().numel() == m.out_features for m in quantised)
    assert {p.dtype for p in f.parameters()} == {torch.float32}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())   # folded into the convolutions
    conv = next(m for m in f.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.bias is not None
    with pytest.raises(ConfigError, match="already bf16"):
        apply_precision(converted["bf16"][0], "int8")


def test_batch_norms_fold_into_their_convolutions_with_the_same_output(one_thread):
    torch.manual_seed(0)
    face = build_encoder("test_efficientnet", image_size=64, pretrained=False).eval()
    norms = [m for m in face.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:   # statistics far from the identity, so a wrong fold shows
        m.running_mean.normal_(0, 0.5), m.running_var.uniform_(0.3, 3), m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.normal_(0, 0.3)
    crops = torch.randn(2, 3, 3, 64, 64)
    with torch.inference_mode():
        ref = face(crops)[0]
    assert fold_batch_norms(face.backbone) == len(norms) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in face.modules())
    with torch.inference_mode():
        assert _relative(face(crops)[0], ref) < 1e-5
    shared = nn.Conv2d(3, 3, 1)   # a convolution called twice, or one whose output has two users: left alone

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = shared, nn.BatchNorm2d(3).eval()

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert fold_batch_norms(Twice()) == 0


def test_int8_copies_a_callers_encoder_and_quantises_one_it_owns_in_place(tmp_path, one_thread):
    from vavl.data import write_manifest
    from vavl.data.extract import extract

    speech = build_encoder(tiny_wav2vec2_dir(tmp_path / "speech", hidden=64, conv=64)).eval()
    linears = sum(isinstance(m, nn.Linear) for m in speech.modules())
    copy = apply_precision(speech, "int8")
    assert copy is not speech and getattr(speech, "precision", "fp32") == "fp32"
    assert sum(isinstance(m, nn.Linear) for m in speech.modules()) == linears > 0   # the caller's: untouched
    own = apply_precision(speech, "int8", inplace=True)
    assert own is speech and own.precision == "int8" and not any(isinstance(m, nn.Linear) for m in speech.modules())
    speech = build_encoder(str(tmp_path / "speech")).eval()   # extract given a module: it encodes with a copy
    clip_path = write_face_clip(tmp_path / "a.mp4", seconds=1.0, fps=10)
    manifest = write_manifest([{"id": "a", "audio": str(clip_path), "video": str(clip_path), "label": "happy",
                                "speaker": "s1"}], tmp_path / "m.jsonl")
    done = extract(manifest, tmp_path / "cache", speech, None, precision="int8", progress=False, log=open("/dev/null", "w"))
    assert done["failed"] == 0 and sum(isinstance(m, nn.Linear) for m in speech.modules()) == linears


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_face_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=1.0, fps=10)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "auto"])
def test_predict_runs_at_each_precision(tiny_full_model_dir, clip, precision, capsys):
    assert main(["predict", str(clip), "--model", tiny_full_model_dir, "--json", "--precision", precision]) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["precision"] == resolve_precision(precision, "cpu")
    assert r["label"] in ("angry", "happy", "neutral") and r["modalities"] == ["audio", "visual"]
    assert abs(sum(r["scores"].values()) - 1) < 1e-4 and r["timeline"]


def test_predict_keeps_a_model_object_as_it_was_and_refuses_bf16_autocast_with_int8(tiny_full_model_dir, clip):
    import vavl
    from vavl.models.loading import load_model

    model = load_model(tiny_full_model_dir)
    r = vavl.predict(clip, model=model, precision="int8")
    assert r["precision"] == "int8" and getattr(model, "precision", "fp32") == "fp32"
    assert any(isinstance(m, nn.Linear) for m in model.audio_encoder.modules())   # the caller's model: not quantised
    with pytest.raises(ConfigError, match="--bf16 autocasts fp32 weights"):
        vavl.predict(clip, model=model, precision="int8", bf16=True)


def test_the_cache_records_the_resolved_precision_and_refuses_to_mix(tmp_path, one_thread):
    from vavl.data import write_manifest
    from vavl.data.cache import FeatureCache
    from vavl.data.extract import extract

    clip_path = write_face_clip(tmp_path / "a.mp4", seconds=1.0, fps=10)
    manifest = tmp_path / "m.jsonl"
    write_manifest([{"id": "a", "audio": str(clip_path), "video": str(clip_path), "label": "happy",
                     "speaker": "s1"}], manifest)
    speech = tiny_wav2vec2_dir(tmp_path / "speech")
    quiet = {"progress": False, "log": open("/dev/null", "w")}
    done = extract(manifest, tmp_path / "int8", speech, None, precision="int8", **quiet)
    assert done["failed"] == 0 and FeatureCache(tmp_path / "int8").settings["precision"] == "int8"
    with pytest.raises(DataError, match=r"other settings \(precision: \['int8'\] vs \['fp32'\]\)"):
        extract(manifest, tmp_path / "int8", speech, None, precision="fp32", **quiet)
    extract(manifest, tmp_path / "auto", speech, None, precision="auto", **quiet)
    assert FeatureCache(tmp_path / "auto").settings["precision"] == resolve_precision("auto", "cpu")   # never "auto"
    code = main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "int8"), "--audio-encoder", speech,
                 "--precision", "bf16", "--no-progress"])
    assert code == 2
