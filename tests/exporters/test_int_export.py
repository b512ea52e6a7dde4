"""Integer ONNX (`qcc.exporters.onnx_int.export_onnx_int`): onnxruntime's integers
are qcc's integers, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import SSAValue

import qcc
from qcc import ir, passes, runtime
from qcc.dialects import qnn, quant
from qcc.dialects.quant import UniformQuantizedType as Q
from qcc.examples import digits
from qcc.exporters.onnx import ExportError
from qcc.exporters.onnx_int import export_onnx_int

ort = pytest.importorskip("onnxruntime")
from qcc.testing import ort as exact_ort  # noqa: E402


def with_outputs(module: ModuleOp, values: dict[str, SSAValue]) -> ModuleOp:
    """`module` with more results of @main, named by the keys."""
    fn = ir.main_func(module)
    ret = fn.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    names = ir.io_names(fn)[1] + list(values)
    new = [*ret.operands, *values.values()]
    ret.operands = new
    fn.function_type = func.FunctionType.from_lists(
        [a.type for a in fn.body.block.args], [v.type for v in new])
    fn.res_attrs = ArrayAttr([DictionaryAttr({"qnn.name": StringAttr(n)}) for n in names])
    return module


def session(path):
    """Graph optimizations off: the integer operators as written (`qcc.testing.ort`)."""
    return exact_ort.session(path)


def run_ort(sess, inputs):
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs), strict=True))


# ------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def digits_int():
    pytest.importorskip("qcc.passes.realize_int8")
    model, calib, test = digits()
    module = qcc.quantize(model, calib, progress=False).module
    passes.run(module, "qcc-realize-int8")
    layers = [op for op in ir.main_func(module).body.block.ops if isinstance(op, qnn.LAYER_OPS)]
    # the quantized input of every layer (requantized ones and the last layer's)
    with_outputs(module, {f"{op.attributes['name'].data}_input": op.operands[0]  # type: ignore[attr-defined]
                          for op in layers})
    module.verify()
    return module, dict(np.load(test))


def test_digits_integers_identical(digits_int, tmp_path):
    module, data = digits_int
    model = export_onnx_int(module, tmp_path / "digits_int.onnx")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QLinearConv") == 2  # conv1, conv2 feed requantizes
    assert {"ConvInteger", "MatMulInteger", "QuantizeLinear", "Cast", "Mul"} <= set(ops)
    sess = session(tmp_path / "digits_int.onnx")
    x = data["input"]
    for i in range(len(x)):
        want = runtime.run(module, {"input": x[i:i + 1]})
        got = run_ort(sess, {"input": x[i:i + 1]})
        for name, value in want.items():
            if name == "logits":
                np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-6)
            else:
                assert got[name].dtype == value.dtype == np.int8
                assert np.array_equal(got[name], value), (i, name)


# ------------------------------------------------------------- small graphs


def _graph(per_channel=True, dense_bias=True, with_matmul=True, clamped=False):
    """conv -> requantize, dense -> requantize (or dequantize), matmul of two
    activations -> requantize, a conv -> dequantize. `clamped`: the requantized
    types are clamped at their zero point (a folded relu)."""
    rng = np.random.default_rng(3)
    g = ir.Graph()
    x = g.input("x", (2, 3, 6, 6))
    xq_t = Q.make(scale=0.02, zero_point=-7)
    xq = g.add(quant.QuantizeOp.make(x, qtype=xq_t))

    def weight(shape, name):
        w = rng.normal(size=shape).astype(np.float32) * 0.3
        if per_channel:
            s = (np.abs(w).reshape(shape[0], -1).max(1) / 127).tolist()
            t = Q.make_per_axis(axis=0, scales=s, narrow_range=True)
        else:
            t = Q.make(scale=float(np.abs(w).max() / 127), narrow_range=True)
        return g.add(quant.QuantizeOp.make(g.const(w, name), qtype=t)), t

    def bias(n, x_t, w_t, name):
        b = rng.normal(size=n).astype(np.float32)
        if w_t.is_per_axis:
            t = Q.make_per_axis(axis=0, scales=[x_t.scale * s for s in w_t.scales], bits=32)
        else:
            t = Q.make(scale=x_t.scale * w_t.scale, bits=32)
        return g.add(quant.QuantizeOp.make(g.const(b, name), qtype=t))

    w1, w1_t = weight((4, 3, 3, 3), "c1.weight")
    acc1 = g.add(qnn.ConvOp.make(xq, w1, bias(4, xq_t, w1_t, "c1.bias"), name="c1",
                                 pads=(1, 1, 1, 1), strides=(2, 2)))
    y1_t = Q.make(scale=0.05, zero_point=3, storage_min=3 if clamped else None)
    y1 = g.add(quant.RequantizeOp.make(acc1, qtype=y1_t))
    flat = g.add(qnn.ReshapeOp.make(y1, shape=(2, 36)))
    w2, w2_t = weight((5, 36), "fc.weight")
    b2 = bias(5, y1_t, w2_t, "fc.bias") if dense_bias else None
    acc2 = g.add(qnn.DenseOp.make(flat, w2, b2, name="fc"))
    y2 = g.add(quant.RequantizeOp.make(acc2, qtype=Q.make(
        scale=0.1, zero_point=-2, storage_min=-2 if clamped else None)))
    f2 = g.add(quant.DequantizeOp.make(g.add(qnn.DenseOp.make(flat, w2, b2, name="fc2"))))
    w3, w3_t = weight((2, 3, 1, 1), "c3.weight")
    f3 = g.add(quant.DequantizeOp.make(g.add(qnn.ConvOp.make(xq, w3, name="c3"))))
    outs = {"y1": y1, "y2": y2, "f2": f2, "f3": f3}
    if with_matmul:
        a = g.add(qnn.ReshapeOp.make(y1, shape=(2, 4, 9)))
        b = g.add(qnn.TransposeOp.make(a, perm=(0, 2, 1)))
        acc4 = g.add(qnn.MatmulOp.make(a, b, name="mm"))
        outs["y4"] = g.add(quant.RequantizeOp.make(acc4, qtype=Q.make(scale=0.2, zero_point=1)))
        outs["f4"] = g.add(quant.DequantizeOp.make(g.add(qnn.MatmulOp.make(a, b, name="mm2"))))
    return g.finish(outs)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("dense_bias", [True, False])
@pytest.mark.parametrize("clamped", [False, True])
def test_small_graph_identical(tmp_path, per_channel, dense_bias, clamped):
    module = _graph(per_channel, dense_bias, clamped=clamped)
    module.verify()
    path = tmp_path / "g.onnx"
    model = export_onnx_int(module, path)
    ops = [n.op_type for n in model.graph.node]
    assert "QLinearConv" in ops and "ConvInteger" in ops
    assert ("QLinearMatMul" in ops) and ("MatMulInteger" in ops)
    assert ops.count("QLinearMatMul") == (1 if dense_bias else 2)
    assert ops.count("Clip") == (2 if clamped else 0)
    sess = session(path)
    for seed in range(4):
        x = np.random.default_rng(seed).normal(size=(2, 3, 6, 6)).astype(np.float32) * 2
        want = runtime.run(module, {"x": x})
        got = run_ort(sess, {"x": x})
        for name, value in want.items():
            assert got[name].dtype == value.dtype, name
            assert np.array_equal(got[name], value), name


def test_quantized_constants_are_initializers(tmp_path):
    model = export_onnx_int(_graph(), tmp_path / "g.onnx")
    inits = {t.name: t for t in model.graph.initializer}
    from onnx import TensorProto

    assert inits["c1.weight_quantized"].data_type == TensorProto.INT8
    assert inits["c1.bias_quantized"].data_type == TensorProto.INT32
    assert inits["c1.weight_quantized"].doc_string.startswith("qcc qtype: !quant.uniform<i8")
    assert "c1.weight" not in inits  # the float weight is not written


def test_unsupported_ops_are_listed():
    g = ir.Graph()
    x = g.input("x", (1, 2, 4, 4))
    xq = g.add(quant.QuantizeOp.make(x, qtype=Q.make(scale=0.1)))
    w = g.add(quant.QuantizeOp.make(g.const(np.ones((2, 3, 1, 1), np.float32), "w"),
                                    qtype=Q.make(scale=0.01)))
    acc = g.add(qnn.ConvTransposeOp.make(xq, w, name="up"))
    pooled = g.add(qnn.AvgPoolOp.make(xq, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                                      name="pool"))
    module = g.finish({"y": g.add(quant.DequantizeOp.make(acc)),
                       "p": g.add(quant.DequantizeOp.make(pooled))})
    with pytest.raises(ExportError) as e:
        export_onnx_int(module)
    assert "ONNX has no integer ConvTranspose (up)" in str(e.value)
    assert "avg_pool" not in str(e.value)   # it has an integer form


# ------------------------------------------------------------- average pool


def exact_avg_pool(xq, z, k, s, pads, ceil, include_pad, dl):
    """Window by window in Python integers: the sum of x - z over the cells inside
    the input, the count (declared padding counts with include_pad; padding holds
    the real 0, i.e. z; cells past it that ceil_mode adds never count), the mean
    rounded half to even, plus z."""
    d = len(k)
    size = xq.shape[2:]
    outs = []
    for i in range(d):
        span = size[i] + pads[i] + pads[d + i] - (k[i] - 1) * dl[i] - 1
        o = (-(-span // s[i]) if ceil else span // s[i]) + 1
        if ceil and (o - 1) * s[i] >= size[i] + pads[i]:
            o -= 1
        outs.append(o)
    y = np.zeros((*xq.shape[:2], *outs), np.int64)
    for n, c in np.ndindex(*xq.shape[:2]):
        for pos in np.ndindex(*outs):
            total = count = 0
            for tap in np.ndindex(*k):
                at = [pos[i] * s[i] - pads[i] + tap[i] * dl[i] for i in range(d)]
                inside = all(0 <= at[i] < size[i] for i in range(d))
                declared = all(-pads[i] <= at[i] < size[i] + pads[d + i] for i in range(d))
                if inside:
                    total += int(xq[(n, c, *at)]) - z
                count += int(inside or (include_pad and declared))
            q, r = divmod(total, max(count, 1))
            q += int(2 * r > count or (2 * r == count and q % 2 == 1))
            y[(n, c, *pos)] = q + z
    return y


# (input shape, kernel, strides, pads, ceil_mode, count_include_pad, dilations)
AVG_POOL_CASES = [
    ((2, 3, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1), False, False, (1, 1)),
    ((1, 4, 8, 9), (3, 3), (2, 2), (1, 1, 1, 1), True, True, (1, 1)),      # densenet-like
    ((1, 2, 9, 8), (3, 2), (2, 3), (0, 1, 2, 0), True, False, (1, 1)),
    ((1, 3, 6, 6), (2, 2), (2, 2), (0, 0, 0, 0), False, False, (1, 1)),    # transition
    ((1, 2, 9, 9), (3, 3), (1, 1), (1, 1, 1, 1), False, True, (1, 1)),     # inception
    ((1, 2, 11, 10), (3, 2), (2, 1), (2, 1, 1, 0), False, True, (2, 3)),   # dilated
    ((2, 3, 13), (4,), (3,), (1, 2), True, True, (1,)),                    # 1-d
]


@pytest.mark.parametrize("case", AVG_POOL_CASES, ids=range(len(AVG_POOL_CASES)))
@pytest.mark.parametrize("zero_point", [-128, 5, 127])
def test_avg_pool_integers_exact(tmp_path, case, zero_point):
    shape, k, s, pads, ceil, include, dl = case
    qt = Q.make(scale=0.25, zero_point=zero_point)
    g = ir.Graph()
    xq = g.add(quant.QuantizeOp.make(g.input("x", shape), qtype=qt))
    kwargs = {"dilations": dl} if any(v != 1 for v in dl) else {}
    pooled = g.add(qnn.AvgPoolOp.make(xq, kernel=k, strides=s, pads=pads, ceil_mode=ceil,
                                      count_include_pad=include, name="pool", **kwargs))
    module = g.finish({"y": pooled})
    model = export_onnx_int(module, tmp_path / "pool.onnx")
    assert "ConvInteger" in [n.op_type for n in model.graph.node]
    sess = session(tmp_path / "pool.onnx")
    rng = np.random.default_rng(len(shape) + zero_point + 128)
    for spread in (0.5, 40.0):   # ties (integer inputs, even counts) and saturated inputs
        x = np.round(rng.normal(size=shape) * spread).astype(np.float32) * 0.25
        xi = qt.quantize(x).astype(np.int64)
        want = exact_avg_pool(xi, zero_point, k, s, pads, ceil, include, dl)
        got = run_ort(sess, {"x": x})["y"]
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(runtime.run(module, {"x": x})["y"], want)


def test_float_model_unchanged(tmp_path):
    g = ir.Graph()
    x = g.input("x", (1, 3))
    y = g.add(qnn.DenseOp.make(x, g.const(np.eye(3, dtype=np.float32), "w")))
    module = g.finish({"y": g.add(qnn.ReluOp.make(y))})
    export_onnx_int(module, tmp_path / "f.onnx")
    x = np.float32([[1, -2, 3]])
    assert np.array_equal(run_ort(session(tmp_path / "f.onnx"), {"x": x})["y"],
                          runtime.run(module, {"x": x})["y"])


# ---------------------------------------------------------------- ResNet-18


def test_resnet18_integers_identical(tmp_path):
    """The 32x32 ResNet-18 of the post-training issue: every integer tensor that
    enters a layer is the same in onnxruntime and in qcc's int8 runtime."""
    pytest.importorskip("qcc.passes.realize_int8")
    from qcc.frontends.onnx import load_onnx
    from qcc.testing.models import resnet18_cifar

    module = load_onnx(resnet18_cifar(batch=2))
    name = ir.io_names(ir.main_func(module))[0][0]
    rng = np.random.default_rng(0)
    calib = {name: rng.standard_normal((8, 3, 32, 32)).astype(np.float32)}
    module = qcc.quantize(module, calib, progress=False).module
    passes.run(module, "qcc-realize-int8")
    layers = [op for op in ir.main_func(module).body.block.ops
              if isinstance(op, qnn.LAYER_OPS) and isinstance(
                  op.operands[0].type.element_type, Q)]  # type: ignore[attr-defined]
    assert len(layers) >= 20
    with_outputs(module, {f"{op.attributes['name'].data}_input": op.operands[0]  # type: ignore[attr-defined]
                          for op in layers})
    export_onnx_int(module, tmp_path / "r18.onnx")
    sess = session(tmp_path / "r18.onnx")
    for _ in range(3):
        x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
        want = runtime.run(module, {name: x})
        got = run_ort(sess, {name: x})
        for key, value in want.items():
            if value.dtype == np.int8:
                assert np.array_equal(got[key], value), key
            else:
                np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5)
