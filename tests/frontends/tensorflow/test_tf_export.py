"""The TensorFlow exporter against TensorFlow: `qcc quantize model.pb` writes
`<name>_fake_quant.pb`, which TensorFlow loads and runs; its outputs agree with qcc's
runtime on the fake-quant module within one quantization step. Float graphs written
back agree with TensorFlow on the original model within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest

from qcc import runtime
from qcc.dialects.quant import FakeQuantOp
from qcc.exporters.tensorflow import export_graphdef
from qcc.frontends.tensorflow import load_graphdef

MODELS = ["cnn_bn", "separable", "decoder", "mlp", "transformer"]


def _run_graphdef(tf, data: bytes, x: np.ndarray) -> np.ndarray:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(data)
    fn = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
    outs = [n.name for n in graph.node if n.op == "Identity"]
    pruned = fn.prune(fn.graph.get_tensor_by_name("x:0"),
                      fn.graph.get_tensor_by_name(outs[-1] + ":0"))
    return np.asarray(pruned(tf.constant(x)))


@pytest.fixture(scope="module", params=MODELS)
def tf_path(request, tf_models):
    return request.param, tf_models[request.param]


def test_float_graph_round_trip(tf, tf_path):
    """import -> export: TensorFlow runs the written graph and matches the original."""
    _, (path, shape, run_tf) = tf_path
    graph = export_graphdef(load_graphdef(path))
    ops = [n.op for n in graph.node]
    assert "FakeQuantWithMinMaxVars" not in ops
    x = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(_run_graphdef(tf, graph.SerializeToString(), x), run_tf(x),
                               atol=1e-4, rtol=1e-4)


def _last_quant_step(module) -> float:
    """The largest activation scale in the module (per-tensor fake-quants)."""
    scales = [max(op.properties["qtype"].scales) for op in module.walk()
              if isinstance(op, FakeQuantOp) and op.properties["qtype"].axis is None]
    return max(scales)


def test_fake_quant_graphdef_runs_in_tensorflow(tf, tf_path, tmp_path):
    import qcc

    kind, (path, shape, run_tf) = tf_path
    rng = np.random.default_rng(9)
    calib = {"x": rng.normal(size=(4 * shape[0], *shape[1:])).astype(np.float32)}
    result = qcc.quantize(path, calib, outdir=tmp_path / "out", progress=False)
    written = tmp_path / "out" / f"{kind}_fake_quant.pb"
    data = written.read_bytes()
    graph_ops = [n.op for n in load_graph_ops(data)]
    assert "FakeQuantWithMinMaxVars" in graph_ops
    if kind in ("cnn_bn", "separable", "decoder"):  # per-channel conv weights
        assert "FakeQuantWithMinMaxVarsPerChannel" in graph_ops
    x = rng.normal(size=shape).astype(np.float32)
    (want,) = runtime.run(result.module, {"x": x}).values()
    got = _run_graphdef(tf, data, x)
    assert got.shape == want.shape
    # TensorFlow rounds ties up and nudges min/max in float32; qcc rounds half to
    # even: an element may land one step away, never more
    step = _last_quant_step(result.module)
    diff = np.abs(got - want)
    assert diff.max() <= step, (diff.max(), step)
    assert np.mean(diff > 1e-5) <= 0.01  # the same numbers almost everywhere
    # and the quantizers do act: the graph is not the float model
    assert np.max(np.abs(got - run_tf(x))) > 1e-4


def load_graph_ops(data: bytes):
    from qcc.frontends.tensorflow import graph_pb2

    g = graph_pb2.GraphDef()
    g.ParseFromString(data)
    return g.node


def test_cli_quantize_pb(tf_models, tmp_path):
    """`qcc quantize model.pb --calib data.npz` end to end; a bad model writes nothing."""
    from qcc.tools.cli import main

    path, shape, _ = tf_models["cnn_bn"]
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(15).normal(size=(4, *shape[1:])).astype(np.float32))
    out = tmp_path / "out"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out)]) == 0
    for f in ("cnn_bn_fake_quant.pb", "cnn_bn_fake_quant.onnx", "record.txt",
              "cnn_bn_deploy.onnx", "report.json"):
        assert (out / f).is_file(), f
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x0a\x05\x0a\x01x")  # a node without an op
    bad_out = tmp_path / "bad"
    assert main(["quantize", str(junk), "--calib", str(calib), "-o", str(bad_out)]) == 1
    assert not bad_out.exists()
