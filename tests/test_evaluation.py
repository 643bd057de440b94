"""Missing-modality evaluation: each condition changes exactly what it says on the inputs the model
receives; an audio-only-signal corpus scores high with audio and at chance with video alone; bad
input fails before anything runs."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import vavl
from vavl import cli
from vavl.data import collate, write_manifest
from vavl.data.cache import FeatureCache
from vavl.data.conditions import apply_condition, parse_conditions
from vavl.data.datasets import check_labels
from vavl.core.errors import ConfigError
from vavl.evaluation.scoring import evaluate, predict_dataset, primary_metric
from vavl.nn.layers import masked_mean
from vavl.models.base import EmotionConfig, EmotionModel
from vavl.models.outputs import EmotionRecognitionOutput

LABELS = {0: "angry", 1: "happy", 2: "neutral", 3: "sad"}


class SpyConfig(EmotionConfig):
    model_type = "vavl_test_spy"


class SpyModel(EmotionModel):
    """Records every input it receives; predicts from means of the features."""

    config_class = SpyConfig

    def __init__(self, config):
        super().__init__(config)
        self.a, self.v = nn.Linear(config.audio_dim, config.num_labels), nn.Linear(config.visual_dim, config.num_labels)
        self.seen = []
        self.post_init()

    def forward(self, **inputs):
        self.seen.append({k: v.clone() for k, v in inputs.items()})
        return super().forward(**inputs)

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        a, v = self.a(masked_mean(audio, audio_mask)), self.v(masked_mean(visual, visual_mask))
        return {"fused_logits": a + v, "audio_logits": a, "visual_logits": v}


def feature_clips(n=6):
    g = torch.Generator().manual_seed(0)
    return [{"id": f"clip{i}", "speaker": f"s{i % 2}", "audio_features": torch.randn(10 + i, 4, generator=g) + 1,
             "visual_features": torch.randn(7 + i, 3, generator=g) + 1, "labels": torch.tensor(i % 4)} for i in range(n)]


def seen_by(condition, data, batch_size=3):
    """The inputs a spy model received, batches padded to one width and stacked (None: never given)."""
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, id2label=LABELS))
    predict_dataset(model, data, condition, batch_size=batch_size, progress=False)
    out = {}
    for k in ("audio_features", "audio_mask", "visual_features", "visual_mask"):
        parts = [s.get(k) for s in model.seen]
        if parts[0] is None:
            out[k] = None
            continue
        t = max(p.shape[1] for p in parts)
        out[k] = torch.cat([nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, t - p.shape[1])) for p in parts])
    return out


def test_av_passes_inputs_unchanged_and_audio_video_remove_one_modality():
    data = feature_clips()
    ref = collate([{**s, "index": i} for i, s in enumerate(data)])
    av = seen_by("av", data, batch_size=6)
    for k in ("audio_features", "audio_mask", "visual_features", "visual_mask"):
        assert torch.equal(av[k], ref[k])
    audio = seen_by("audio", data, batch_size=6)
    assert audio["visual_features"] is None and torch.equal(audio["audio_features"], ref["audio_features"])
    video = seen_by("video", data, batch_size=6)
    assert video["audio_features"] is None and torch.equal(video["visual_features"], ref["visual_features"])


@pytest.mark.parametrize("kind,changed,kept", [("drop-frames", "visual", "audio"), ("drop-audio", "audio", "visual")])
def test_dropping_masks_the_fraction_of_each_clip_and_nothing_else(kind, changed, kept):
    data = feature_clips()
    ref = collate([{**s, "index": i} for i, s in enumerate(data)])
    got = seen_by(f"{kind}:0.5", data, batch_size=6)
    assert torch.equal(got[f"{kept}_features"], ref[f"{kept}_features"]) and torch.equal(got[f"{kept}_mask"], ref[f"{kept}_mask"])
    for i, s in enumerate(data):
        n = s[f"{changed}_features"].shape[0]
        mask = got[f"{changed}_mask"][i]
        assert int(mask.sum()) == n - round(0.5 * n)                       # exactly p of the clip's frames
        assert not mask[n:].any()                                           # padding stays padding
        dropped = ref[f"{changed}_mask"][i] & ~mask
        assert torch.all(got[f"{changed}_features"][i, dropped] == 0)
        assert torch.equal(got[f"{changed}_features"][i, mask], ref[f"{changed}_features"][i, mask])
    # seeded per clip: the same frames whatever the batching
    again = seen_by(f"{kind}:0.5", data, batch_size=2)
    assert torch.equal(again[f"{changed}_mask"], got[f"{changed}_mask"])


def raw_batch():
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(2, 1600, generator=g) * 0.3
    attention = torch.ones(2, 1600, dtype=torch.bool)
    attention[1, 1200:] = False
    wave[1, 1200:] = 0
    pixels = torch.randn(2, 5, 3, 20, 20, generator=g)
    pixel_mask = torch.tensor([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return {"ids": ["a", "b"], "input_values": wave, "attention_mask": attention, "pixel_values": pixels,
            "pixel_mask": pixel_mask, "sample_rate": 16000}


def test_noise_snr_adds_white_noise_at_that_snr_to_the_waveform_only():
    batch = raw_batch()
    out = apply_condition(batch, parse_conditions("noise-snr:10")[0])
    assert torch.equal(out["pixel_values"], batch["pixel_values"])
    for i, n in enumerate((1600, 1200)):
        signal, noise = batch["input_values"][i, :n], (out["input_values"] - batch["input_values"])[i, :n]
        snr = 10 * math.log10(signal.pow(2).mean() / noise.pow(2).mean())
        assert abs(snr - 10) < 0.6
        assert torch.all(out["input_values"][i, n:] == 0)                   # padding untouched


def test_occlude_face_covers_fraction_of_each_present_crop():
    batch = raw_batch()
    out = apply_condition(batch, parse_conditions("occlude-face:0.25")[0])
    assert torch.equal(out["input_values"], batch["input_values"])
    changed = (out["pixel_values"] != batch["pixel_values"]).any(2)          # (b, t, H, W)
    for i in range(2):
        for j in range(5):
            share = changed[i, j].float().mean().item()
            assert share == (0.25 if batch["pixel_mask"][i, j] else 0.0)


def test_drop_audio_on_waveforms_silences_20ms_frames():
    batch = raw_batch()
    out = apply_condition(batch, parse_conditions("drop-audio:0.5")[0])
    frames = out["input_values"][0].reshape(-1, 320)                       # 5 frames of 20 ms
    assert int((frames == 0).all(1).sum()) == round(0.5 * 5)
    assert torch.equal(out["pixel_values"], batch["pixel_values"]) and torch.equal(out["attention_mask"], batch["attention_mask"])


def test_drop_frames_on_raw_crops_masks_them():
    batch = raw_batch()
    out = apply_condition(batch, parse_conditions("drop-frames:0.5")[0])
    assert out["pixel_mask"].sum(1).tolist() == [4 - 2, 5 - round(2.5)]
    assert torch.equal(out["input_values"], batch["input_values"])


class RawSpy(nn.Module):
    """A model with encoders: takes waveforms and crops, records them."""

    def __init__(self):
        super().__init__()
        self.config = SpyConfig(audio_dim=1, visual_dim=3, id2label=LABELS)
        self.w = nn.Linear(1, 4)
        self.seen = []

    @property
    def emotion_config(self):   # what every vavl model answers
        return self.config

    def forward(self, input_values=None, attention_mask=None, pixel_values=None, pixel_mask=None):
        self.seen.append({"input_values": input_values, "pixel_values": pixel_values})
        b = (input_values if input_values is not None else pixel_values).shape[0]
        a = self.w(input_values.mean(1, keepdim=True)) if input_values is not None else None
        v = self.w(pixel_values.mean((1, 2, 3, 4)).unsqueeze(1)) if pixel_values is not None else None
        logits = a if v is None else v if a is None else a + v
        return EmotionRecognitionOutput(logits=logits, audio_logits=a, visual_logits=v, fused_logits=logits,
                                        audio_present=torch.full((b,), a is not None), visual_present=torch.full((b,), v is not None))


def test_raw_media_model_gets_conditioned_waveforms_and_null_removed_heads():
    batch = raw_batch()
    data = [{"id": i, "speaker": "x", "labels": torch.tensor(k), "input_values": batch["input_values"][k],
             "attention_mask": batch["attention_mask"][k], "pixel_values": batch["pixel_values"][k],
             "pixel_mask": batch["pixel_mask"][k]} for k, i in enumerate(batch["ids"])]
    model = RawSpy()
    res = evaluate(model, data, "av,audio,noise-snr:0,occlude-face:0.5", bootstrap=20, progress=False)
    seen = model.seen
    assert seen[1]["pixel_values"] is None                                   # "audio"
    assert not torch.equal(seen[2]["input_values"], batch["input_values"])   # noise
    assert torch.equal(seen[3]["input_values"], batch["input_values"])       # occlusion leaves audio alone
    assert res["conditions"]["audio"]["visual"]["UA"] is None and "removed" in res["conditions"]["audio"]["visual"]["note"]


def test_raw_only_conditions_on_cached_features_fail_before_running():
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, id2label=LABELS))
    for cond in ("noise-snr:10", "occlude-face:0.5"):
        with pytest.raises(ConfigError, match="raw media"):
            evaluate(model, feature_clips(), ["av", cond], progress=False)
    assert model.seen == []


@pytest.mark.parametrize("spec,match", [("av,blur", "unknown condition 'blur'.*drop-frames"), ("drop-frames", "needs a number"),
                                        ("drop-frames:1.5", r"\[0, 1\]"), ("audio:0.5", "takes no parameter"),
                                        ("noise-snr:abc", "needs a number"), ("av,av", "repeat"), ("", "no conditions")])
def test_bad_conditions_name_the_valid_ones(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_conditions(spec)


def test_model_labels_must_match_the_manifest():
    cfg = SpyConfig(audio_dim=4, visual_dim=3, id2label=LABELS)
    check_labels(cfg, [{"id": str(i), "label": LABELS[i]} for i in range(4)])
    with pytest.raises(ConfigError, match="unknown to the model: \\['fear'\\]"):
        check_labels(cfg, [{"id": "x", "label": "fear"}] + [{"id": str(i), "label": LABELS[i]} for i in range(4)])
    reg = SpyConfig(audio_dim=4, visual_dim=3, task="regression")
    with pytest.raises(ConfigError, match="dominance"):
        check_labels(reg, [{"id": "x", "attributes": {"arousal": 3.0, "valence": 2.0}}])


# ---- an audio-only-signal corpus, end to end through the CLI -------------------------------------
def audio_signal_corpus(root, n_train=160, n_test=80, dim=8):
    """Feature cache + manifest where only the audio features carry the label."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(4, dim, generator=g) * 2
    cache, records = FeatureCache(root / "cache"), []
    for i in range(n_train + n_test):
        label = i % 4
        audio = prototypes[label] + torch.randn(12, dim, generator=g)
        visual = torch.randn(6, dim, generator=g)
        cid = f"clip{i:03d}"
        cache.write(cid, audio, visual, {"label": LABELS[label]})
        records.append({"id": cid, "speaker": f"spk{i % 5}", "audio": None, "video": None, "label": LABELS[label],
                        "folds": {"synthetic-speaker-overlap": "train" if i < n_train else "test"}})
    write_manifest(records, root / "manifest.jsonl")
    return cache, records


