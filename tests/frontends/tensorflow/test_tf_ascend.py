"""The Ascend rules that concern TensorFlow fire on TensorFlow graphs, with remarks:
a transposed MatMul, a dilated Conv2DBackpropInput, Cin <= 16; layers the rules do
not concern quantize. Graphs are written by TensorFlow."""

from __future__ import annotations

import numpy as np

import qcc
from qcc import passes
from qcc.frontends.tensorflow import load_graphdef
from qcc.passes.legalize_ascend import legalize


def _remarks(path):
    module = load_graphdef(path)
    passes.run(module, "canonicalize,qcc-fuse-bn")
    _, remarks = legalize(module, None, "ascend", ())
    return remarks


def test_transposed_matmul_stays_float(tf_models):
    remarks = _remarks(tf_models["matmul_tb"][0])
    assert len(remarks) == 1
    assert "stays float: matmul_transposed: MatMul with transposed" in remarks[0]


def test_min_cin_and_quantized_layers(tf_models, tmp_path):
    """cnn_bn: conv1 has Cin = 3 (min_cin), conv2 Cin = 20 and the dense Cin = 24
    quantize; the report names the rule."""
    path, shape, _ = tf_models["cnn_bn"]
    calib = {"x": np.random.default_rng(10).normal(size=(4, *shape[1:])).astype(np.float32)}
    result = qcc.quantize(path, calib, outdir=tmp_path / "o", target="ascend", progress=False)
    rows = {r["layer"]: r for r in result.report["layers"]}
    floats = [r for r in rows.values() if not r["quantized"]]
    assert len(floats) == 1 and floats[0]["type"] == "qnn.conv"
    assert floats[0]["reason"].startswith("min_cin: Cin = 3 <= 16")
    quantized = [k for k, r in rows.items() if r["quantized"]]
    assert len(quantized) == 2, rows
    assert any("stays float: min_cin" in r for r in result.report["remarks"])
    assert (tmp_path / "o" / "cnn_bn_fake_quant.pb").is_file()


def test_dilated_deconv_stays_float(tf, tmp_path):
    rng = np.random.default_rng(11)
    w = rng.normal(size=(3, 3, 20, 24)).astype(np.float32)  # [H, W, out, in]: Cin 24

    def f(x):
        return tf.nn.conv2d_transpose(x, w, output_shape=(1, 12, 12, 20), strides=1,
                                      padding="VALID", dilations=2)

    cf = tf.function(f).get_concrete_function(tf.TensorSpec((1, 8, 8, 24), tf.float32, name="x"))
    path = tmp_path / "deconv.pb"
    path.write_bytes(cf.graph.as_graph_def().SerializeToString())
    module = load_graphdef(path)
    deconv = next(op for op in module.walk() if op.name == "qnn.conv_transpose")
    assert deconv.attributes["source"].data == "tensorflow.Conv2DBackpropInput"
    remarks = _remarks(path)
    assert len(remarks) == 1 and "deconv_dilation: conv_transpose with dilations [2, 2]" in \
        remarks[0]
