"""Files that try to run code are refused and run nothing: HSEmotion checkpoints (pickles) are read
with torch's weights-only unpickler and the exact timm classes they need, and model folders are read
from safetensors only."""
import os

import pytest
import timm
import torch
from torch import nn

from vavl.convert import load_hsemotion
from vavl.core.errors import ConfigError


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _RunsNumpyExec:
    """numpy.testing's runstring exec()s its argument: a root-allow-list (numpy.*) let it through."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return runstring, (f"open({str(self.marker)!r}, 'w').write('ran')", {})


class _BuildsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


@pytest.mark.parametrize("payload,named", [(_RunsShell, "system"), (_RunsNumpyExec, "runstring"), (_BuildsEval, "eval")])
@pytest.mark.parametrize("wrapped", [False, True])
def test_hsemotion_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, payload, named, wrapped):
    marker = tmp_path / "it-ran"
    obj = payload(marker)
    if wrapped:   # hidden inside an otherwise genuine whole-model checkpoint
        model = timm.create_model("efficientnet_b0", pretrained=False)
        model.classifier = nn.Sequential(nn.Linear(1280, 8))
        model.extra = obj
        obj = model
    torch.save(obj, tmp_path / "enet_b0_8.pt")
    with pytest.raises(ConfigError, match=f"enet_b0_8.pt: refused.*{named}.*nothing in it was run"):
        load_hsemotion(tmp_path / "enet_b0_8.pt")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "efficientnet_b2"])
def test_hsemotion_whole_model_files_of_both_kinds_import_exactly(tmp_path, name):
    """HSEmotion's backbones are tf_efficientnet_*_ns ("same" padding): the import keeps that."""
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False)
    ref.classifier = nn.Sequential(nn.Linear(ref.num_features, 8))
    ref.eval()
    torch.save(ref, tmp_path / "m.pt")
    enc = load_hsemotion(tmp_path / "m.pt")
    assert enc.model_name == name and enc.image_size == (224 if "b0" in name else 260)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc.classify(enc(x[None])[0][0]), ref(x), atol=1e-5)
