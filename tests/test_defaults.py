"""Defaults and messages that cannot mislead: a mistyped model folder, shut-off conditions that do not
depend on the batch size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vavl import cli
from vavl.core.errors import ConfigError
from vavl.models.loading import load_model


@pytest.mark.parametrize("typo", ["runs/typo", "./typo", "runs/typo/"])
def test_a_missing_model_folder_is_named_as_such(typo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no such folder") as e:
        load_model(typo)
    assert "unknown model" not in str(e.value)
    (tmp_path / "clip.wav").write_bytes(b"")
    assert cli.main(["predict", "clip.wav", "--model", typo]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and typo in err and len(err.strip().splitlines()) == 1


def test_a_file_given_as_model_folder_is_named_as_such(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a folder"):
        load_model(tmp_path / "model.safetensors")


def test_shut_off_results_do_not_depend_on_the_batch_size(tmp_path):
    """shut-off:P draws once per group of 32 consecutive clips, whatever batches the loader makes."""
    import vavl
    from vavl.data.cache import FeatureCache, FeatureDataset
    from vavl.data.conditions import SHUT_OFF_GROUP
    from vavl.evaluation.scoring import evaluate, predict_conditions
    from vavl.data.conditions import parse_conditions

    g = torch.Generator().manual_seed(0)
    cache, records = FeatureCache(tmp_path / "cache"), []
    for i in range(5 * SHUT_OFF_GROUP):
        cache.write(f"c{i:03d}", torch.randn(6, 8, generator=g) + 1, torch.randn(4, 6, generator=g) + 1, {})
        records.append({"id": f"c{i:03d}", "speaker": f"s{i % 7}", "label": ["angry", "happy", "sad"][i % 3]})
    torch.manual_seed(0)
    model = vavl.create_model("auxformer", audio_dim=8, visual_dim=6, hidden_size=16, num_heads=2, num_layers=1,
                              id2label={0: "angry", 1: "happy", 2: "sad"}).eval()
    data = FeatureDataset(cache, records, model.config)
    conditions = parse_conditions("av,shut-off:0.3")
    runs = {b: predict_conditions(model, data, conditions, batch_size=b, seed=3, progress=False) for b in (5, 16, 64)}
    ref = runs[16]["shut-off:0.3"].logits
    for b, preds in runs.items():
        assert torch.allclose(preds["shut-off:0.3"].logits, ref, atol=1e-5), f"batch size {b}"
    # not vacuous: some groups were shut off, whole groups at a time
    changed = (ref - runs[16]["av"].logits).abs().amax(1) > 1e-4
    per_group = changed.view(-1, SHUT_OFF_GROUP)
    assert 0 < int(per_group.any(1).sum()) < per_group.shape[0]
    assert bool((per_group.all(1) | ~per_group.any(1)).all())
    metrics = [evaluate(model, data, ["shut-off:0.3"], batch_size=b, bootstrap=0, progress=False)["conditions"] for b in (7, 32)]
    assert metrics[0] == metrics[1]


def test_the_timeline_png_shows_audio_and_face_dropping_out_mid_clip(tmp_path, monkeypatch):
    from vavl.evaluation import plots

    mods = [["audio", "visual"], ["audio", "visual"], ["visual"], ["visual"], ["audio"], ["audio", "visual"]]
    scores = {"angry": 0.7, "happy": 0.3}
    result = {"file": "clip.mp4", "label": "angry", "scores": scores, "modalities": ["audio", "visual"], "duration": 6.0,
              "task": "single_label_classification",
              "timeline": [{"start": float(i), "end": i + 1.0, "label": "angry", "scores": scores, "modalities": m}
                           for i, m in enumerate(mods)]}
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, **kw: (figures.append(fig), save(fig, path, **kw))[1])
    path = plots.plot_timeline(result, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 0 and path.endswith("timeline.png")
    ax = figures[0].axes[0]
    spans = {}
    for patch in ax.patches:
        x0, x1 = patch.get_path().vertices[:, 0].min(), patch.get_path().vertices[:, 0].max()
        box = patch.get_transform().transform([[x0, 0], [x1, 0]])   # axvspan: x in data, y in axes units
        data = ax.transData.inverted().transform(box)[:, 0]
        spans.setdefault(patch.get_hatch() or "solid", []).append(tuple(np.round(data, 3)))
    assert sorted(spans["///"]) == [(2.0, 3.0), (3.0, 4.0)]       # no audio in seconds 2-4
    assert sorted(spans["solid"]) == [(4.0, 5.0)]                  # no face in second 4-5
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no audio" in legend and "no face" in legend
