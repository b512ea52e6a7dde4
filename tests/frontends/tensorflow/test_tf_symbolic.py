"""A TensorFlow batch of None (-1 in the GraphDef) stays symbolic: the graph imports
with a `?` batch named "batch", one imported module matches TensorFlow at several
batch sizes, and `qcc quantize model.pb` with no shape option writes a fake-quant
ONNX model with a symbolic batch that onnxruntime runs at any batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import qcc
from qcc import runtime
from qcc.dialects.base import DYN
from qcc.frontends.tensorflow import load_graphdef

MODELS = ["cnn_bn", "separable", "decoder", "mlp", "transformer"]

def _main(module):
    return module.body.block.first_op


@pytest.mark.parametrize("kind", MODELS)
def test_batch_none_imports_symbolic_and_matches_tensorflow(tf_dynamic_models, kind):
    path, sample, run_tf = tf_dynamic_models[kind]
    module = load_graphdef(path)
    main = _main(module)
    arg = main.function_type.inputs.data[0]
    assert list(arg.get_shape()) == [DYN, *sample]
    assert [d.data for d in main.arg_attrs.data[0].data["qnn.dims"].data][0] == "batch"
    assert main.function_type.outputs.data[0].get_shape()[0] == DYN
    rng = np.random.default_rng(7)
    for batch in (1, 5):  # one module, two batch sizes
        x = rng.normal(size=(batch, *sample)).astype(np.float32)
        (got,) = runtime.run(module, {"x": x}).values()
        want = run_tf(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_input_shapes_still_fix_the_batch(tf_dynamic_models):
    path, sample, run_tf = tf_dynamic_models["cnn_bn"]
    module = load_graphdef(path, input_shapes={"x": (2, *sample)})
    assert list(_main(module).function_type.inputs.data[0].get_shape()) == [2, *sample]
    x = np.random.default_rng(8).normal(size=(2, *sample)).astype(np.float32)
    (got,) = runtime.run(module, {"x": x}).values()
    np.testing.assert_allclose(got, run_tf(x), atol=1e-4, rtol=1e-4)


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _run_graphdef(tf, data: bytes, x: np.ndarray) -> np.ndarray:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(data)
    fn = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
    outs = [n.name for n in graph.node if n.op == "Identity"]
    pruned = fn.prune(fn.graph.get_tensor_by_name("x:0"),
                      fn.graph.get_tensor_by_name(outs[-1] + ":0"))
    return np.asarray(pruned(tf.constant(x)))


def _agree(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, what
    # fake-quant rounding: a value on a rounding edge may land one step apart
    close = np.isclose(got, want, rtol=1e-3, atol=1e-3)
    assert close.mean() > 0.99, f"{what}: {close.mean():.4f} of outputs match"
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max(), what


@pytest.mark.parametrize("kind", ["cnn_bn", "decoder", "transformer"])
def test_cli_quantize_writes_a_symbolic_batch(tf, tf_dynamic_models, kind, tmp_path):
    """The fake-quant ONNX (onnxruntime, optimizations off) and the fake-quant GraphDef
    (TensorFlow) both run at batch 1 and 3 and agree with qcc's runtime."""
    from qcc.testing import ort
    from qcc.tools.cli import main

    path, sample, _ = tf_dynamic_models[kind]
    rng = np.random.default_rng(15)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=rng.normal(size=(4, *sample)).astype(np.float32))
    out = tmp_path / "out"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out)]) == 0
    model = onnx.load(out / f"{kind}_fake_quant.onnx")
    assert _dims(model.graph.input[0]) == ["batch", *sample]
    assert _dims(model.graph.output[0])[0] == "batch"
    # qcc's runtime on the same quantization (same calibration data) is the reference
    with np.load(calib) as data:
        result = qcc.quantize(str(path), {"x": data["x"]}, outdir=tmp_path / "py",
                              progress=False)
    session = ort.session(model)
    graphdef = (out / f"{kind}_fake_quant.pb").read_bytes()
    for batch in (1, 3):
        x = rng.normal(size=(batch, *sample)).astype(np.float32)
        (got,) = runtime.run(result.module, {"x": x}).values()
        (want,) = ort.run(session, {"x": x}).values()
        _agree(got, want, f"onnxruntime, batch {batch}")
        _agree(got, _run_graphdef(tf, graphdef, x), f"TensorFlow, batch {batch}")
