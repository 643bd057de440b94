"""recipes/finetune.py's GPU settings, checked on the CPU: train.mixed_precision=bf16 really runs
the model under autocast (through Accelerate), train.compile compiles the model in place and
trains it as eager does, and the cache loader keeps its workers and reads ahead."""
import json
from pathlib import Path

import pytest
import torch

from test_finetune import finetune, make_corpus, tiny_overrides
from vavl.data import model_inputs
from vavl.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes/configs/crema_d/auxformer.yaml"
NO_DROPOUT = [f"model.config.{k}=0.0" for k in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=24)


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one mixed-precision setting per process: each test starts and leaves it unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def setup(corpus, out, *extra):
    return finetune.setup(finetune.load_config(CONFIG, tiny_overrides(CONFIG, corpus, out) + list(extra)))


def linear_output_dtypes(run) -> set:
    """The dtypes the prepared model's Linear layers compute in, on one training batch."""
    seen, model = set(), run["model"]
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype)) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    out = model(**model_inputs(next(iter(run["train_dl"]))))
    for h in hooks:
        h.remove()
    return seen, out


@pytest.mark.parametrize("precision,computes_in", [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_mixed_precision_bf16_runs_the_model_under_autocast(corpus, tmp_path, precision, computes_in):
    run = setup(corpus, tmp_path, f"train.mixed_precision={precision}")
    try:
        seen, out = linear_output_dtypes(run)
        assert seen == {computes_in}
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)   # outputs come back in fp32
        assert all(p.dtype == torch.float32 for p in run["model"].parameters())   # weights stay fp32
    finally:
        run["accelerator"].end_training()


def test_the_loader_keeps_its_workers_between_epochs_and_reads_ahead(corpus, tmp_path):
    run = setup(corpus, tmp_path, "data.num_workers=1")
    try:
        dl = run["train_dl"]
        assert dl.num_workers == 1 and dl.persistent_workers and dl.prefetch_factor == 4
        assert dl.pin_memory == torch.cuda.is_available()
        epochs = [[b["audio_features"].shape for b in dl] for _ in range(2)]
        assert len(epochs[0]) == len(epochs[1]) == len(dl) > 1
    finally:
        run["accelerator"].end_training()


def train_losses(corpus, out, *extra) -> tuple[list[float], bool]:
    run = setup(corpus, out, "train.max_steps=3", "train.epochs=2", "log.every=1", "evaluate.dev=false", *NO_DROPOUT, *extra)
    compiled = run["model"]._compiled_call_impl is not None
    try:
        finetune.train(run)
    finally:
        run["accelerator"].end_training()
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r], compiled


@pytest.mark.slow
def test_compile_trains_the_model_as_eager_does(corpus, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, was_compiled = train_losses(corpus, tmp_path / "eager")
    assert counters["stats"]["unique_graphs"] == 0
    compiled, is_compiled = train_losses(corpus, tmp_path / "compiled", "train.compile=true", "train.compile_backend=aot_eager")
    assert not was_compiled and is_compiled and counters["stats"]["unique_graphs"] >= 1   # dynamo traced the model
    assert len(eager) == len(compiled) == 3
    assert all(abs(a - b) <= 1e-5 for a, b in zip(eager, compiled)), (eager, compiled)
    assert (tmp_path / "compiled" / "config.json").is_file()   # the best model saved as usual (in-place compile)


def test_an_unknown_compile_backend_or_negative_workers_is_one_line():
    with pytest.raises(ConfigError, match="train.compile_backend='fastest' is not a torch.compile backend"):
        finetune.load_config(None, ["data.manifest=x.jsonl", "train.compile=true", "train.compile_backend=fastest"])
    with pytest.raises(ConfigError, match="data.num_workers=-1 must be 0"):
        finetune.load_config(None, ["data.manifest=x.jsonl", "data.num_workers=-1"])
