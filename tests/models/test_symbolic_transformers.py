"""Transformers exported with symbolic batch AND sequence import with no shape option:
their shape subgraphs (BERT's position and token-type ids, its extended attention
mask, GPT-2's causal mask, ViT's class token expanded to the batch) are computed at
run time (`qcc.frontends.onnx_dynamic`).

Models are built from tiny random `transformers` configs (no download), exported in
the test by the TorchScript exporter (`dynamo=False`, opset 14) and the dynamo
exporter (`dynamo=True`, opset 18). Oracle: onnxruntime with graph optimizations
off on the exported model (and on qcc's fake-quant export), at sizes different
from the export's and from qcc's probe sizes.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from _torchvision import import_torchvision  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:
    import_torchvision()  # transformers imports torchvision when it is installed
    import transformers  # noqa: E402
except ImportError as e:
    pytest.skip(f"needs transformers: {e}", allow_module_level=True)

import qcc  # noqa: E402
from qcc import ir, runtime  # noqa: E402

SIZES = ((1, 7), (3, 16), (2, 33))
"""(batch, sequence) the tests run at; the export traced batch 2, sequence 8."""
VOCAB = 100
EXPORTERS = {"torchscript": dict(dynamo=False, opset_version=14),
             "dynamo": dict(dynamo=True, opset_version=18)}


def _bert():
    # 128 positions: qcc imports a symbolic sequence at probe lengths up to 97
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=VOCAB,
                                  max_position_embeddings=128)
    return transformers.BertModel(cfg), ("input_ids", "attention_mask")


def _roberta():  # position ids from a cumsum of the non-pad tokens
    cfg = transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=VOCAB,
                                     max_position_embeddings=128)
    return transformers.RobertaModel(cfg), ("input_ids", "attention_mask")


def _gpt2():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                  vocab_size=VOCAB, use_cache=False, bos_token_id=2,
                                  eos_token_id=3)
    return transformers.GPT2Model(cfg), ("input_ids", "attention_mask")


def _vit():
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                 num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64)
    return transformers.ViTModel(cfg), ("pixel_values",)


MODELS = {"bert": _bert, "roberta": _roberta, "gpt2": _gpt2, "vit": _vit}


class _Hidden(torch.nn.Module):
    """The model called with keyword inputs; its last hidden state as the output."""

    def __init__(self, model, names) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args, strict=True)), return_dict=True)[0]


def _feeds(name: str, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name == "vit":
        return {"pixel_values": rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)}
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq - 3:] = 0  # padding in the last row
    return {"input_ids": rng.integers(2, VOCAB, (batch, seq), dtype=np.int64),
            "attention_mask": mask}


def _export(name: str, exporter: str, path: str) -> None:
    torch.manual_seed(0)
    model, names = MODELS[name]()
    model.config._attn_implementation = "eager"
    module = _Hidden(model.eval(), names).eval()
    feeds = _feeds(name, 2, 8)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    axes = {0: "batch"} if name == "vit" else {0: "batch", 1: "sequence"}
    if EXPORTERS[exporter]["dynamo"]:
        dims = {0: torch.export.Dim("batch", min=1, max=1024)}
        if name != "vit":
            dims[1] = torch.export.Dim("sequence", min=2, max=100)
        extra = dict(dynamic_shapes=(tuple(dims for _ in names),), optimize=True,
                     external_data=False)
    else:
        extra = dict(dynamic_axes={n: axes for n in [*names, "output"]})
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=list(names),
                          output_names=["output"], **EXPORTERS[exporter], **extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    made: dict[tuple[str, str], str] = {}
    folder = tmp_path_factory.mktemp("symbolic")

    def get(name: str, exporter: str) -> str:
        if (name, exporter) not in made:
            path = os.fspath(folder / f"{name}_{exporter}.onnx")
            _export(name, exporter, path)
            made[(name, exporter)] = path
        return made[(name, exporter)]

    return get


def ort_run(path: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("name", ["bert", "roberta", "gpt2"])
def test_text_model_with_symbolic_batch_and_sequence_matches_onnxruntime(
        exported, name, exporter):
    path = exported(name, exporter)
    module = qcc.load(path)  # no input_shapes
    fn = ir.main_func(module)
    for arg, attrs in zip(fn.body.block.args, fn.arg_attrs.data, strict=True):
        assert str(arg.type) == "tensor<?x?xi64>"
        assert [n.data for n in attrs.data["qnn.dims"].data] == ["batch", "sequence"]
    ops = {op.name for op in fn.body.block.ops}
    assert "qnn.shape_of" in ops  # the shape subgraphs stay in the graph
    for batch, seq in SIZES:
        feeds = _feeds(name, batch, seq, seed=batch)
        got, want = runtime.run(module, feeds)["output"], ort_run(path, feeds)
        assert got.shape == want.shape == (batch, seq, 32)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4,
                                   err_msg=f"{name} ({exporter}) at {batch}x{seq}")


@pytest.mark.parametrize("exporter", list(EXPORTERS))
def test_vit_with_symbolic_batch_expands_the_class_token_at_run_time(exported, exporter):
    path = exported("vit", exporter)
    module = qcc.load(path)
    fn = ir.main_func(module)
    assert str(fn.body.block.args[0].type) == "tensor<?x3x32x32xf32>"
    assert "qnn.dynamic_broadcast" in {op.name for op in fn.body.block.ops}
    for batch in (1, 3, 5):
        feeds = _feeds("vit", batch, 0, seed=batch)
        got, want = runtime.run(module, feeds)["output"], ort_run(path, feeds)
        assert got.shape == want.shape == (batch, 17, 32)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_quantize_bert_keeps_both_symbolic_dims(exported, tmp_path):
    """Quantize with no shape option; the fake-quant ONNX keeps batch and sequence
    symbolic, and onnxruntime runs it at batch 1, 3 and 64 as qcc's runtime runs
    the fake-quant IR."""
    path = exported("bert", "torchscript")
    calib = _feeds("bert", 16, 12, seed=7)
    result = qcc.quantize(path, calib, outdir=tmp_path / "out", progress=False)
    fake = os.fspath(tmp_path / "out" / "bert_torchscript_fake_quant.onnx")
    model = onnx.load(fake)
    assert [_dims(i) for i in model.graph.input] == [["batch", "sequence"]] * 2
    assert _dims(model.graph.output[0]) == ["batch", "sequence", 32]
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    module = result.module
    for batch, seq in ((1, 5), (3, 12), (64, 20)):
        feeds = _feeds("bert", batch, seq, seed=batch)
        got, want = runtime.run(module, feeds)["output"], ort_run(fake, feeds)
        assert got.shape == want.shape == (batch, seq, 32)
        # fake-quant rounding: a value on a rounding edge may land one step apart
        close = np.isclose(got, want, rtol=1e-3, atol=1e-3)
        assert close.mean() > 0.99, f"{batch}x{seq}: {close.mean():.4f} of outputs match"
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    # the integer ONNX (qcc-realize-int8's graph) keeps them too and computes
    # qcc's integers: graph optimizations off, so its arithmetic is exact
    from qcc import passes
    from qcc.exporters.onnx_int import export_onnx_int

    passes.run(module, "qcc-realize-int8")
    integer = os.fspath(tmp_path / "bert_int.onnx")
    model = export_onnx_int(module, integer)
    assert [_dims(i) for i in model.graph.input] == [["batch", "sequence"]] * 2
    for batch, seq in ((1, 5), (3, 20)):
        feeds = _feeds("bert", batch, seq, seed=batch)
        np.testing.assert_allclose(runtime.run(module, feeds)["output"],
                                   ort_run(integer, feeds), rtol=1e-5, atol=1e-5)
