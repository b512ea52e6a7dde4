"""The GraphDef exporter op by op: hand-built qnn graphs (NCHW, as qcc holds them)
written as GraphDefs and run by TensorFlow, against qcc's runtime on the same
module (two independent implementations of each op)."""

from __future__ import annotations

import numpy as np
import pytest

from qcc import ir, runtime
from qcc.dialects import qnn
from qcc.dialects.quant import FakeQuantOp, UniformQuantizedType
from qcc.exporters.onnx import ExportError
from qcc.exporters.tensorflow import export_graphdef

R = np.random.default_rng(16)


def _c(g, shape, name, lo=-0.5, hi=0.5):
    return g.const(R.uniform(lo, hi, shape).astype(np.float32), name=name)


def conv_affine(g):
    """Conv with asymmetric pads (EXPLICIT), batch_norm, clip, SAME max_pool,
    softmax over channels, global pool, reshape."""
    x = g.input("x", (1, 4, 7, 7))
    y = g.add(qnn.ConvOp.make(x, _c(g, (6, 4, 3, 3), "w"), _c(g, (6,), "b"), pads=(0, 1, 2, 1),
                              name="conv"))
    y = g.add(qnn.BatchNormOp.make(y, _c(g, (6,), "s", 0.5, 1.5), _c(g, (6,), "o"),
                                   _c(g, (6,), "m"), _c(g, (6,), "v", 0.5, 2), name="bn"))
    y = g.add(qnn.ClipOp.make(y, min=-1.0, max=2.0, name="clip"))
    y = g.add(qnn.MaxPoolOp.make(y, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                                 name="pool"))
    y = g.add(qnn.SoftmaxOp.make(y, axis=1, name="softmax"))
    z = g.add(qnn.GlobalAvgPoolOp.make(y, name="gap"))
    return g.finish({"y": g.add(qnn.ReshapeOp.make(z, shape=(1, 6), name="flat"))})


def sequence_ops(g):
    """layer_norm, gelu, concat, keepdims reduce, transpose, matmul, div, scale."""
    x = g.input("x", (2, 3, 8))
    y = g.add(qnn.LayerNormOp.make(x, _c(g, (8,), "g", 0.5, 1.5), _c(g, (8,), "beta"),
                                   axis=-1, epsilon=1e-5, name="ln"))
    y = g.add(qnn.GeluOp.make(y, name="gelu"))
    y = g.add(qnn.ConcatOp.make([y, x], axis=2, name="cat"))
    t = g.add(qnn.TransposeOp.make(y, perm=(0, 2, 1), name="t"))
    m = g.add(qnn.MatmulOp.make(y, t, name="mm"))
    s = g.add(qnn.ReduceSumOp.make(m, axes=(2,), keepdims=True, name="sum"))
    d = g.add(qnn.DivOp.make(m, g.add(qnn.AddOp.make(g.add(qnn.AbsOp.make(s, name="abs")),
                                                       _c(g, (), "one", 1, 1), name="plus1")),
                             name="div"))
    return g.finish({"y": g.add(qnn.ScaleOp.make(d, _c(g, (3,), "sc"), _c(g, (3,), "sb"),
                                                 axis=1, name="scale"))})


def quantized_depthwise_deconv(g):
    """fake-quant activation, per-channel fake-quant depthwise weights, conv_transpose
    with pads and output_padding, per-tensor fake-quant weights."""
    x = g.input("x", (1, 4, 6, 6))
    act = UniformQuantizedType.make(scale=0.02, zero_point=-5)
    xq = g.add(FakeQuantOp.make(x, qtype=act, name="x_fq"))
    wd = _c(g, (8, 1, 3, 3), "dw")
    per = UniformQuantizedType.make_per_axis(axis=0, scales=list(R.uniform(0.002, 0.004, 8)),
                                             narrow_range=True)
    wq = g.add(FakeQuantOp.make(wd, qtype=per, name="dw_fq"))
    y = g.add(qnn.ConvOp.make(xq, wq, pads=(1, 1, 1, 1), groups=4, name="depthwise"))
    y = g.add(qnn.ReluOp.make(y, name="relu"))
    yq = g.add(FakeQuantOp.make(y, qtype=UniformQuantizedType.make(scale=0.01, zero_point=-128),
                                name="y_fq"))
    wt = _c(g, (8, 3, 3, 3), "up")
    wtq = g.add(FakeQuantOp.make(wt, qtype=UniformQuantizedType.make(
        scale=0.004, narrow_range=True), name="up_fq"))
    up = g.add(qnn.ConvTransposeOp.make(yq, wtq, _c(g, (3,), "up_b"), strides=(2, 2),
                                        pads=(1, 1, 1, 1), output_padding=(1, 1), name="up"))
    return g.finish({"y": up})


def _run_tf(tf, graph, x):
    g = tf.compat.v1.GraphDef()
    g.ParseFromString(graph.SerializeToString())
    fn = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(g, name=""), [])
    run = fn.prune(fn.graph.get_tensor_by_name("x:0"), fn.graph.get_tensor_by_name("y:0"))
    return np.asarray(run(tf.constant(x)))


@pytest.mark.parametrize("build", [conv_affine, sequence_ops, quantized_depthwise_deconv])
def test_exported_ops_match_runtime(tf, build):
    module = build(ir.Graph())
    graph = export_graphdef(module)
    x = R.normal(size=module.body.block.first_op.function_type.inputs.data[0].get_shape()
                 ).astype(np.float32)
    (want,) = runtime.run(module, {"x": x}).values()
    got = _run_tf(tf, graph, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_unsupported_ops_listed_at_once():
    g = ir.Graph()
    x = g.input("x", (2, 3))
    y = g.add(qnn.HardSwishOp.make(x, name="hs"))
    y = g.add(qnn.HardSigmoidOp.make(y, name="hsig"))
    module = g.finish({"y": g.add(qnn.HardSwishOp.make(y, name="hs2"))})
    with pytest.raises(ExportError) as e:
        export_graphdef(module)
    msg = str(e.value)
    assert "2 kinds of op" in msg and "hs, hs2" in msg and "hsig" in msg
