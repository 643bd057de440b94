"""Metrics against scikit-learn / SciPy on random data, and the distributed gather (2 CPU processes)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from vavl.evaluation import metrics as M


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    p[:60] = y[:60]                       # some signal
    y[rng.random(200) < 0.1] = M.IGNORE_INDEX   # unlabeled clips are left out
    keep = y != M.IGNORE_INDEX
    got = M.classification_metrics(y, p)
    assert got["UA"] == pytest.approx(skm.balanced_accuracy_score(y[keep], p[keep]))
    assert got["UA"] == pytest.approx(skm.recall_score(y[keep], p[keep], average="macro"))
    assert got["WA"] == pytest.approx(skm.accuracy_score(y[keep], p[keep]))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y[keep], p[keep], average="macro"))
    assert got["micro_f1"] == pytest.approx(skm.f1_score(y[keep], p[keep], average="micro"))
    assert np.array_equal(M.confusion_matrix(y, p, 5), skm.confusion_matrix(y[keep], p[keep], labels=range(5)))
    np.testing.assert_allclose(M.per_class_recall(y, p, 5), skm.recall_score(y[keep], p[keep], average=None, labels=range(5)))


def test_class_missing_from_gold_and_predictions():
    y, p = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])   # class 1 never appears
    assert M.unweighted_accuracy(y, p) == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert M.f1_scores(y, p)[0] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert np.isnan(M.per_class_recall(y, p, 3)[1])


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_match_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = rng.normal(3, 1, (300, 3))
    pred = 0.6 * gold + rng.normal(0.5, 0.7, (300, 3))
    out = M.regression_metrics(pred, gold, ["arousal", "valence", "dominance"])
    for j, a in enumerate(["arousal", "valence", "dominance"]):
        assert out[a]["pearson"] == pytest.approx(stats.pearsonr(pred[:, j], gold[:, j])[0])
        assert out[a]["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(gold[:, j], pred[:, j])))
        r = stats.pearsonr(pred[:, j], gold[:, j])[0]
        ref = 2 * r * pred[:, j].std() * gold[:, j].std() / (
            pred[:, j].var() + gold[:, j].var() + (pred[:, j].mean() - gold[:, j].mean()) ** 2)
        assert out[a]["ccc"] == pytest.approx(ref)
    assert out["mean_ccc"] == pytest.approx(np.mean([out[a]["ccc"] for a in ("arousal", "valence", "dominance")]))
    gold[0, 0] = np.nan   # a missing rating is skipped
    assert M.ccc(pred[:, 0], gold[:, 0]) == pytest.approx(M.ccc(pred[1:, 0], gold[1:, 0]))


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    p[:150] = y[:150]
    lo, hi = M.bootstrap_ci(M.weighted_accuracy, y, p, n_resamples=2000, seed=0)
    ref = stats.bootstrap((y, p), lambda a, b: np.mean(a == b), paired=True, vectorized=False, n_resamples=2000,
                          method="percentile", random_state=0).confidence_interval
    assert lo < M.weighted_accuracy(y, p) < hi
    assert lo == pytest.approx(ref.low, abs=0.015) and hi == pytest.approx(ref.high, abs=0.015)
    ci = M.classification_ci(y, p, n_resamples=200, seed=3)   # vectorised; the same as resampling each metric
    generic = {"UA": M.unweighted_accuracy, "WA": M.weighted_accuracy, "macro_f1": lambda a, b: M.f1_scores(a, b)[0],
               "micro_f1": lambda a, b: M.f1_scores(a, b)[1]}
    for k, fn in generic.items():
        assert ci[k] == pytest.approx(list(M.bootstrap_ci(fn, y, p, n_resamples=200, seed=3)))


def test_per_speaker_breakdown():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0, 1, 1, 1, 0])
    spk = ["a", "a", "b", "b", "b"]
    out = M.per_speaker(lambda t, q: {"WA": M.weighted_accuracy(t, q)}, spk, y, p)
    assert out == {"a": {"WA": 1.0, "n": 2}, "b": {"WA": pytest.approx(1 / 3), "n": 3}}


DISTRIBUTED_SCRIPT = textwrap.dedent('''
    """Run by the test under torchrun: gathered predictions vs one process, 13 clips over 2 ranks."""
    import json, os, sys
    import torch
    from torch import nn
    from vavl.evaluation.scoring import evaluate, predict_dataset
    from vavl.nn.layers import masked_mean
    from vavl.models.base import EmotionConfig, EmotionModel

    class Cfg(EmotionConfig):
        model_type = "vavl_test_dist"

    class Tiny(EmotionModel):
        config_class = Cfg
        def __init__(self, config):
            super().__init__(config)
            self.a, self.v = nn.Linear(config.audio_dim, config.num_labels), nn.Linear(config.visual_dim, config.num_labels)
            self.post_init()
        def compute_heads(self, audio, audio_mask, visual, visual_mask):
            a, v = self.a(masked_mean(audio, audio_mask)), self.v(masked_mean(visual, visual_mask))
            return {"fused_logits": a + v, "audio_logits": a, "visual_logits": v}

    torch.manual_seed(0)
    model = Tiny(Cfg(audio_dim=4, visual_dim=3, num_labels=3))
    g = torch.Generator().manual_seed(1)
    data = [{"id": f"c{i}", "speaker": f"s{i % 3}", "audio_features": torch.randn(5 + i % 3, 4, generator=g),
             "visual_features": torch.randn(4, 3, generator=g), "labels": torch.tensor(i % 3)} for i in range(13)]
    dist = evaluate(model, data, ["av", "drop-frames:0.5"], batch_size=2, bootstrap=50, progress=False)
    pred = predict_dataset(model, data, "drop-frames:0.5", batch_size=2, progress=False,
                           accelerator=__import__("accelerate").Accelerator())
    if int(os.environ["RANK"]) == 0:
        os.environ["WORLD_SIZE"] = "1"   # the same call, one process, no Accelerate
        single = evaluate(model, data, ["av", "drop-frames:0.5"], batch_size=5, bootstrap=50, progress=False)
        json.dump({"dist": dist, "single": single, "ids": pred.ids, "n": len(pred.ids),
                   "logits": pred.logits.tolist(), "labels": pred.labels.tolist()}, open(sys.argv[1], "w"))
''')


@pytest.mark.xdist_group("multiprocess")
def test_distributed_gather_counts_each_clip_once(tmp_path):
    script, out = tmp_path / "dist_eval.py", tmp_path / "out.json"
    script.write_text(DISTRIBUTED_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["n"] == 13 and res["ids"] == [f"c{i}" for i in range(13)]   # uneven: 7 + 6, no duplicate
    assert res["dist"]["conditions"] == res["single"]["conditions"]
    gold, guess = np.array(res["labels"]), np.array(res["logits"]).argmax(1)
    fused = res["dist"]["conditions"]["drop-frames:0.5"]["fused"]
    assert fused["n"] == 13
    assert fused["UA"] == pytest.approx(skm.balanced_accuracy_score(gold, guess))
    assert fused["macro_f1"] == pytest.approx(skm.f1_score(gold, guess, average="macro"))


def test_speaker_bootstrap_resamples_whole_speakers_and_widens_intervals_of_clustered_errors():
    rng = np.random.default_rng(0)
    speakers = np.repeat([f"s{i}" for i in range(10)], 20)            # 10 speakers, 20 clips each
    y = rng.integers(0, 3, size=200)
    right = np.repeat(rng.random(10) < 0.6, 20)                         # a speaker is all right or all wrong
    p = np.where(right, y, (y + 1) % 3)
    for idx in M.resample_indices(200, 5, seed=1, clusters=speakers):
        drawn, counts = np.unique(speakers[idx], return_counts=True)
        assert (counts % 20 == 0).all() and len(idx) == 200              # whole speakers, as many draws as speakers
    by_clip = M.classification_ci(y, p, n_resamples=400, seed=2)
    by_speaker = M.classification_ci(y, p, n_resamples=400, seed=2, clusters=speakers)
    width = lambda ci: ci["WA"][1] - ci["WA"][0]  # noqa: E731
    assert width(by_speaker) > 2 * width(by_clip)                       # errors move together within a speaker
    for key, fn in (("UA", M.unweighted_accuracy), ("WA", M.weighted_accuracy)):
        assert by_speaker[key] == pytest.approx(list(M.bootstrap_ci(fn, y, p, n_resamples=400, seed=2, clusters=speakers)))