def train_small(records, cache, steps=120):
    from vavl.data.cache import FeatureDataset

    torch.manual_seed(0)
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16,
                              num_layers=0, dropout=0.0, id2label=LABELS)
    ds = FeatureDataset(cache, [r for r in records if r["folds"]["synthetic-speaker-overlap"] == "train"], model.config)
    batch = collate([{**ds[i], "index": i} for i in range(len(ds))])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(audio_features=batch["audio_features"], audio_mask=batch["audio_mask"], visual_features=batch["visual_features"],
                     visual_mask=batch["visual_mask"], labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_audio_only_signal_scores_high_with_audio_and_at_chance_with_video(tmp_path):
    cache, records = audio_signal_corpus(tmp_path)
    model = train_small(records, cache)
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "report"
    code = cli.main(["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.jsonl"),
                     "--protocol", "synthetic-speaker-overlap", "--split", "test", "--cache", str(tmp_path / "cache"),
                     "--conditions", "av,audio,video,drop-frames:0.5,drop-audio:0.5", "--bootstrap", "100", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "metrics.json").read_text())
    c = res["conditions"]
    assert res["protocol"] == "synthetic-speaker-overlap"     # speakers shared by train and test: said in metrics.json
    assert res["n_samples"] == 80 and set(c) == {"av", "audio", "video", "drop-frames:0.5", "drop-audio:0.5"}
    assert c["audio"]["fused"]["UA"] > 0.9 and c["audio"]["audio"]["UA"] > 0.9
    assert c["video"]["fused"]["UA"] < 0.45 and c["av"]["visual"]["UA"] < 0.45          # chance is 0.25
    assert c["av"]["fused"]["UA"] > 0.85 and primary_metric(res) == c["av"]["fused"]["UA"]
    assert c["video"]["audio"]["UA"] is None and c["audio"]["visual"]["UA"] is None      # removed heads: null, not garbage
    lo, hi = c["audio"]["fused"]["ci95"]["UA"]
    assert lo <= c["audio"]["fused"]["UA"] <= hi
    assert sum(v["n"] for v in c["av"]["fused"]["per_speaker"].values()) == 80
    assert np.asarray(c["av"]["fused"]["confusion_matrix"]).sum() == 80
    for name in ("report.md", "robustness.png", "confusion_av.png", "confusion_drop-frames_0.5.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    audio_row = next(line for line in report.splitlines() if line.startswith("| audio | fused |"))
    video_row = next(line for line in report.splitlines() if line.startswith("| video | fused |"))
    assert float(audio_row.split("|")[3].split()[0]) > 90 and float(video_row.split("|")[3].split()[0]) < 45


def test_cli_errors_before_running(tmp_path, capsys):
    cache, records = audio_signal_corpus(tmp_path, n_train=8, n_test=8)
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0,
                              id2label={0: "angry", 1: "happy", 2: "fear", 3: "sad"})
    model.save_pretrained(tmp_path / "model")
    args = ["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.jsonl"),
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--split", "all"]
    assert cli.main(args + ["--conditions", "av,fog"]) == 2
    assert "unknown condition 'fog'" in capsys.readouterr().err
    assert cli.main(args + ["--conditions", "av"]) == 2
    assert "differ from the model's" in capsys.readouterr().err
    vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0,
                      id2label=LABELS).save_pretrained(tmp_path / "good")
    no_cache = ["evaluate", "--model", str(tmp_path / "good"), "--manifest", str(tmp_path / "manifest.jsonl"), "--out", str(tmp_path / "out"),
                "--split", "all"]
    assert cli.main(no_cache) == 2                                            # a features model needs --cache
    assert "--cache" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_needs_a_protocol_or_an_explicit_split_all(tmp_path, capsys):
    """Without --protocol every clip is scored, training clips included: the user has to say so."""
    cache, records = audio_signal_corpus(tmp_path, n_train=8, n_test=8)
    vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=0,
                      id2label=LABELS).save_pretrained(tmp_path / "model")
    args = ["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.jsonl"),
            "--cache", str(tmp_path / "cache"), "--conditions", "av", "--bootstrap", "0"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--protocol" in err and "--split all" in err
    assert cli.main(args + ["--split", "test", "--out", str(tmp_path / "a")]) == 2      # a split needs its protocol
    assert cli.main(args + ["--split", "all", "--protocol", "synthetic-speaker-overlap", "--out", str(tmp_path / "a")]) == 2
    assert not (tmp_path / "a").exists()
    assert cli.main(args + ["--split", "all", "--out", str(tmp_path / "all")]) == 0
    assert cli.main(args + ["--protocol", "synthetic-speaker-overlap", "--out", str(tmp_path / "test")]) == 0
    every, test = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("all", "test"))
    assert (every["n_samples"], every["split"]) == (16, "all clips") and (test["n_samples"], test["split"]) == (8, "test")


