"""The TensorFlow frontend against TensorFlow itself: real Keras models frozen to
GraphDef, imported by qcc (without TensorFlow) and run on qcc's runtime; outputs
match TensorFlow's within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest

from qcc import runtime
from qcc.frontends.tensorflow import load_graphdef

MODELS = ["cnn_bn", "separable", "decoder", "mlp", "matmul_tb", "transformer"]


def _ops(module) -> list[str]:
    return [op.name for op in module.walk()]


@pytest.mark.parametrize("kind", MODELS)
def test_matches_tensorflow(tf_models, kind):
    path, shape, run_tf = tf_models[kind]
    module = load_graphdef(path)
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    (got,) = runtime.run(module, {"x": x}).values()
    want = run_tf(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_layout_converted_once(tf_models):
    """NHWC input -> one transpose to NCHW at the input; convs run NCHW."""
    module = load_graphdef(tf_models["cnn_bn"][0])
    ops = _ops(module)
    assert ops.count("qnn.transpose") == 1
    conv = next(op for op in module.walk() if op.name == "qnn.conv")
    assert list(conv.operands[0].type.get_shape()) == [2, 3, 8, 8]
    assert conv.attributes["source"].data == "tensorflow.Conv2D"


def test_matmul_flags_reach_the_layer(tf_models):
    module = load_graphdef(tf_models["matmul_tb"][0])
    dense = next(op for op in module.walk() if op.name == "qnn.dense")
    assert dense.attributes["source"].data == "tensorflow.MatMul"
    assert "transpose_b" in dense.attributes
