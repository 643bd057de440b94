"""The installed stack works: every package vavl uses at run time imports and does one real thing.

A mismatched build (a torchvision compiled against another torch, say) fails here, with the
package and the versions found, instead of deep inside some other test.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

from vavl.cli.env import PACKAGES, version


def stack() -> str:
    return ", ".join(f"{name} {version(name) or 'missing'}" for name in PACKAGES if name != "vavl")


def run_or_fail(package: str, check) -> None:
    try:
        check()
    except Exception as err:  # what broke, whatever it was, named with the versions
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        pytest.fail(f"{package} {version(package) or '(not installed)'} does not work in this environment: "
                    f"{type(err).__name__}: {first}\ninstalled: {stack()}\n"
                    "reinstall the tested versions: pip install -c constraints.txt -e . (docs/install.md)", pytrace=False)


def tone(seconds: float = 0.5, rate: int = 16000):
    import torch

    t = torch.arange(int(seconds * rate)) / rate
    return torch.sin(2 * math.pi * 440 * t).unsqueeze(0)


def test_torch_computes():
    def check():
        import torch

        x = torch.randn(8, 8)
        assert torch.allclose(x @ torch.eye(8), x)

    run_or_fail("torch", check)


def test_torchvision_ops_load():
    def check():
        import torch
        import torchvision

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
        keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)  # a compiled op
        assert keep.tolist() == [0, 2]

    run_or_fail("torchvision", check)


def test_vavl_needs_no_torchaudio():
    """A torchaudio built for another torch cannot even be imported; vavl's fbank, MFCC and resampling
    are its own (vavl/media/spectral.py), so its features work with torchaudio made unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torchaudio'] = None\n"
            "import numpy as np, torch\n"
            "from vavl.encoders.build import build_encoder\n"
            "from vavl.media.arrays import ArrayClip\n"
            "wave = torch.sin(torch.arange(16000) / 16000 * 2 * 3.14159 * 440).unsqueeze(0)\n"
            "for name in ('mfcc', 'mfcc-deltas', 'fbank'):\n"
            "    out, mask = build_encoder(name)(wave, torch.ones_like(wave, dtype=torch.bool))\n"
            "    assert out.shape[1] > 90 and bool(torch.isfinite(out).all()), name\n"
            "clip = ArrayClip(audio=np.zeros(44100, np.float32), sample_rate=44100)\n"
            "print(clip.window(0.0, None, 5.0, 16000, 640).audio.shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(16000,)"


def test_transformers_builds_a_model():
    def check():
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                                num_conv_pos_embedding_groups=2)
        with torch.no_grad():
            out = Wav2Vec2Model(config).eval()(tone(0.1)).last_hidden_state
        assert out.shape[-1] == 16

    run_or_fail("transformers", check)


def test_timm_builds_a_backbone():
    def check():
        import timm
        import torch

        model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=0).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1280)

    run_or_fail("timm", check)


def test_facenet_pytorch_mtcnn_finds_the_astronaut():
    def check():
        from facenet_pytorch import MTCNN
        from skimage import data

        boxes, probs = MTCNN(keep_all=True, device="cpu").detect(data.astronaut())  # real weights, from the wheel
        assert boxes is not None and float(np.asarray(probs, dtype=float).max()) > 0.9

    run_or_fail("facenet-pytorch", check)


def test_av_encodes_and_decodes():
    def check():
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width = stream.height = 32
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        buf.seek(0)
        with av.open(buf) as inp:
            frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (32, 32, 3)

    run_or_fail("av", check)


def test_accelerate_prepares_a_model():
    def check():
        import torch
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model = accelerator.prepare(torch.nn.Linear(2, 2))
        assert accelerator.device.type == "cpu" and isinstance(accelerator.unwrap_model(model), torch.nn.Linear)

    run_or_fail("accelerate", check)


def test_wandb_imports():   # the [wandb] extra, which the test extra includes
    run_or_fail("wandb", lambda: __import__("wandb").Settings)