def test_raw_media_model_with_encoders_end_to_end(tmp_path):
    """Real clips -> decode -> faces -> processor -> encoders -> fusion, under raw-only conditions."""
    from media_utils import write_face_clip

    records = []
    for i in range(4):
        path = write_face_clip(tmp_path / f"clip{i}.mp4", seconds=1.0, fps=10.0)
        records.append({"id": f"clip{i}", "speaker": f"s{i % 2}", "video": path.name, "audio": path.name, "label": LABELS[i]})
    write_manifest(records, tmp_path / "manifest.jsonl")
    torch.manual_seed(0)
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_encoder="zcr-energy", visual_encoder="face-grey",
                              hidden_size=16, num_layers=0, id2label=LABELS)
    model.save_pretrained(tmp_path / "model")
    from vavl.models.loading import load_model

    loaded = load_model(str(tmp_path / "model"))
    seen = []
    loaded.register_forward_pre_hook(lambda m, args, kw: seen.append({k: v.clone() for k, v in kw.items()}), with_kwargs=True)
    import vavl.models.loading as ev
    original = ev.load_model
    ev.load_model = lambda path: loaded
    try:
        code = cli.main(["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.jsonl"),
                         "--split", "all", "--conditions", "av,audio,video,noise-snr:0,occlude-face:0.5", "--batch-size", "4",
                         "--bootstrap", "20", "--out", str(tmp_path / "report")])
    finally:
        ev.load_model = original
    assert code == 0
    av, audio, video, noise, occl = seen
    assert {"input_values", "pixel_values"} <= set(av) and "pixel_values" not in audio and "input_values" not in video
    assert not torch.equal(noise["input_values"], av["input_values"]) and torch.equal(noise["pixel_values"], av["pixel_values"])
    assert torch.equal(occl["input_values"], av["input_values"])
    share = (occl["pixel_values"] != av["pixel_values"]).any(2).float().mean((2, 3))[av["pixel_mask"]]
    assert torch.allclose(share, torch.tensor(0.5), atol=0.02)
    res = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert res["source"] == "raw media" and res["conditions"]["noise-snr:0"]["fused"]["n"] == 4
    assert res["conditions"]["video"]["audio"]["UA"] is None


