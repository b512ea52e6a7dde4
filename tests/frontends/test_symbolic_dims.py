"""Symbolic dims end to end: torch exports with dynamic_axes import with `?` dims,
run at any batch/sequence length, quantize with no shape option, and their exports
keep the source's dim names. Oracle: onnxruntime on the source model and on qcc's
fake-quant export (qcc's runtime is checked against it, never against itself)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import qcc
from qcc import ir, runtime
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx import load_onnx

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from qcc.testing import ort as exact_ort  # noqa: E402

nn = torch.nn


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class _Block(nn.Module):
    """One transformer encoder block: attention with B and S taken from the input."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.d = heads, d
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))

    def forward(self, x):
        b, s, d = x.shape
        h = self.heads
        q, k, v = (t.reshape(b, s, h, d // h).transpose(1, 2)
                   for t in self.qkv(x).split(self.d, dim=-1))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, -1)
        x = self.ln1(x + self.o((a @ v).transpose(1, 2).reshape(b, s, d)))
        return self.ln2(x + self.ff(x))


class _Upsample(nn.Module):
    """Resize (nearest and bilinear, by scale) of a tensor with a symbolic batch."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.d = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x):
        return self.d(self.up2(self.up(torch.relu(self.c(x)))))


def _export(model, example, path, axes):
    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": axes, "y": axes},
                          opset_version=14, dynamo=False)
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    return _export(_CNN(), torch.randn(2, 1, 16, 16),
                   tmp_path_factory.mktemp("sym") / "cnn.onnx", {0: "batch"})


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    torch.manual_seed(0)
    return _export(_Block(), torch.randn(2, 5, 32),
                   tmp_path_factory.mktemp("sym") / "block.onnx", {0: "batch", 1: "seq"})


@pytest.fixture(scope="module")
def upsample(tmp_path_factory):
    torch.manual_seed(0)
    return _export(_Upsample(), torch.randn(2, 3, 8, 8),
                   tmp_path_factory.mktemp("sym") / "upsample.onnx", {0: "batch"})


SIZES = {"upsample": [(1, 3, 8, 8), (3, 3, 8, 8), (64, 3, 8, 8)],
         "cnn": [(1, 1, 16, 16), (3, 1, 16, 16), (64, 1, 16, 16)],
         "block": [(1, 3, 32), (3, 7, 32), (64, 11, 32)]}


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("which", ["cnn", "block", "upsample"])
def test_import_keeps_symbolic_dims_and_runs_at_any_size(which, request):
    path = request.getfixturevalue(which)
    module = qcc.load(path)
    fn = ir.main_func(module)
    arg = fn.body.block.args[0].type
    names = [n.data for n in fn.arg_attrs.data[0].data["qnn.dims"].data]
    if which == "cnn":
        assert str(arg) == "tensor<?x1x16x16xf32>" and names == ["batch", "", "", ""]
    elif which == "upsample":
        assert str(arg) == "tensor<?x3x8x8xf32>" and names == ["batch", "", "", ""]
    else:
        assert str(arg) == "tensor<?x?x32xf32>" and names == ["batch", "seq", ""]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in SIZES[which]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = runtime.run(module, {"x": x})["y"]
        want = session.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["cnn", "block", "upsample"])
def test_quantize_with_no_shape_option_exports_symbolic_dims(which, request, tmp_path):
    path = request.getfixturevalue(which)
    rng = np.random.default_rng(2)
    sample = SIZES[which][1][1:]
    calib = {"x": rng.standard_normal((40, *sample)).astype(np.float32)}
    result = qcc.quantize(str(path), calib, outdir=tmp_path / "out", progress=False)
    stem = path.stem
    expected = {"cnn": (["batch", 1, 16, 16], ["batch", 10]),
                "upsample": (["batch", 3, 8, 8], ["batch", 2, 32, 32]),
                "block": (["batch", "seq", 32], ["batch", "seq", 32])}[which]
    for kind in ("fake_quant", "deploy"):
        model = onnx.load(tmp_path / "out" / f"{stem}_{kind}.onnx")
        assert (_dims(model.graph.input[0]), _dims(model.graph.output[0])) == expected
    # no QDQ fusion: onnxruntime's fused u8s8 kernels saturate on CPUs without VNNI
    session = exact_ort.session(tmp_path / "out" / f"{stem}_fake_quant.onnx")
    for shape in SIZES[which]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = runtime.run(result.module, {"x": x})["y"]
        want = session.run(None, {"x": x})[0]
        # fake-quant rounding: a value on a rounding edge may land one step apart
        close = np.isclose(got, want, rtol=1e-3, atol=1e-3)
        assert close.mean() > 0.99, f"{shape}: {close.mean():.4f} of outputs match"
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def _model_with_batch_constant(tmp_path):
    """x + ConstantOfShape(Shape(x)): the constant depends on the batch size."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("ConstantOfShape", ["s"], ["c"], name="ones",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "batch_constant.onnx"
    onnx.save(model, path)
    return path


