"""Encoder folders load from safetensors only, like model folders: a folder whose weights are only a
pickle is refused in one line, nothing is unpickled, and no advice to turn the safety off appears."""
import pytest
import torch

from vavl.core.errors import ConfigError


class Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def pickle_only(tmp_path):
    from tiny_encoders import tiny_wav2vec2_dir

    folder = tmp_path / "enc"
    tiny_wav2vec2_dir(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"weights": Payload(tmp_path / "ran")}, folder / "pytorch_model.bin")
    return folder


def test_a_pickle_only_encoder_folder_is_refused_before_unpickling(pickle_only, tmp_path):
    from vavl.encoders import build_encoder
    from vavl.encoders.build import load_encoder

    for load in (load_encoder, build_encoder):
        with pytest.raises(ConfigError, match="only in pytorch_model.bin, a pickle.*safetensors files only") as e:
            load(str(pickle_only))
        assert "weights_only=False" not in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ran").exists()


def test_the_cli_says_it_in_one_line(pickle_only, tmp_path, capsys):
    import json

    from vavl.cli import main

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav"}) + "\n")
    assert main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "c"), "--audio-encoder", str(pickle_only)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a pickle" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "ran").exists()