def test_regression_report_has_ccc_pearson_rmse_per_attribute(tmp_path):
    from vavl.evaluation.reports import write_report

    g = torch.Generator().manual_seed(0)
    data = [{"id": f"c{i}", "speaker": f"s{i % 3}", "audio_features": torch.randn(6, 4, generator=g),
             "visual_features": torch.randn(3, 3, generator=g), "labels": torch.rand(3, generator=g) * 4 + 1} for i in range(30)]
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, task="regression"))
    res = evaluate(model, data, "av,video", bootstrap=50, progress=False)
    fused = res["conditions"]["av"]["fused"]
    assert set(fused) >= {"arousal", "valence", "dominance", "mean_ccc", "ci95", "per_speaker", "n"}
    assert set(fused["arousal"]) == {"ccc", "pearson", "rmse"} and set(fused["ci95"]["valence"]) == {"ccc", "pearson", "rmse"}
    assert res["conditions"]["video"]["audio"]["arousal"] is None
    out = write_report(res, tmp_path)
    assert "| av | fused |" in (out / "report.md").read_text() and (out / "robustness.png").is_file()
    assert not list(out.glob("confusion_*.png"))


def test_condition_that_leaves_no_input_gives_null_not_garbage():
    data = [{**s, "visual_features": None} for s in feature_clips(4)]       # audio-only clips
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, id2label=LABELS))
    res = evaluate(model, data, "av,video", bootstrap=10, progress=False)
    assert res["conditions"]["video"]["fused"]["UA"] is None and "no clip has any input" in res["conditions"]["video"]["fused"]["note"]
    assert res["conditions"]["av"]["visual"]["UA"] is None and res["conditions"]["av"]["fused"]["n"] == 4


