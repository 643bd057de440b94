"""Face tracks with the real MTCNN on a real face (skimage's astronaut) in synthetic clips."""
import numpy as np
import pytest

from media_utils import face_frames, tone
from vavl.media import decode, write_clip
from vavl.media.faces import FaceCropper
from vavl.media.processor import AudioVisualProcessor


def _centres(boxes):
    return (boxes[:, 0] + boxes[:, 2]) / 2


@pytest.mark.parametrize("suffix", [".mp4", ".flv"])
def test_moving_face_is_tracked_and_cropped(tmp_path, suffix):
    path = write_clip(tmp_path / f"face{suffix}", face_frames(12, 120, 200), fps=10, audio=tone(1.2, 44100),
                      sample_rate=44100)
    frames = decode(path, fps=10).frames
    track = FaceCropper(size=96, detect_every=3)(frames)
    assert track.mask.all() and track.crops.shape == (len(frames), 96, 96, 3)
    x = _centres(track.boxes)
    assert x[-1] - x[0] > 60 and (np.diff(x) > -3).all()  # follows the head left to right, interpolated between detections
    # the crops are faces: MTCNN finds one, large, in each
    found = FaceCropper(size=96, detect_every=1, detect_side=96).detect(track.crops[::4])
    assert all(len(b) == 1 and (b[0, 2] - b[0, 0]) > 40 for b, _ in found)


def test_the_larger_face_is_chosen_when_two_appear():
    frames = face_frames(6, 120, 200, face=90, second_face=50)
    track = FaceCropper(size=64, detect_every=2)(frames)
    assert track.mask.all()
    assert (_centres(track.boxes) < 110).all()  # the big head moves in the left half; the small one sits right
    assert ((track.boxes[:, 2] - track.boxes[:, 0]) > 30).all()


def test_frames_without_a_face_are_masked():
    frames = face_frames(10, 96, 128)
    frames[6:] = 30  # the person leaves
    track = FaceCropper(size=48, detect_every=2)(frames)
    assert track.mask[:6].all() and not track.mask[7:].any()
    assert np.isnan(track.boxes[7:]).all() and (track.crops[7:] == 0).all()


def test_no_face_means_no_visual_input(tmp_path):
    path = write_clip(tmp_path / "black.mp4", np.zeros((5, 64, 80, 3), np.uint8), fps=10, audio=tone(0.5))
    out = AudioVisualProcessor(face_size=48, fps=10)(str(path))
    assert out["pixel_values"] is None and out["face_frames"] == 0 and out["frames"] == 5
    assert abs(out["input_values"].shape[1] - 8000) < 400  # 0.5 s (AAC pads a little)


def test_processor_normalises_crops_and_round_trips(tmp_path):
    path = write_clip(tmp_path / "f.mp4", face_frames(6, 96, 128), fps=10)
    proc = AudioVisualProcessor(face_size=40, fps=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), face={"detect_every": 2})
    out = proc(str(path))
    assert out["input_values"] is None and out["pixel_values"].shape == (1, 6, 3, 40, 40)
    assert out["pixel_mask"].all() and out["face_frames"] == 6
    assert -2.01 <= out["pixel_values"].min() and out["pixel_values"].max() <= 2.01
    proc.save_pretrained(tmp_path / "p")
    again = AudioVisualProcessor.from_pretrained(tmp_path / "p")
    assert again == proc and again.face == {"detect_every": 2}


@pytest.mark.parametrize("scene", ["coffee", "rocket", "chelsea", "hubble_deep_field"])
def test_real_scenes_without_a_face_give_no_track(scene):
    from malformed_media import scene_frames

    track = FaceCropper(size=48, detect_every=2)(scene_frames(scene, 12, 240, 320))
    assert track.face_frames == 0 and not track.mask.any() and np.isnan(track.boxes).all()


def test_a_passer_by_seen_in_a_few_frames_is_not_the_speaker():
    from malformed_media import passer_by_frames

    frames = passer_by_frames()                     # a real face (the cameraman) in 4 of 40 frames
    cropper = FaceCropper(size=48, detect_every=2)
    found = [len(b) for b, _ in cropper.detect(frames[15:19])]
    assert found == [1, 1, 1, 1]                    # MTCNN does see him where he is
    assert cropper(frames).face_frames == 0         # but 2 of 21 frames checked is not a speaker's face
    assert FaceCropper(size=48, detect_every=2, min_presence=0.0)(frames).face_frames > 0


def test_a_face_too_small_for_a_speaker_is_left_out():
    frames = face_frames(6, 480, 640, face=40, moving=False)   # 40 px of 480: a face in the background
    assert FaceCropper(size=48, detect_every=2, detect_side=640)(frames).face_frames == 0
    assert FaceCropper(size=48, detect_every=2, detect_side=640, min_face_fraction=0.0)(frames).face_frames == 6


@pytest.mark.parametrize("shape", [(16, 16), (2, 2), (16, 640)])
def test_frames_smaller_than_any_face_give_no_track(shape):
    frames = np.full((4, *shape, 3), 120, np.uint8)
    assert FaceCropper(size=32)(frames).face_frames == 0


def test_faces_of_several_clips_are_detected_together_and_each_clip_keeps_its_own_track(monkeypatch):
    import torch

    clips = [face_frames(12, 120, 200), face_frames(9, 120, 200, face=70), np.zeros((0, 40, 40, 3), np.uint8),
             torch.from_numpy(face_frames(7, 96, 128))]                     # numpy or tensor frames
    cropper = FaceCropper(size=48, detect_every=2)
    real, calls = cropper.detect, []
    monkeypatch.setattr(cropper, "detect", lambda frames: calls.append(tuple(frames.shape[:3])) or real(frames))
    together = cropper.tracks(clips)
    # frames 0, 2, ..., and the last: 7 + 5 of the two 120x200 clips share one call, 4 of 96x128 go alone
    assert sorted(calls) == [(4, 96, 128), (12, 120, 200)]
    assert together[2].crops.shape == (0, 48, 48, 3) and together[2].face_frames == 0
    for frames, track in zip(clips, together):
        one = FaceCropper(size=48, detect_every=2)(frames)
        assert np.array_equal(one.mask, track.mask) and track.face_frames == len(frames)
        # MTCNN's dense layers give ~1e-7 differences with other boxes in the batch: boxes move
        # by far less than a pixel, a crop pixel by at most one grey level
        assert np.allclose(one.boxes, track.boxes, atol=1e-3, equal_nan=True)
        assert np.abs(one.crops.astype(int) - track.crops).max(initial=0) <= 1
    alone = [FaceCropper(size=48, detect_every=2, batch_size=1)(f) for f in clips]   # each frame its own MTCNN batch
    for a, b in zip(alone, FaceCropper(size=48, detect_every=2, batch_size=1).tracks(clips)):
        assert np.array_equal(a.crops, b.crops) and np.array_equal(a.boxes, b.boxes, equal_nan=True)


def test_crops_can_stay_on_the_croppers_device_as_tensors():
    import torch

    frames = face_frames(6, 120, 160)
    on_device = FaceCropper(size=40, detect_every=2).tracks([frames], on_device=True)[0]
    assert isinstance(on_device.crops, torch.Tensor) and on_device.crops.dtype == torch.uint8
    assert np.array_equal(on_device.crops.numpy(), FaceCropper(size=40, detect_every=2)(frames).crops)
