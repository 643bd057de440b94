"""Audio-visual correspondence: pooling, pairs, metrics, and learning on synthetic clips whose
audio and video share a latent signal (high AUC), versus shuffled labels (chance)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

import vavl
from vavl.evaluation.correspondence import ClipSeconds, build_pairs, pair_metrics, pool_seconds, recall_at_k, roc_auc
from vavl.data import write_manifest
from vavl.data.cache import FeatureCache

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("correspondence_recipe", ROOT / "recipes" / "correspondence.py")
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)

A_RATE, V_RATE = 20, 10  # frames per second of the synthetic "cached" features


def latent_clip(rng, seconds, da=12, dv=8, k=4, mix=None):
    """Frame features of one clip: a latent (seconds, k) signal, new each second, seen through a
    fixed linear map by each modality at its own frame rate, plus noise."""
    wa, wv = mix
    z = torch.tensor(rng.standard_normal((seconds, k)), dtype=torch.float32)
    audio = z.repeat_interleave(A_RATE, 0) @ wa + 0.3 * torch.tensor(rng.standard_normal((seconds * A_RATE, da)), dtype=torch.float32)
    visual = z.repeat_interleave(V_RATE, 0) @ wv + 0.3 * torch.tensor(rng.standard_normal((seconds * V_RATE, dv)), dtype=torch.float32)
    return audio, visual


def mixing(rng, da=12, dv=8, k=4):
    return (torch.tensor(rng.standard_normal((k, da)), dtype=torch.float32),
            torch.tensor(rng.standard_normal((k, dv)), dtype=torch.float32))


def synthetic_seconds(n, seed):
    rng = np.random.default_rng(seed)
    mix = mixing(np.random.default_rng(123))
    clips = []
    for i in range(n):
        a, v = latent_clip(rng, int(rng.integers(3, 7)), mix=mix)
        clips.append(ClipSeconds(f"c{i}", pool_seconds(a, A_RATE), pool_seconds(v, V_RATE)))
    return clips


def test_pool_seconds_means_and_stds_per_window():
    frames = torch.arange(50.0).unsqueeze(1)            # 2.5 s at 20 frames/s -> 2 windows, the last takes the rest
    pooled = pool_seconds(frames, 20)
    assert pooled.shape == (2, 2)
    assert pooled[0, 0] == frames[:20].mean() and pooled[1, 0] == frames[20:].mean()
    assert torch.isclose(pooled[1, 1], frames[20:].std(unbiased=False))
    assert pool_seconds(torch.ones(3, 4), 100).shape == (1, 8)   # shorter than a window: one row


def test_pairs_have_both_negative_kinds_and_right_audio():
    clips = synthetic_seconds(4, 0)
    pairs = build_pairs(clips, np.random.default_rng(0), negatives="each")
    assert [p.kind for p in pairs[:3]] == ["match", "shift", "swap"] and len(pairs) == 12
    own = {c.id: c for c in clips}
    for p in pairs:
        audio = own[p.clip].audio
        if p.kind == "match":
            assert p.label == 1 and torch.equal(p.audio, audio)
        elif p.kind == "shift":   # same seconds in another order
            assert p.label == 0 and not torch.equal(p.audio, audio)
            assert torch.equal(p.audio.sort(0).values, audio.sort(0).values)
        else:
            assert p.label == 0 and not torch.equal(p.audio, audio)
    train = build_pairs(clips, np.random.default_rng(0), negatives="one")
    assert sum(p.label for p in train) == len(train) // 2


def test_metrics_against_definitions():
    scores, labels = [0.9, 0.8, 0.3, 0.1, 0.7], [1, 1, 0, 0, 0]
    # AUC = P(positive outranks negative): positives beat all 3 negatives -> 1.0
    assert roc_auc(scores, labels) == 1.0
    assert roc_auc([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == 0.25   # pairs (0.1 vs .2, .4) lose, (0.3 vs .2) wins, vs .4 loses
    m = pair_metrics([1.0, -1.0, 2.0, 0.5], [1, 0, 1, 0], ["match", "shift", "match", "swap"])
    assert m["accuracy"] == 0.75 and m["roc_auc_shift"] == 1.0 and m["roc_auc_swap"] == 1.0
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.4, 0.1], [0.3, 0.2, 0.1]])
    r = recall_at_k(sim, (1, 2, 3))   # own audio ranks 1, 2, 3
    assert r == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(2 / 3), "recall@3": 1.0}


def train_and_score(shuffle_labels):
    args = recipe.parse_args(["--manifest", "-", "--cache", "-", "--out", "-", "--epochs", "25", "--batch-size", "32",
                              "--hidden-size", "32", "--embed-dim", "16", "--seed", "0"]
                             + (["--shuffle-labels"] if shuffle_labels else []))
    torch.manual_seed(0)
    train_clips, test_clips = synthetic_seconds(64, 1), synthetic_seconds(24, 2)
    model = vavl.create_model(recipe.MODEL, audio_dim=24, visual_dim=16, hidden_size=32, embed_dim=16)
    recipe.train(model, train_clips, args, np.random.default_rng(0))
    metrics, _ = recipe.evaluate(model, test_clips, args)
    return metrics


def test_learns_correspondence_and_shuffled_labels_stay_at_chance(one_thread):
    learned = train_and_score(False)
    assert learned["roc_auc_swap"] > 0.95 and learned["roc_auc_shift"] > 0.95, learned
    assert learned["recall@1"] > 0.5 > learned["chance_recall@1"], learned
    control = train_and_score(True)
    assert 0.3 < control["roc_auc"] < 0.7, control


def test_recipe_end_to_end_on_a_feature_cache(tmp_path, one_thread):
    rng, mix = np.random.default_rng(5), mixing(np.random.default_rng(123))
    cache, records = FeatureCache(tmp_path / "cache"), []
    cache.init({"audio_frame_rate": A_RATE, "visual_frame_rate": V_RATE})
    for i in range(12):
        audio, visual = latent_clip(rng, 4, mix=mix)
        cache.write(f"clip{i}", audio, visual, {"duration": 4.0})
        records.append({"id": f"clip{i}", "speaker": str(i % 4)})
    cache.write("audio_only", audio, None, {})
    records.append({"id": "audio_only", "speaker": "0"})
    write_manifest(records, tmp_path / "manifest.jsonl")
    out = tmp_path / "run"
    code = recipe.main(["--manifest", str(tmp_path / "manifest.jsonl"), "--cache", str(tmp_path / "cache"),
                        "--out", str(out), "--epochs", "2", "--hidden-size", "16", "--embed-dim", "8", "--test-fraction", "0.25"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == {"train": 9, "test": 3}   # speaker 0 or not, the audio-only clip is left out
    assert {"roc_auc", "accuracy", "recall@1", "roc_auc_shift", "roc_auc_swap"} <= set(metrics["test"])
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    model = AutoModel.from_pretrained(out / "model")
    assert type(model).__name__ == "AVCorrespondenceModel" and model.config.audio_dim == 24
    assert recipe.main(["--manifest", str(tmp_path / "manifest.jsonl"), "--cache", str(tmp_path / "nowhere"),
                        "--out", str(out)]) == 2


def test_model_ignores_padding_and_needs_both_modalities():
    model = vavl.create_model(recipe.MODEL, audio_dim=6, visual_dim=4, hidden_size=16, embed_dim=8).eval()
    a, v = torch.randn(1, 3, 6), torch.randn(1, 3, 4)
    with torch.no_grad():
        alone = model(audio_features=a, visual_features=v).logits
        padded = model(audio_features=torch.cat([a, torch.randn(1, 2, 6)], 1), audio_mask=torch.arange(5)[None] < 3,
                       visual_features=torch.cat([v, torch.randn(1, 4, 4)], 1), visual_mask=torch.arange(7)[None] < 3).logits
        sim = model.similarity_matrix(a, None, v, None)
    assert torch.allclose(alone, padded, atol=1e-6) and torch.allclose(sim[0, 0], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="both modalities"):
        model(audio_features=a)
