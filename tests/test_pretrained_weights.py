"""A named encoder means its pretrained weights: taken from the local Hugging Face cache offline,
one clear line when they are neither cached nor downloadable, untrained only when asked for in
words, and the weights' identity recorded (cache.json, full-model configs)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vavl
from vavl.encoders import build_encoder
from vavl.encoders.build import weights_identity
from vavl.core.errors import ConfigError
from tiny_encoders import tiny_wav2vec2

ROOT = Path(__file__).resolve().parents[1]


def offline(tmp_path, *args):
    """Run `python args...` with the hub unreachable (HF_HUB_OFFLINE) and the cache at tmp_path/hf."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def fake_hub_cache(hf_home: Path, repo: str, model) -> str:
    """Put `model` into a Hugging Face cache as if `repo` had been downloaded once (refs/main -> a snapshot)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    model.save_pretrained(folder / "snapshots" / revision)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    return revision


def test_extract_takes_a_named_encoder_from_the_local_hub_cache(tmp_path):
    from vavl.data import write_manifest
    from vavl.media import write_clip
    from media_utils import tone

    torch.manual_seed(0)
    tiny = tiny_wav2vec2()
    fake_hub_cache(tmp_path / "hf", "facebook/wav2vec2-base", tiny)
    clip = write_clip(tmp_path / "a.wav", audio=tone(1.0), sample_rate=16000)
    write_manifest([{"id": "a", "audio": str(clip), "video": None}], tmp_path / "m.jsonl")
    done = offline(tmp_path, "-m", "vavl.cli", "extract", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "cache",
                   "--audio-encoder", "wav2vec2-base", "--no-progress")
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / "cache" / "cache.json").read_text())
    weights = settings["audio_weights"]
    assert weights["weights"] == "pretrained" and weights["source"] == "facebook/wav2vec2-base"
    assert settings["audio_dim"] == 32                   # the cached network, not a fresh 768-wide one
    from vavl.encoders.speech import SpeechEncoder

    assert weights["sha256"] == weights_identity(SpeechEncoder(tiny))["sha256"]


def test_named_encoders_are_pretrained_by_default_and_say_what_to_do_offline(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import json, vavl\n"
        "from vavl.encoders import build_encoder\n"
        "from vavl.models.with_encoders import AudioVisualModel\n"
        "out = {}\n"
        "for key, make in {\n"
        "    'create_model': lambda: vavl.create_model('auxformer', audio_encoder='wav2vec2-base'),\n"
        "    'from_parts': lambda: AudioVisualModel.from_parts(vavl.create_model('auxformer'), visual_encoder='efficientnet_b2'),\n"
        "    'timm': lambda: build_encoder('resnet18', pretrained=True)}.items():\n"
        "    try:\n"
        "        make(); out[key] = 'built'\n"
        "    except vavl.core.errors.ConfigError as e:\n"
        "        out[key] = str(e)\n"
        "print(json.dumps(out))\n")
    done = offline(tmp_path, script)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for key, hub_id in (("create_model", "facebook/wav2vec2-base"), ("from_parts", "timm/efficientnet_b2.ra_in1k"),
                        ("timm", "timm/resnet18")):
        assert hub_id in out[key] and "hf download" in out[key] and "pretrained_encoders=False" in out[key], out[key]
        assert "\n" not in out[key]


def test_untrained_only_when_asked_and_the_config_says_so():
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_encoder="mfcc", visual_encoder="test_efficientnet",
                              pretrained_encoders=False, hidden_size=16, num_layers=0)
    assert model.config.visual_encoder["weights"] == "random-init" and model.config.audio_encoder["weights"] == "none"
    with pytest.raises(ConfigError, match="publishes no pretrained weights"):
        build_encoder("botnet50ts_256", pretrained=True)


def test_weights_identity_follows_the_weights():
    a = build_encoder("test_efficientnet", pretrained=False)
    torch.manual_seed(1)   # untrained weights come from their own seed (0), not from the global random state
    b = build_encoder("test_efficientnet", pretrained=False)
    c = build_encoder("test_efficientnet", pretrained=False, seed=1)
    assert weights_identity(a) == weights_identity(b)
    assert weights_identity(a)["sha256"] != weights_identity(c)["sha256"] and weights_identity(c)["seed"] == 1
    assert weights_identity(a)["weights"] == "random-init" and weights_identity(a)["source"].startswith("timm/")
    with torch.no_grad():
        b.backbone.conv_stem.weight[0, 0, 0, 0] += 1e-3
    assert weights_identity(a)["sha256"] != weights_identity(b)["sha256"]
