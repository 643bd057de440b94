"""recipes/benchmarks/gpu_suite.py --smoke: every part of the GPU benchmark runs on the CPU at tiny
sizes and its JSON holds what the README's GPU column is made from, so the script cannot rot."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_smoke_run_fills_every_part(tmp_path):
    out = tmp_path / "gpu_suite.json"
    done = subprocess.run([sys.executable, ROOT / "recipes/benchmarks/gpu_suite.py", "--smoke", "--out", out, "--work",
                           tmp_path / "work"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"] == "cpu" and report["torch"] and report["date"].startswith("20")
    parts = report["parts"]
    assert set(parts) == {"step", "predict", "extract", "e2e"} and not any("error" in p for p in parts.values())
    assert "targets" not in report                      # tiny CPU sizes say nothing about the GPU targets
    for key in ("auxformer_fp32", "auxformer_bf16", "vavl_fp32", "vavl_bf16"):
        assert parts["step"][key]["ours_sdpa"]["train_step_s"]["median"] > 0
    assert parts["predict"]["faces_on_cpu"]["median_wall_s"]["total"] > 0
    assert parts["extract"]["clips"] == 6 and parts["extract"]["faces_on_cpu"]["loop_clips_per_s"] > 0
    e2e = parts["e2e"]
    assert e2e["clips"] == 60 and set(e2e["stages_s"]) == {"prepare", "extract", "train", "evaluate"}
    assert all(s > 0 for s in e2e["stages_s"].values()) and e2e["total_s"] == pytest.approx(sum(e2e["stages_s"].values()))
    assert e2e["train"]["mixed_precision"] == "no"       # bf16 autocast is emulated on most CPUs: the smoke trains in fp32
    assert e2e["train"]["epochs_logged"] == 2 and e2e["test_clips"] == 12     # speaker fold 0 of 10 actors: 2 actors
    cache = json.loads((tmp_path / "work" / "features" / "cache.json").read_text())
    assert cache["precision"] == "bf16-autocast"        # the suite extracts with --bf16


def test_a_smoke_run_never_writes_into_the_results_folder():
    done = subprocess.run([sys.executable, ROOT / "recipes/benchmarks/gpu_suite.py", "--smoke", "--parts", "step"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "--out" in done.stderr.strip().splitlines()[-1]
