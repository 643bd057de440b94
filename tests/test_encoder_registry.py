"""Every encoder preset, tested the day it is registered: a complete card line, the full-size
architecture it declares (built on the meta device: no memory), its documented options, a spec
that rebuilds it, and `pretrained=True` asking the hub for exactly its source."""
import json
import os
import subprocess
import sys

import pytest
import torch

from vavl import cli
from vavl.encoders import build_encoder, get_encoder_preset, list_encoders
from vavl.encoders.build import encoder_from_spec, encoder_spec

PRESETS = list_encoders()


@pytest.mark.parametrize("name", PRESETS)
def test_card_line_says_what_rate_width_and_license(name):
    preset = get_encoder_preset(name)
    assert preset.description and preset.rate, f"{name}: description and rate"
    line = preset.card_line()
    assert line.startswith(f"{name} ({preset.modality}): ") and f"; {preset.output_dim}-d;" in line and preset.rate in line
    if preset.source:
        assert preset.license and f"weights {preset.source} ({preset.license})" in line, f"{name}: license of its weights"
    else:
        assert preset.license is None and line.endswith("no weights")


@pytest.mark.parametrize("name", PRESETS)
def test_full_size_architecture_options_and_spec(name):
    preset = get_encoder_preset(name)
    with torch.device("meta"):
        enc = build_encoder(name, pretrained=False, **preset.options)          # the options a preset documents are accepted
        rebuilt = encoder_from_spec(json.loads(json.dumps(encoder_spec(enc))))   # a spec survives a JSON config
    assert enc.modality == preset.modality and enc.output_dim == preset.output_dim
    if enc.modality == "audio":
        assert enc.sample_rate == 16000 and enc.frame_rate and enc.frame_rate > 0
    else:
        assert enc.image_size > 0 and len(enc.mean) == len(enc.std) == 3
    assert type(rebuilt) is type(enc) and rebuilt.output_dim == enc.output_dim
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in enc.parameters())


def test_pretrained_asks_the_hub_for_the_preset_source():
    """Offline (HF_HUB_OFFLINE=1), `pretrained=True` goes down the real from_pretrained path and
    stops where the download would start, with a ConfigError naming the preset's hub id."""
    code = ("import json\nfrom vavl.encoders import build_encoder, get_encoder_preset, list_encoders\nfrom vavl.core.errors import ConfigError\n"
            "out = {}\nfor n in list_encoders():\n    if get_encoder_preset(n).source:\n"
            "        try:\n            build_encoder(n, pretrained=True); out[n] = 'loaded'\n"
            "        except ConfigError as e:\n            out[n] = str(e)\nprint(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    with_weights = [n for n in PRESETS if get_encoder_preset(n).source]
    assert sorted(errors) == with_weights
    for name, message in errors.items():
        assert message.startswith(get_encoder_preset(name).source + ":"), f"{name}: {message}"


def test_zoo_lists_every_encoder(capsys):
    assert cli.main(["zoo", "encoders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [get_encoder_preset(n).card_line() for n in PRESETS]