def _model_with_undecidable_pad(tmp_path):
    """Pad(x) by as many rows as the batch has: a pad computed from the symbolic dim,
    which qnn.pad (static pads) cannot take."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    inits = [helper.make_tensor("zero2", TensorProto.INT64, [2], [0, 0]),
             helper.make_tensor("zero1", TensorProto.INT64, [1], [0])]
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape", end=1),
             helper.make_node("Concat", ["zero2", "s", "zero1"], ["pads"], name="pads", axis=0),
             helper.make_node("Pad", ["x", "pads"], ["y"], name="pad")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "batch_pad.onnx"
    onnx.save(model, path)
    return path


def test_constant_of_a_symbolic_dim_is_computed_at_run_time(tmp_path):
    """x + ConstantOfShape(Shape(x)) imports with its batch symbolic; oracle: x + 1
    by hand and onnxruntime at three batch sizes."""
    path = _model_with_batch_constant(tmp_path)
    module = qcc.load(path)
    names = [op.name for op in ir.main_func(module).body.block.ops]
    assert "qnn.shape_of" in names and "qnn.fill" in names
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 64):
        x = np.arange(4 * batch, dtype=np.float32).reshape(batch, 4)
        got = runtime.run(module, {"x": x})["y"]
        np.testing.assert_array_equal(got, x + 1)
        np.testing.assert_array_equal(got, session.run(None, {"x": x})[0])


def test_undecidable_shape_names_the_node_and_the_option(tmp_path):
    path = _model_with_undecidable_pad(tmp_path)
    with pytest.raises(FrontendError) as e:
        qcc.load(path)
    text = str(e.value)
    assert "node 'pad'" in text and "'n' (input 'x' dim 0)" in text
    assert "--input-shape x=Nx4" in text and "input_shapes={'x': (N, 4)}" in text
    # the override still works: 3 zero rows padded after x (pads end of axis 0)
    module = qcc.load(path, input_shapes={"x": (3, 4)})
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(runtime.run(module, {"x": x})["y"],
                                  np.concatenate([x, np.zeros((3, 4), np.float32)]))


def test_quantize_writes_nothing_when_a_shape_is_undecidable(tmp_path):
    from qcc.tools.cli import main

    path = _model_with_undecidable_pad(tmp_path)
    np.savez(tmp_path / "calib.npz", x=np.ones((4, 4), np.float32))
    out = tmp_path / "out"
    status = main(["quantize", str(path), "--calib", str(tmp_path / "calib.npz"),
                   "-o", str(out)])
    assert status == 1 and not out.exists()


def test_run_cli_batches_any_number_of_samples(cnn, tmp_path):
    from qcc.tools.cli import main

    x = np.random.default_rng(3).standard_normal((70, 1, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(str(cnn), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    for extra in ([], ["--batch-size", "16"]):
        assert main(["run", str(cnn), "--inputs", str(tmp_path / "in.npz"),
                     "-o", str(tmp_path / "out.npz"), *extra]) == 0
        got = np.load(tmp_path / "out.npz")["y"]
        assert got.shape == (70, 10)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_runtime_reports_an_input_size_the_module_cannot_take():
    text = """func.func @main(%x: tensor<?x6xf32>) -> tensor<?x4x3xf32> {
      %0 = qnn.reshape %x {shape = array<i64: -1, 4, 3>} : (tensor<?x6xf32>) -> tensor<?x4x3xf32>
      func.return %0 : tensor<?x4x3xf32>
    }"""
    module = ir.parse_module(text)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(runtime.run(module, {"input0": x})["output0"],
                                  x.reshape(1, 4, 3))
    with pytest.raises(runtime.RuntimeError_, match="cannot run at input shapes input0=3x6"):
        runtime.run(module, {"input0": np.zeros((3, 6), np.float32)})


def test_integer_onnx_export_keeps_the_symbolic_batch(cnn, tmp_path):
    """The integer ONNX (qcc-realize-int8's graph) runs in onnxruntime at any batch with
    qcc's integers; graph optimizations off, so its arithmetic is exact on every CPU."""
    from qcc import passes
    from qcc.exporters.onnx_int import export_onnx_int

    rng = np.random.default_rng(4)
    calib = {"x": rng.standard_normal((40, 1, 16, 16)).astype(np.float32)}
    module = qcc.quantize(str(cnn), calib, progress=False).module
    passes.run(module, "qcc-realize-int8")
    model = export_onnx_int(module, tmp_path / "cnn_int.onnx")
    assert _dims(model.graph.input[0]) == ["batch", 1, 16, 16]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(tmp_path / "cnn_int.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    for shape in SIZES["cnn"]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(runtime.run(module, {"x": x})["y"],
                                   session.run(None, {"x": x})[0], rtol=1e-6, atol=1e-6)


def test_input_shape_question_mark_keeps_a_dim_symbolic(block, tmp_path):
    """`--input-shape x=?x6x32` fixes the sequence and keeps the batch symbolic; the
    printed module parses back and runs any batch (oracle: onnxruntime)."""
    from qcc.tools.cli import main

    out = tmp_path / "block.mlir"
    assert main(["import", str(block), "--input-shape", "x=?x6x32", "-o", str(out)]) == 0
    module = ir.load_module(out)
    fn = ir.main_func(module)
    assert str(fn.body.block.args[0].type) == "tensor<?x6x32xf32>"
    assert [n.data for n in fn.arg_attrs.data[0].data["qnn.dims"].data] == ["batch", "", ""]
    session = ort.InferenceSession(str(block), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 6, 32)).astype(np.float32)
        np.testing.assert_allclose(runtime.run(module, {"x": x})["y"],
                                   session.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_graph_built_by_hand_with_a_symbolic_batch():
    """`Graph.input` with a None dim; the conv result is checked against a direct
    numpy evaluation of a 1x1 conv (a per-pixel matrix product)."""
    from qcc.dialects import qnn

    g = ir.Graph()
    x = g.input("x", (None, 3, 4, 4))
    w = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1)
    y = g.add(qnn.ConvOp.make(x, g.const(w), strides=(1, 1), pads=(0, 0, 0, 0),
                              dilations=(1, 1), groups=1))
    module = g.finish({"y": y})
    assert str(y.type) == "tensor<?x2x4x4xf32>"
    for batch in (1, 4):
        a = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4)).astype(np.float32)
        want = np.einsum("oc,bchw->bohw", w[:, :, 0, 0], a)
        np.testing.assert_allclose(runtime.run(module, {"x": a})["y"], want, rtol=1e-5,
                                   atol=1e-5)


