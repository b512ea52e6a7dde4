"""Real TensorFlow graphs for the frontend and exporter tests: tiny Keras models
frozen to GraphDef with TensorFlow's own convert_variables_to_constants_v2, and
their outputs computed by TensorFlow (the oracle). TensorFlow is imported once a
session; tests skip without it."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def tf():
    return pytest.importorskip("tensorflow")


def freeze(tf, model, shape):
    """(GraphDef bytes, a function running the frozen graph in TensorFlow)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32, name="x"))
    frozen = convert_variables_to_constants_v2(fn)
    return frozen.graph.as_graph_def().SerializeToString(), \
        lambda x: np.asarray(frozen(tf.constant(x))[0])


def _randomize_bn(model, rng):
    """BatchNorm statistics away from the identity, so fusion has something to do."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, g).astype(np.float32),
                               rng.normal(0, 0.3, b).astype(np.float32),
                               rng.normal(0, 0.3, m).astype(np.float32),
                               rng.uniform(0.5, 2.0, v).astype(np.float32)])


def build(tf, kind: str):
    """(model, input shape) of one of the test models."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    if kind == "cnn_bn":
        i = keras.Input((8, 8, 3))
        x = L.Conv2D(20, 3, padding="same", use_bias=False)(i)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(24, 3, strides=2, padding="valid")(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu6")(x)
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(5)(x)
        model, shape = keras.Model(i, L.Softmax()(x)), (2, 8, 8, 3)
    elif kind == "separable":
        i = keras.Input((8, 8, 3))
        x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(i)
        x = L.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
        x = L.AveragePooling2D(2)(x)
        x = L.Flatten()(x)
        model, shape = keras.Model(i, L.Dense(3)(x)), (1, 8, 8, 3)
    elif kind == "decoder":
        i = keras.Input((4, 4, 8))
        x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(i)
        x = L.LeakyReLU(negative_slope=0.1)(x)
        x = L.Conv2DTranspose(2, 2, strides=2, padding="valid")(x)
        model, shape = keras.Model(i, x), (1, 4, 4, 8)
    elif kind == "mlp":
        i = keras.Input((16,))
        x = L.Dense(32, activation="tanh")(i)
        model, shape = keras.Model(i, L.Dense(8, activation="sigmoid")(x)), (4, 16)
    elif kind == "transformer":
        i = keras.Input((6, 16))
        a = L.MultiHeadAttention(2, 8)(i, i)
        x = L.LayerNormalization()(i + a)
        f = L.Dense(16)(L.Dense(32, activation="gelu")(x))
        model, shape = keras.Model(i, L.LayerNormalization()(x + f)), (1, 6, 16)
    else:
        raise KeyError(kind)
    _randomize_bn(model, np.random.default_rng(1))
    return model, shape


@pytest.fixture(scope="session")
def tf_models(tf, tmp_path_factory):
    """name -> (path of the frozen .pb, input shape, TensorFlow runner)."""
    root = tmp_path_factory.mktemp("tf_models")
    out = {}
    for kind in ("cnn_bn", "separable", "decoder", "mlp", "transformer"):
        model, shape = build(tf, kind)
        data, runner = freeze(tf, model, shape)
        path = root / f"{kind}.pb"
        path.write_bytes(data)
        out[kind] = (path, shape, runner)
    w = np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32)
    fn = tf.function(lambda x: tf.matmul(x, tf.constant(w), transpose_b=True))
    cf = fn.get_concrete_function(tf.TensorSpec((2, 16), tf.float32, name="x"))
    path = root / "matmul_tb.pb"
    path.write_bytes(cf.graph.as_graph_def().SerializeToString())
    out["matmul_tb"] = (path, (2, 16), lambda x: np.asarray(cf(tf.constant(x))))
    out["fused_bn"] = _fused_bn(tf, root)
    return out


@pytest.fixture(scope="session")
def tf_dynamic_models(tf, tmp_path_factory):
    """name -> (path of the .pb frozen with batch None, sample shape, TF runner)."""
    root = tmp_path_factory.mktemp("tf_dynamic")
    out = {}
    for kind in ("cnn_bn", "separable", "decoder", "mlp", "transformer"):
        model, shape = build(tf, kind)
        data, runner = freeze(tf, model, (None, *shape[1:]))
        path = root / f"{kind}.pb"
        path.write_bytes(data)
        out[kind] = (path, tuple(shape[1:]), runner)
    return out


def _fused_bn(tf, root):
    """Conv2D + FusedBatchNormV3 (the frozen form of TF1 / tf.compat.v1 graphs) + Relu,
    + Conv2D."""
    rng = np.random.default_rng(4)
    # numpy arrays, so they become Const nodes inside the function (not captures)
    w1 = rng.normal(0, 0.3, (3, 3, 3, 18)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (1, 1, 18, 20)).astype(np.float32)
    stats = [a.astype(np.float32) for a in (
        rng.uniform(0.5, 1.5, 18), rng.normal(0, 0.3, 18), rng.normal(0, 0.3, 18),
        rng.uniform(0.5, 2.0, 18))]

    def f(x):
        y = tf.nn.conv2d(x, w1, strides=1, padding="SAME")
        y = tf.raw_ops.FusedBatchNormV3(x=y, scale=stats[0], offset=stats[1], mean=stats[2],
                                        variance=stats[3], epsilon=1e-3, is_training=False)[0]
        return tf.nn.conv2d(tf.nn.relu(y), w2, strides=1, padding="VALID")

    cf = tf.function(f).get_concrete_function(tf.TensorSpec((1, 6, 6, 3), tf.float32, name="x"))
    path = root / "fused_bn.pb"
    path.write_bytes(cf.graph.as_graph_def().SerializeToString())
    return path, (1, 6, 6, 3), lambda x: np.asarray(cf(tf.constant(x)))
