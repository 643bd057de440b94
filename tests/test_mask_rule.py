"""One mask rule for every encoder: a clip without a modality has no frames of it, whatever the
encoder and whatever its batch companions.

Over every encoder preset family (tiny random configs: wav2vec2, HuBERT, WavLM, audeering, Whisper,
AST, hand-crafted audio; timm, VideoMAE, hand-crafted faces), a batch mixing a full clip, a silent
video (no audio stream), a clip without a face and an audio-only file gives each clip the
modalities and logits it gets when scored alone — on raw media (encoders in the model) and on the
cache path (features as `vavl extract` writes them, then the fusion model).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vavl
from media_utils import tone, write_face_clip
from tiny_encoders import tiny_ast_dir, tiny_audeering_dir, tiny_speech_dir, tiny_videomae_dir, tiny_whisper_dir
from vavl.data.collate import collate, model_inputs
from vavl.data.datasets import RawClipDataset
from vavl.data.extract import encode_batch
from vavl.encoders.build import build_encoder
from vavl.media.processor import AudioVisualProcessor
from vavl.media.write import write_clip
from vavl.models.with_encoders import AudioVisualModel

LABELS = {0: "angry", 1: "happy", 2: "neutral"}
# what each clip has: (audio, visual)
EXPECTED = {"full": ["audio", "visual"], "silent": ["visual"], "no_face": ["audio"], "audio_only": ["audio"]}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The four clips (different lengths, so the batch pads), processed once at 32 px, 8 fps:
    every visual encoder here resizes its crops, so one processing serves them all."""
    root = tmp_path_factory.mktemp("mask_rule")
    paths = {"full": write_face_clip(root / "full.mp4", seconds=1.0),
             "silent": write_face_clip(root / "silent.mp4", seconds=0.8, audio=False),
             "no_face": write_clip(root / "no_face.mp4", np.full((9, 120, 160, 3), 90, np.uint8), fps=10,
                                   audio=tone(0.9), sample_rate=16000),
             "audio_only": write_clip(root / "audio_only.mp4", audio=tone(0.6), sample_rate=16000)}
    records = [{"id": name, "video": str(path), "speaker": "s", "label": "angry"} for name, path in paths.items()]
    processor = AudioVisualProcessor(fps=8, face_size=32)
    samples = [RawClipDataset(records, processor)[i] for i in range(len(records))]
    assert [s["input_values"] is not None for s in samples] == [True, False, True, True]
    assert [s["pixel_mask"] is not None and bool(s["pixel_mask"].any()) for s in samples] == [True, True, False, False]
    return {"root": root, "samples": samples}


def _speech(family):
    return lambda root: build_encoder(tiny_speech_dir(root / family, family))


AUDIO = {
    "wav2vec2": _speech("wav2vec2"),
    "hubert": _speech("hubert"),
    "wavlm": _speech("wavlm"),
    "wav2vec2-group-norm": lambda root: build_encoder(tiny_speech_dir(root / "w2v2_gn", "wav2vec2", stable=False)),
    "audeering": lambda root: build_encoder("audeering-dim", pretrained=True, source=tiny_audeering_dir(root / "aud")[0]),
    "whisper": lambda root: build_encoder(tiny_whisper_dir(root / "whisper")),
    "ast": lambda root: build_encoder(tiny_ast_dir(root / "ast")),
    "classic": lambda root: build_encoder("mfcc", n_mfcc=8, n_mels=16),
}
VISUAL = {
    "timm": lambda root: build_encoder("test_efficientnet", pretrained=False),
    "videomae": lambda root: build_encoder(tiny_videomae_dir(root / "videomae")),
    "classic": lambda root: build_encoder("face-grey", image_size=8),
}
PAIRS = [(a, "classic") for a in AUDIO] + [("classic", v) for v in VISUAL if v != "classic"]


def _check_batch_against_alone(model, samples, inputs_of):
    """model on all samples together vs each alone: same modalities, logits within 1e-5."""
    with torch.no_grad():
        together = model(**inputs_of(samples))
        used = together.modalities_used()
        for i, sample in enumerate(samples):
            alone = model(**inputs_of([sample]))
            assert used[i] == alone.modalities_used()[0] == EXPECTED[sample["id"]], (sample["id"], used[i])
            gap = (together.logits[i] - alone.logits[0]).abs().max().item()
            assert gap <= 1e-5, (sample["id"], gap)
    return used


@pytest.mark.parametrize("audio,visual", PAIRS, ids=[f"{a}+{v}" for a, v in PAIRS])
def test_a_clip_without_a_modality_has_no_frames_of_it_in_any_batch(clips, audio, visual, one_thread):
    root, samples = clips["root"], clips["samples"]
    torch.manual_seed(0)
    a_enc, v_enc = AUDIO[audio](root).eval(), VISUAL[visual](root).eval()
    fusion = vavl.create_model("auxformer", id2label=LABELS, hidden_size=16, num_heads=2, num_layers=1,
                               audio_dim=a_enc.output_dim, visual_dim=v_enc.output_dim)
    model = AudioVisualModel.from_parts(fusion, a_enc, v_enc).eval()

    # each encoder alone: an all-false mask row gives no frames, whatever its companions
    with torch.no_grad():
        raw = collate(samples)
        _, amask = model.audio_encoder(raw["input_values"], raw["attention_mask"])
        _, vmask = model.visual_encoder(raw["pixel_values"], raw["pixel_mask"])
    assert amask.any(1).tolist() == [True, False, True, True]
    assert vmask.any(1).tolist() == [True, True, False, False]

    # raw media: the encoders inside the model
    raw_used = _check_batch_against_alone(model, samples, lambda s: model_inputs(collate(s), labels=False))

    # the cache path: features as `vavl extract` encodes them (batched, then each clip alone), then the fusion model
    items = [{"inputs": {k: None if s[k] is None else s[k][None] for k in ("input_values", "pixel_values", "pixel_mask")}}
             for s in samples]
    batched = encode_batch(items, model.audio_encoder, model.visual_encoder, "cpu", torch.float32)
    for item, (fa, fv) in zip(items, batched):
        (ga, gv), = encode_batch([item], model.audio_encoder, model.visual_encoder, "cpu", torch.float32)
        for f, g in ((fa, ga), (fv, gv)):
            assert (f is None) == (g is None) and (f is None or (f.shape == g.shape and torch.allclose(f, g, atol=1e-5)))
    cached = [{"id": s["id"], "speaker": "s", "audio_features": fa, "visual_features": fv}
              for s, (fa, fv) in zip(samples, batched)]
    cache_used = _check_batch_against_alone(model.fusion, cached, lambda s: model_inputs(collate(s), labels=False))
    assert cache_used == raw_used