@pytest.mark.parametrize("kind,zeroed,kept", [("zero-audio", "audio", "visual"), ("zero-video", "visual", "audio")])
def test_zero_conditions_multiply_one_modality_by_zero_in_every_clip_and_keep_the_masks(kind, zeroed, kept):
    data = feature_clips()
    ref = collate([{**s, "index": i} for i, s in enumerate(data)])
    got = seen_by(kind, data, batch_size=4)
    assert torch.all(got[f"{zeroed}_features"] == 0) and ref[f"{zeroed}_features"].abs().sum() > 0
    for k in (f"{zeroed}_mask", f"{kept}_features", f"{kept}_mask"):
        assert torch.equal(got[k], ref[k])


def test_zero_conditions_keep_the_prediction_rule_while_audio_video_answer_with_one_head():
    data = feature_clips()
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, id2label=LABELS, prediction="heads_mean")).eval()
    ref = collate([{**s, "index": i} for i, s in enumerate(data)])
    with torch.no_grad():
        zeroed = model(audio_features=ref["audio_features"] * 0, audio_mask=ref["audio_mask"],
                       visual_features=ref["visual_features"], visual_mask=ref["visual_mask"])
    assert torch.equal(zeroed.head_used, torch.full((6,), 3))      # the mean of the three heads answers
    zero_audio = predict_dataset(model, data, "zero-audio", batch_size=6, progress=False)
    video = predict_dataset(model, data, "video", batch_size=6, progress=False)
    assert torch.allclose(zero_audio.logits, zeroed.logits, atol=1e-6)
    assert torch.allclose(video.logits, zeroed.visual_logits, atol=1e-6)   # head-based: the visual head alone
    assert not torch.allclose(zero_audio.logits, video.logits, atol=1e-3)
    assert bool(zero_audio.audio_present.all()) and not bool(video.audio_present.any())
    results = evaluate(model, data, ["zero-audio", "zero-video", "audio", "video"], batch_size=6, bootstrap=0, progress=False)
    assert results["conditions"]["zero-audio"]["audio"]["n"] == 6        # the clips still have (zeroed) audio
    assert results["conditions"]["video"]["audio"]["note"].startswith("audio removed")
    assert "multiplied by 0" in results["condition_semantics"]["zero-video"]


