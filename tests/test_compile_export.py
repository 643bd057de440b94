"""torch.compile and torch.export see vavl's attention: a small AuxFormer compiles as one graph
(the C kernel is one custom-op node), and every registered model that attends exports with
attn_implementation="sdpa" (plain SDPA in the graph) and gives the same outputs."""
import dataclasses

import pytest
import torch

import vavl
from vavl.nn.attention import MultiHeadAttention
from vavl.models.auxformer import AuxFormerConfig, AuxFormerForEmotionRecognition
from vavl.models.base import EmotionModel
from vavl.models.baselines.branch import SelfAttention
from vavl.models.vavl.conformer import RelativeSelfAttention

TINY = dict(audio_dim=8, visual_dim=6, hidden_size=16, num_heads=4, num_layers=1, aux_hidden_sizes=[12], num_labels=4,
            aux_repeats=1)
NO_DROPOUT = {k: 0.0 for k in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")}


@pytest.mark.parametrize("how", ["cpu_kernel", "sdpa"])
def test_auxformer_compiles_to_one_graph(how):
    """fullgraph=True fails on any graph break; aot_eager also runs the op's fake and backward."""
    torch.manual_seed(0)
    model = AuxFormerForEmotionRecognition(AuxFormerConfig(**TINY, **NO_DROPOUT, attn_implementation=how)).train()
    inputs = model.dummy_inputs  # padding and a missing modality in each stream
    inputs.pop("labels")
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(**inputs)
    out.logits.sum().backward()
    compiled = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(**inputs)
    ref.logits.sum().backward()
    assert torch.allclose(out.logits, ref.logits, atol=1e-6)
    for a, p in zip(compiled, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-5)


SMALL = {"audio_dim": 12, "visual_dim": 10, "hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8,
         "num_attention_heads": 2, "num_heads": 2, "num_layers": 1, "num_audio_layers": 1, "num_visual_layers": 1,
         "num_shared_layers": 1, "conv_kernel_size": 5}
ATTENTION_LAYERS = (MultiHeadAttention, RelativeSelfAttention, SelfAttention)


def small_model(name, how):
    fields = {f.name for f in dataclasses.fields(vavl.get_entry(name).model_class.config_class)}
    torch.manual_seed(0)
    return vavl.create_model(name, attn_implementation=how, **{k: v for k, v in SMALL.items() if k in fields}).eval()


ATTENDING = [n for n in vavl.list_models() if issubclass(vavl.get_entry(n).model_class, EmotionModel)
             and any(isinstance(m, ATTENTION_LAYERS) for m in small_model(n, "sdpa").modules())]


def test_the_models_that_attend_are_the_fusion_families():
    families = {vavl.get_entry(n).architecture.split("_")[0] for n in ATTENDING}
    assert {"auxformer", "mult", "vavl", "audio", "visual", "early", "late"} <= families


def exported_ops(program) -> set[str]:
    return {str(node.target) for node in program.graph.nodes if node.op == "call_function"}


@pytest.mark.parametrize("name", ATTENDING)
def test_every_model_that_attends_exports_with_sdpa(name):
    model = small_model(name, "sdpa")
    inputs = model.dummy_inputs
    inputs.pop("labels")
    program = torch.export.export(model, (), inputs)
    ops = exported_ops(program)
    assert "aten.scaled_dot_product_attention.default" in ops and not any(op.startswith("vavl.") for op in ops)
    with torch.no_grad():
        assert torch.allclose(program.module()(**inputs).logits, model(**inputs).logits, atol=1e-6)


def test_export_keeps_the_kernel_as_one_op():
    model = small_model("auxformer", "cpu_kernel")
    inputs = model.dummy_inputs
    inputs.pop("labels")
    program = torch.export.export(model, (), inputs)
    ops = exported_ops(program)
    assert "vavl.cpu_attention.default" in ops and "aten.scaled_dot_product_attention.default" not in ops
    with torch.no_grad():
        assert torch.allclose(program.module()(**inputs).logits, model(**inputs).logits, atol=1e-6)