def test_slices_of_a_symbolic_dim_count_from_its_end(tmp_path):
    """x[:, 1:] - x[:, :-1] and a reversed x[:, ::-1] on a symbolic sequence, and a
    Flatten-style Reshape(x, [0, -1]); oracle: onnxruntime at two lengths."""
    big = np.iinfo(np.int64).max
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("d", "r", "f")]
    inits = [helper.make_tensor(n, TensorProto.INT64, [len(v)], v) for n, v in (
        ("one", [1]), ("zero", [0]), ("end", [big]), ("minus1", [-1]), ("axis1", [1]),
        ("rstart", [-1]), ("rend", [-big - 1]), ("flat", [0, -1]))]
    nodes = [helper.make_node("Slice", ["x", "one", "end", "axis1"], ["hi"], name="hi"),
             helper.make_node("Slice", ["x", "zero", "minus1", "axis1"], ["lo"], name="lo"),
             helper.make_node("Sub", ["hi", "lo"], ["d"], name="d"),
             helper.make_node("Slice", ["x", "rstart", "rend", "axis1", "minus1"], ["r"],
                              name="r"),
             helper.make_node("Reshape", ["x", "flat"], ["f"], name="f")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "slices.onnx"
    onnx.save(model, path)
    module = qcc.load(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 2, 3), (4, 9, 3)):
        a = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32)
        got = runtime.run(module, {"x": a})
        for name, want in zip(("d", "r", "f"), session.run(None, {"x": a}), strict=True):
            np.testing.assert_array_equal(got[name], want)


