"""Op coverage against TensorFlow: small tf.functions using the ops of the frontend's
list, frozen by TensorFlow, imported by qcc and run on its runtime; outputs equal
TensorFlow's within 1e-4. The NHWC cases check that values stay channels-first
between convolutions and come back in the model's layout."""

from __future__ import annotations

import numpy as np
import pytest

from qcc import runtime
from qcc.frontends.tensorflow import load_graphdef

R = np.random.default_rng(13)
W = R.normal(0, 0.3, (3, 3, 4, 6)).astype(np.float32)
W3 = R.normal(0, 0.3, (2, 2, 2, 4, 3)).astype(np.float32)


def _cases(tf):
    conv = lambda x: tf.nn.conv2d(x, W, 1, "SAME")  # noqa: E731
    return {
        "activations": ((1, 5, 5, 4), lambda x: tf.concat([
            tf.nn.elu(x), tf.nn.selu(x), tf.nn.leaky_relu(x, 0.3), tf.nn.relu6(x * 4),
            tf.square(x), tf.nn.gelu(x, approximate=True), tf.nn.gelu(x, approximate=False) * tf.sigmoid(x),
            tf.math.erf(x), tf.nn.log_softmax(x)], axis=-1)),
        "binary": ((2, 6), lambda x: tf.maximum(x, 0.1) / (tf.minimum(x, 2.0) + 3.0)
                   + tf.pow(tf.abs(x) + 1.0, 1.5) - tf.math.squared_difference(x, 0.5)
                   + tf.sqrt(tf.abs(x)) * tf.math.rsqrt(tf.abs(x) + 1.0)),
        "reductions_nhwc": ((2, 4, 4, 4), lambda x: tf.concat([
            tf.reduce_sum(conv(x), axis=[1, 2]), tf.reduce_max(conv(x), axis=[1, 2]),
            tf.reduce_mean(conv(x), axis=[1, 2])], axis=-1)),
        "keepdims_nhwc": ((1, 4, 4, 4), lambda x: conv(x) - tf.reduce_mean(
            conv(x), axis=-1, keepdims=True)),
        "shape_chain": ((2, 4, 4, 4), lambda x: tf.reshape(
            conv(x), tf.stack([tf.shape(x)[0], -1]))),
        "stack_unstack_split": ((2, 6, 4), lambda x: tf.concat([
            tf.stack(tf.unstack(x, axis=1)[::-1], axis=2)[..., 0],
            tf.concat(tf.split(x, 2, axis=1)[::-1], axis=1)[:, :, 1],
            tf.concat(tf.split(x, [1, 3], axis=2)[::-1], axis=2)[:, :, 2]], axis=1)),
        "pad_transpose": ((1, 4, 4, 4), lambda x: tf.transpose(
            tf.pad(conv(x), [[0, 0], [1, 2], [0, 1], [0, 0]]) +
            tf.pad(conv(x), [[0, 0], [1, 2], [0, 1], [0, 0]], mode="REFLECT") +
            tf.pad(conv(x), [[0, 0], [1, 2], [0, 1], [0, 0]], mode="SYMMETRIC"), [0, 3, 1, 2])),
        "symmetric_pad_2d": ((3, 5), lambda x: tf.pad(x, [[1, 3], [5, 2]], mode="SYMMETRIC")),
        "resize": ((1, 3, 3, 4), lambda x: tf.concat([
            tf.compat.v1.image.resize_bilinear(conv(x), (6, 6)),
            tf.image.resize(conv(x), (6, 6), method="bilinear"),
            tf.compat.v1.image.resize_nearest_neighbor(conv(x), (6, 6)),
            tf.image.resize(conv(x), (6, 6), method="nearest")], axis=-1)),
        "slices": ((2, 5, 6), lambda x: tf.concat([
            x[:, 1:4, ::2][..., :2], x[:, -1:, 1:3], tf.expand_dims(x[:, 0, :2], 1),
            tf.slice(x, [0, 1, 2], [-1, 1, 2]), x[:, tf.newaxis, 2, 3:5][:, 0:1, :]], axis=1)),
        "cast_identity_n": ((2, 3), lambda x: tf.identity_n(
            [tf.cast(tf.cast(x * 10, tf.int32), tf.float32), x])[0]),
        "conv3d_pool": ((1, 4, 4, 4, 4), lambda x: tf.nn.max_pool3d(
            tf.nn.conv3d(x, W3, [1, 1, 1, 1, 1], "SAME"), 2, 2, "VALID")),
        "dilated_strided": ((1, 9, 9, 4), lambda x: tf.nn.avg_pool2d(
            tf.nn.conv2d(x, W, 1, "SAME", dilations=2), 3, 2, "SAME")),
        "batch_matmul_adj": ((2, 3, 4), lambda x: tf.linalg.matmul(
            x, x, adjoint_a=True) + tf.linalg.matmul(x, x, adjoint_b=True)[:, :1, :1]),
    }


@pytest.fixture(scope="module")
def frozen(tf, tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    out = {}
    for name, (shape, fn) in _cases(tf).items():
        cf = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32, name="x"))
        path = root / f"{name}.pb"
        path.write_bytes(cf.graph.as_graph_def().SerializeToString())
        out[name] = (path, shape, cf)
    return out


@pytest.mark.parametrize("name", [
    "activations", "binary", "reductions_nhwc", "keepdims_nhwc", "shape_chain",
    "stack_unstack_split", "pad_transpose", "symmetric_pad_2d", "resize", "slices", "cast_identity_n",
    "conv3d_pool", "dilated_strided", "batch_matmul_adj"])
def test_op_matches_tensorflow(tf, frozen, name):
    path, shape, cf = frozen[name]
    x = np.random.default_rng(14).normal(size=shape).astype(np.float32)
    module = load_graphdef(path)
    (got,) = runtime.run(module, {"x": x}).values()
    want = np.asarray(cf(tf.constant(x)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
