"""`vavl demo` end to end on the small corpus: files it promises, a model that beats chance."""
import json
import subprocess
import sys

from PIL import Image


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "vavl.cli", "demo", "--out", str(out), "--size", "small", "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "condition" in r.stdout and "predict" in r.stdout
    assert "Loading weights" not in r.stderr and "Writing model shards" not in r.stderr, r.stderr[-3000:]   # no library bars
    assert sum(1 for _ in open(out / "manifest.jsonl")) == 60
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(metrics["conditions"]) == {"av", "audio", "video"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["UA"]["av"] > summary["chance_UA"] + 0.2            # learnable data: clearly above 1/6
    for png in ("robustness.png", "confusion_av.png"):
        assert Image.open(out / "report" / png).size[0] > 100
    import vavl  # noqa: F401
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out / "model")
    assert model.label_names == metrics["labels"]
    assert summary["prediction"]["predicted"] in metrics["labels"]
    # what the demo's outputs claim: synthetic data, named as such; no corpus, no corpus license
    card = (out / "model" / "README.md").read_text()
    header, body = card.split("\n---\n", 1)
    assert "datasets:" not in header and "odbl" not in header and "synthetic-data" in header
    assert "CREMA-D test" not in card and "synthetic clips" in body
    title = next(line for line in body.splitlines() if line.startswith("# "))
    assert "mfcc + face-rgb" in title and "synthetic" in title and "auxformer_w2v2l_effb2.crema_d" not in title
    assert "**synthetic clips**" in (out / "report" / "report.md").read_text()
    assert model.config.fusion["provenance"]["synthetic"] is True
    assert model.config.audio_encoder["identity"]["name"] == "mfcc"   # the demo's model is the recipe's folder, as it is