def _positions_model(tmp_path, table_rows: int):
    """y = x + table[range(seq)]: learned position embeddings of a symbolic sequence."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "seq", 4])
    table = np.arange(table_rows * 4, dtype=np.float32).reshape(table_rows, 4)
    inits = [onnx.numpy_helper.from_array(table, "table"),
             onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
             onnx.numpy_helper.from_array(np.array(1, np.int64), "one")]
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "one"], ["n"], name="seq"),
             helper.make_node("Range", ["zero", "n", "one"], ["pos"], name="positions"),
             helper.make_node("Gather", ["table", "pos"], ["emb"], name="embed"),
             helper.make_node("Add", ["x", "emb"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / f"positions{table_rows}.onnx"
    onnx.save(model, path)
    return path, table


def test_position_ids_of_a_symbolic_sequence_are_computed_at_run_time(tmp_path):
    path, table = _positions_model(tmp_path, 128)
    module = qcc.load(path)
    assert str(ir.main_func(module).body.block.args[0].type) == "tensor<?x?x4xf32>"
    for batch, seq in ((1, 5), (3, 40), (2, 128)):
        x = np.random.default_rng(seq).standard_normal((batch, seq, 4)).astype(np.float32)
        np.testing.assert_array_equal(runtime.run(module, {"x": x})["y"], x + table[:seq])


def test_a_probe_size_past_a_position_table_says_what_to_pass(tmp_path):
    path, _ = _positions_model(tmp_path, 64)  # qcc's probe lengths reach 97
    with pytest.raises(FrontendError) as e:
        qcc.load(path)
    text = str(e.value)
    assert "node 'embed' (Gather)" in text and "probe sizes" in text
    assert "--input-shape x=BxSEQx4" in text
    module = qcc.load(path, input_shapes={"x": (-1, 40, 4)})  # seq fixed, batch symbolic
    x = np.ones((3, 40, 4), np.float32)
    assert runtime.run(module, {"x": x})["y"].shape == (3, 40, 4)


def test_a_shape_computed_at_run_time_can_be_a_graph_output():
    """y = Shape(x)[:1] * 2 on a symbolic batch; oracle: the numbers by hand."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1])
    two = helper.make_tensor("two", TensorProto.INT64, [1], [2])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape", end=1),
             helper.make_node("Mul", ["s", "two"], ["y"], name="twice")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [two]),
                              opset_imports=[helper.make_opsetid("", 15)])
    module = load_onnx(model)
    for batch in (1, 5):
        got = runtime.run(module, {"x": np.zeros((batch, 4), np.float32)})["y"]
        np.testing.assert_array_equal(got, [2 * batch])
