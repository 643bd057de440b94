"""recipes/partitions.py (`vavl run partitions`): one command trains and scores a config on all five VAVL
partitions, writes each one's results and their mean ± sd, and resumes: a finished partition is not trained again."""
import json
import statistics
from pathlib import Path

import torch

from vavl.cli import main
from vavl.data import write_manifest
from vavl.data.cache import FeatureCache

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "happy", "sad"]
TINY_VAVL = {"hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8, "num_attention_heads": 2, "num_audio_layers": 1,
             "num_visual_layers": 1, "num_shared_layers": 1, "conv_kernel_size": 3}


def partition_corpus(root: Path, n: int = 30) -> Path:
    """Clips in 5 speaker groups; partition vavl-k tests group k-1, develops on group k, trains on the rest."""
    g = torch.Generator().manual_seed(0)
    cache = FeatureCache(root / "cache")
    cache.init({"audio": "test", "visual": "test"})
    recs = []
    for i in range(n):
        c, group = i % len(CLASSES), i % 5
        a, v = torch.randn(5 + i % 3, 8, generator=g), torch.randn(4, 6, generator=g)
        a[:, c] += 2.0
        v[:, c] += 2.0
        cache.write(f"c{i:03d}", a, v, {})
        folds = {f"vavl-{k}": "test" if group == k - 1 else "dev" if group == k % 5 else "train" for k in range(1, 6)}
        recs.append({"id": f"c{i:03d}", "speaker": f"s{i % 10}", "label": CLASSES[c],
                     "labels": {"consensus-av": CLASSES[c]}, "attributes": {}, "folds": folds})
    write_manifest(recs, root / "manifest.jsonl")
    return root


def test_all_five_partitions_with_mean_and_sd_and_resume(tmp_path, capsys):
    corpus, out = partition_corpus(tmp_path / "corpus"), tmp_path / "runs"
    args = ["run", "partitions", "--config", "crema_d/vavl_official", f"data.manifest={corpus / 'manifest.jsonl'}",
            f"data.cache={corpus / 'cache'}", f"output_dir={out}", f"data.labels=[{','.join(CLASSES)}]",
            "log.wandb=false", "log.progress=false", "train.epochs=1", "evaluate.bootstrap=0",
            "evaluate.conditions=[audio+video]"] + [f"model.config.{k}={v}" for k, v in TINY_VAVL.items()]
    assert main(args[:4] + ["--partitions", "vavl-1,vavl-2"] + args[4:]) == 0
    first = json.loads((out / "partitions.json").read_text())
    assert list(first["partitions"]) == ["vavl-1", "vavl-2"]
    stamp = (out / "vavl-1" / "results.json").stat().st_mtime_ns

    assert main(args) == 0   # all five; vavl-1 and vavl-2 are read back, not trained again
    assert (out / "vavl-1" / "results.json").stat().st_mtime_ns == stamp
    report = json.loads((out / "partitions.json").read_text())
    assert list(report["partitions"]) == [f"vavl-{k}" for k in range(1, 6)]
    for k in range(1, 6):   # each partition scored its own test speakers
        own = json.loads((out / f"vavl-{k}" / "results.json").read_text())
        assert own["protocol"] == f"vavl-{k}" and own["results"]["test/audio+video"]["n"] == 6
        assert report["partitions"][f"vavl-{k}"]["results"] == own["results"]
    metric = next(m for m, v in report["partitions"]["vavl-1"]["results"]["test/audio+video"].items()
                  if isinstance(v, float) and m != "loss")
    values = [report["partitions"][f"vavl-{k}"]["results"]["test/audio+video"][metric] for k in range(1, 6)]
    agg = report["summary"]["test/audio+video"][metric]
    assert agg["n"] == 5 and abs(agg["mean"] - statistics.fmean(values)) < 1e-12 and abs(agg["sd"] - statistics.stdev(values)) < 1e-12
    md = (out / "partitions.md").read_text()
    assert f"{agg['mean']:.4f} ± {agg['sd']:.4f}" in md and "| vavl-5 |" in md


def test_a_protocol_override_is_refused_in_one_line(tmp_path, capsys):
    assert main(["run", "partitions", "--config", "crema_d/vavl_official", "data.protocol=vavl-2",
                 f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.protocol" in err