@pytest.mark.parametrize("task", ["single_label_classification", "regression"])
def test_a_speaker_bootstrap_over_too_few_speakers_is_flagged_and_replaced_by_the_clip_bootstrap(tmp_path, task):
    from vavl.evaluation.reports import write_report
    from vavl.evaluation.scoring import MIN_BOOTSTRAP_CLUSTERS

    kw = {"id2label": LABELS} if task != "regression" else {"task": task}
    model = SpyModel(SpyConfig(audio_dim=4, visual_dim=3, **kw)).eval()
    key = "UA" if task != "regression" else "mean_ccc"

    def clips(n, speakers):
        data = feature_clips(n)
        g = torch.Generator().manual_seed(1)
        for i, s in enumerate(data):
            s["speaker"] = f"s{i % speakers}"
            if task == "regression":
                s["labels"] = torch.rand(3, generator=g) * 4 + 1
        return data

    two = clips(12, 2)   # two speakers: three distinct speaker resamples
    by_speaker = evaluate(model, two, ["av"], batch_size=6, bootstrap=200, progress=False)
    by_clip = evaluate(model, two, ["av"], batch_size=6, bootstrap=200, progress=False, bootstrap_unit="clip")
    fused = by_speaker["conditions"]["av"]["fused"]
    assert fused["ci_unit"] == "clip" and "degenerate" in fused["ci_note"] and "2 speaker" in fused["ci_note"]
    assert fused["ci95"] == by_clip["conditions"]["av"]["fused"]["ci95"]
    assert "ci_note" not in by_clip["conditions"]["av"]["fused"]
    assert by_speaker["bootstrap"]["min_clusters"] == MIN_BOOTSTRAP_CLUSTERS
    write_report(by_speaker, tmp_path / "few")
    report = (tmp_path / "few" / "report.md").read_text()
    assert " †" in report and "speaker bootstrap degenerate" in report
    assert json.loads((tmp_path / "few" / "metrics.json").read_text())["conditions"]["av"]["fused"]["ci_unit"] == "clip"

    many = clips(24, MIN_BOOTSTRAP_CLUSTERS)
    fused = evaluate(model, many, ["av"], batch_size=6, bootstrap=200, progress=False)["conditions"]["av"]["fused"]
    assert fused["ci_unit"] == "speaker" and "ci_note" not in fused and fused["ci95"][key][0] is not None


def test_a_model_whose_outputs_depend_on_the_batch_takes_its_recipes_test_batch_or_asks_for_one(tmp_path, capsys):
    cache, records = audio_signal_corpus(tmp_path, n_train=4, n_test=12)
    torch.manual_seed(0)
    model = vavl.create_model("auxformer_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=1,
                              num_heads=2, id2label=LABELS, official_batching=True)
    model.save_pretrained(tmp_path / "model")
    base = ["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.jsonl"), "--cache",
            str(tmp_path / "cache"), "--protocol", "synthetic-speaker-overlap", "--conditions", "av", "--bootstrap", "0"]
    assert cli.main(base + ["--out", str(tmp_path / "none")]) == 2       # no recipe config, no --batch-size: asked for
    assert "--batch-size" in capsys.readouterr().err and not (tmp_path / "none").exists()

    def confusion(out):
        return json.loads((out / "metrics.json").read_text())["conditions"]["av"]["fused"]["confusion_matrix"]

    (tmp_path / "model" / "finetune_config.yaml").write_text("train:\n  eval_batch_size: 64\nevaluate:\n  test_batch_size: 5\n")
    assert cli.main(base + ["--out", str(tmp_path / "recipe")]) == 0
    assert "batch size 5" in capsys.readouterr().out
    assert cli.main(base + ["--out", str(tmp_path / "five"), "--batch-size", "5"]) == 0
    assert confusion(tmp_path / "recipe") == confusion(tmp_path / "five")
    plain = vavl.create_model("auxformer_w2v2l_effb2.crema_d", audio_dim=8, visual_dim=8, hidden_size=16, num_layers=1,
                              num_heads=2, id2label=LABELS)
    plain.save_pretrained(tmp_path / "plain")                             # batch-independent: the default 16, no question
    assert cli.main(base[:2] + [str(tmp_path / "plain")] + base[3:] + ["--out", str(tmp_path / "plain-out")]) == 0
