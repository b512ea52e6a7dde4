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


def test_qcc_run_pb(tf_models, tmp_path):
    from qcc.tools.cli import main

    path, shape, run_tf = tf_models["separable"]
    x = np.random.default_rng(6).normal(size=shape).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "y.npz"
    assert main(["run", str(path), "--inputs", str(tmp_path / "x.npz"), "-o", str(out)]) == 0
    with np.load(out) as y:
        (got,) = [y[k] for k in y.files]
    np.testing.assert_allclose(got, run_tf(x), atol=1e-4, rtol=1e-4)


def test_load_keras_model_and_savedmodel(tf, tmp_path):
    """qcc.load freezes a Keras model (batch None fixed by input_shapes) and a
    SavedModel directory through TensorFlow."""
    import keras

    import qcc

    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), name="feats")
    model = keras.Model(inp, keras.layers.Dense(3, activation="relu")(inp))
    x = np.random.default_rng(7).normal(size=(2, 5)).astype(np.float32)
    want = np.asarray(model(x))
    module = qcc.load(model, input_shapes={"feats": (2, 5)})
    (got,) = runtime.run(module, {"feats": x}).values()
    np.testing.assert_allclose(got, want, atol=1e-5)

    saved = tmp_path / "saved"
    model.export(str(saved), verbose=False)
    module = qcc.load(saved, input_shapes={"feats": (2, 5)})
    (got,) = runtime.run(module, dict(zip(
        [a.name_hint for a in module.body.block.first_op.body.block.args], [x], strict=True))
        ).values()
    np.testing.assert_allclose(got, want, atol=1e-5)
