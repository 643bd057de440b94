"""The new encoder families end to end, with tiny models: `vavl extract` with Whisper, AST,
audeering's wav2vec2 and VideoMAE; each new CREMA-D zoo entry trained a few steps on synthetic
clips through the public API, then saved and run by `vavl predict`."""
import dataclasses
import json
import os

import pytest
import torch

import vavl
from tiny_encoders import tiny_speech_dir
from tiny_encoders import tiny_ast_dir, tiny_audeering_dir, tiny_videomae_dir, tiny_whisper_dir
from vavl.cli import main
from vavl.data import read_manifest
from vavl.data.cache import FeatureCache
from vavl.data.prepare import prepare
from vavl.data.synthetic import make_corpus

QUIET = open(os.devnull, "w")
NEW_ENTRIES = ["auxformer_whisperS_effb2.crema_d", "auxformer_ast_effb2.crema_d", "auxformer_w2v2l_videomae.crema_d",
               "vavl_w2v2dim_effb2.crema_d"]
SMALL = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "proj_dim": 8, "head_hidden_size": 8,
         "num_attention_heads": 2, "num_audio_layers": 1, "num_visual_layers": 1, "num_shared_layers": 1,
         "conv_kernel_size": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Preset name -> a tiny stand-in: a saved folder in the upstream layout (or a tiny timm model)."""
    root = tmp_path_factory.mktemp("tiny")
    return {"whisper-small": tiny_whisper_dir(root / "whisper"), "ast-audioset": tiny_ast_dir(root / "ast"),
            "videomae-base-kinetics": tiny_videomae_dir(root / "videomae"),
            "audeering-dim": tiny_audeering_dir(root / "audeering", "model.safetensors")[0],   # a folder: safetensors only
            "wav2vec2-large-robust": tiny_speech_dir(root / "w2v2"), "efficientnet_b2": "test_efficientnet"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    make_corpus("crema-d", root / "crema", n_speakers=1, clips_per_class=1, duration=1.0)
    prepare("crema-d", root / "crema", root / "manifest.jsonl", log=QUIET)
    return root / "manifest.jsonl"


@pytest.mark.parametrize("audio,visual,audio_rows,visual_rows", [
    ("whisper-small", "videomae-base-kinetics", 50, 2),   # 50 frames/s; 8 face frames at 8 fps -> windows 0-3, 4-7
    ("ast-audioset", None, 1, None),                      # one embedding per second
    ("audeering-dim", None, 50, None),                    # wav2vec2: 320 samples per frame
])
def test_vavl_extract_with_the_new_encoders(tmp_path, tiny, corpus, audio, visual, audio_rows, visual_rows):
    args = ["extract", "--manifest", str(corpus), "--out", str(tmp_path / "cache"), "--audio-encoder", tiny[audio],
            "--fps", "8", "--no-progress"] + (["--visual-encoder", tiny[visual]] if visual else [])
    assert main(args) == 0
    cache = FeatureCache(tmp_path / "cache")
    records = read_manifest(corpus)
    assert cache.settings["audio_dim"] == 32 and cache.settings["visual_dim"] == (32 if visual else None)
    for r in records:
        item = cache.read(r["id"])
        assert item["audio_features"].shape == (audio_rows, 32), (r["id"], item["audio_features"].shape)
        if visual:
            assert item["visual_features"] is not None and item["visual_features"].shape == (visual_rows, 32)


def raw_batch(model, manifest):
    """Every clip through the model's processor, padded into one batch of raw inputs + labels."""
    names = model.label_names
    items = [(model.processor(r["video"]), names.index(r["label"])) for r in read_manifest(manifest)]
    n = max(it["input_values"].shape[1] for it, _ in items)
    t = max(it["pixel_values"].shape[1] for it, _ in items)
    wave, wmask = torch.zeros(len(items), n), torch.zeros(len(items), n, dtype=torch.bool)
    crops = torch.zeros(len(items), t, *items[0][0]["pixel_values"].shape[2:])
    pmask = torch.zeros(len(items), t, dtype=torch.bool)
    for i, (it, _) in enumerate(items):
        k, f = it["input_values"].shape[1], it["pixel_values"].shape[1]
        wave[i, :k], wmask[i, :k] = it["input_values"][0], True
        crops[i, :f], pmask[i, :f] = it["pixel_values"][0], it["pixel_mask"][0]
    return {"input_values": wave, "attention_mask": wmask, "pixel_values": crops, "pixel_mask": pmask,
            "labels": torch.tensor([label for _, label in items])}


@pytest.mark.parametrize("name", NEW_ENTRIES)
def test_entry_trains_a_few_steps_on_synthetic_clips_then_predicts(name, tiny, corpus, tmp_path, one_thread):
    entry = vavl.get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.model_class.config_class)}
    torch.manual_seed(0)
    model = vavl.create_model(name, audio_encoder=tiny[entry.audio_encoder], visual_encoder=tiny[entry.visual_encoder],
                              pretrained_encoders=False,
                              **{k: v for k, v in SMALL.items() if k in fields})
    if entry.visual_encoder == "efficientnet_b2":
        model.processor.face_size = 64   # small crops keep the test fast
    batch = raw_batch(model, corpus)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(not p.requires_grad for p in model.audio_encoder.model.parameters())   # frozen encoders
    optimizer = torch.optim.Adam(trainable, lr=3e-3)

    def eval_loss():   # without dropout, so the comparison is not down to the draws
        with torch.no_grad():
            return model.eval()(**batch).loss.item()

    before = eval_loss()
    model.train()
    for _ in range(6):
        out = model(**batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        assert torch.isfinite(out.loss)
    after = eval_loss()
    assert after < before, (before, after)
    model.eval().save_pretrained(tmp_path / "model")

    clip = read_manifest(corpus)[0]["video"]
    assert main(["predict", clip, "--model", str(tmp_path / "model"), "--json"]) == 0


def test_predict_reports_window_rate_visual_rows(tiny, corpus, tmp_path, capsys):
    """VideoMAE's rows are windows: the timeline's visual entries fall where the windows are."""
    model = vavl.create_model("auxformer_w2v2l_videomae.crema_d", audio_encoder=tiny["wav2vec2-large-robust"],
                              visual_encoder=tiny["videomae-base-kinetics"], hidden_size=16, num_layers=1, num_heads=2,
                              pretrained_encoders=False)
    model.processor.fps = 8
    model.save_pretrained(tmp_path / "model")
    capsys.readouterr()
    clip = read_manifest(corpus)[0]["video"]
    assert main(["predict", clip, "--model", str(tmp_path / "model"), "--json", "--step", "0.5"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["modalities"] == ["audio", "visual"] and r["face_frames"] == r["frames"] >= 8
    # 4-frame windows: the first at the start, the last ending on the last frame: one in each half second
    assert [e["modalities"] for e in r["timeline"]] == [["audio", "visual"], ["audio", "visual"]]
