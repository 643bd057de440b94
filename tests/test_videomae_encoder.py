"""VideoMAE encoder: windows of face frames -> one embedding each (the visual sequence at window
rate), frames without a face skipped, a short clip filling one window, window times, a window
equal to transformers' VideoMAEModel, saving."""
import numpy as np
import pytest
import torch
from transformers import VideoMAEForVideoClassification

from tiny_encoders import tiny_videomae_dir
from vavl.encoders import build_encoder
from vavl.encoders.videomae import window_indices
from vavl.core.errors import ConfigError


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    return tiny_videomae_dir(tmp_path_factory.mktemp("videomae") / "hub")


def tiny(hub_dir, **options):
    return build_encoder("videomae-base-kinetics", pretrained=True, source=hub_dir, **options).eval()


def test_window_indices():
    assert [w.tolist() for w in window_indices(10, 4, 3)] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert [w[0] for w in window_indices(11, 4, 3)] == [0, 3, 6, 7]    # the last window ends on the last frame
    assert window_indices(3, 4, 2)[0].tolist() == [0, 0, 1, 2]         # too short: frames repeated evenly
    assert window_indices(0, 4, 2) == []


def test_windows_of_face_frames_give_one_row_each(hub_dir):
    enc = tiny(hub_dir, hop=2)
    assert enc.window == 4 and enc.image_size == 32 and enc.output_dim == 32 and enc.mean == (0.485, 0.456, 0.406)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 3, 32, 32, generator=g)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, [2, 5]] = False   # no face in two frames: skipped
    mask[2] = False           # no face at all: no rows
    with torch.no_grad():
        feats, fmask = enc(x, mask)
        assert feats.shape == (3, 3, 32) and fmask.sum(1).tolist() == [3, 2, 0] and (feats[~fmask] == 0).all()
        faces_only = enc(x[1:2, mask[1]])[0]
        assert torch.allclose(feats[1, :2], faces_only[0], atol=1e-6)   # the same as the face frames alone
        x2 = x.clone()
        x2[1, [2, 5]] = 9.0                                             # what a frame without a face holds is unseen
        assert torch.allclose(enc(x2, mask)[0], feats, atol=1e-6)
    assert enc.output_times(np.arange(8) * 0.25, mask[0]).tolist() == pytest.approx([0.375, 0.875, 1.375])


def test_window_times_follow_the_face_frames(hub_dir):
    enc = tiny(hub_dir, hop=2)
    times = np.arange(8) * 0.25
    mask = torch.ones(8, dtype=torch.bool)
    mask[[2, 5]] = False          # face frames 0 1 3 4 6 7: windows over frames (0 1 3 4) and (3 4 6 7)
    assert enc.output_times(times, mask).tolist() == pytest.approx([times[[0, 1, 3, 4]].mean(), times[[3, 4, 6, 7]].mean()])


def test_a_window_matches_transformers_videomae(hub_dir):
    ref = VideoMAEForVideoClassification.from_pretrained(hub_dir).videomae.eval()
    enc = tiny(hub_dir)
    x = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(enc(x)[0][0, 0], ref(x).last_hidden_state.mean(1)[0], atol=1e-5)
        bigger = torch.nn.functional.interpolate(x[0], size=(48, 48), mode="bilinear", align_corners=False)[None]
        assert enc(bigger)[0].shape == (1, 1, 32)   # other crop sizes are resized to the model's


def test_save_load_and_options(hub_dir, tmp_path):
    enc = tiny(hub_dir, hop=3)
    enc.save_pretrained(tmp_path / "saved")
    again = build_encoder(tmp_path / "saved").eval()
    x = torch.randn(1, 9, 3, 32, 32)
    assert again.hop == 3 and again.mean == enc.mean
    with torch.no_grad():
        assert torch.allclose(again(x)[0], enc(x)[0], atol=1e-6)
    with pytest.raises(ConfigError, match="hop"):
        tiny(hub_dir, hop=0)
