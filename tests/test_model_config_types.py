"""A hand-edited config.json of a full model whose encoder entry is not an object is one line."""
import json
import shutil

import pytest

from vavl.cli import main
from vavl.core.errors import ConfigError


@pytest.mark.parametrize("key,value", [("audio_encoder", "wav2vec2-base"), ("visual_encoder", 5), ("processor", [1])])
def test_an_encoder_entry_of_the_wrong_type_is_one_line(tmp_path, tiny_full_model_dir, key, value, capsys):
    from vavl.models.loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_full_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"'{key}' must be an object") as e:
        load_model(str(folder), media=True)
    assert "\n" not in str(e.value)
    clip = tmp_path / "x.wav"
    clip.write_bytes(b"")
    assert main(["predict", str(clip), "--model", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}' must be an object" in err[0], err
