"""AMCT's TensorFlow vocabulary over a graph gives the model `qcc.quantize` gives,
and TensorFlow runs what save_model writes."""

from __future__ import annotations

import numpy as np

import qcc
from qcc import runtime
from qcc.dialects import quant
from qcc.frontends.tensorflow import amct


def _qtypes(module):
    return {op.attributes["id"].data: op.properties["qtype"]
            for op in module.walk() if isinstance(op, quant.FakeQuantOp)}


def test_amct_steps_over_a_tf_graph(tf, tf_models, tmp_path):
    path, shape, _ = tf_models["cnn_bn"]
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(path.read_bytes())  # TensorFlow's own GraphDef message
    rng = np.random.default_rng(12)
    calib = {"x": rng.normal(size=(4, *shape[1:])).astype(np.float32)}
    cfg = amct.create_quant_config(tmp_path / "quant.json", graph)
    dense = next(k for k, e in cfg["layers"].items() if e["type"] == "qnn.dense")
    cfg = amct.create_quant_config(tmp_path / "quant.json", graph, skip_layers=[dense])
    assert cfg["layers"][dense]["quantize"] is False
    module = amct.quantize_model(graph, tmp_path / "quant.json", tmp_path / "record.txt")
    amct.calibrate(module, calib)
    assert "scale_d" in (tmp_path / "record.txt").read_text()
    paths = amct.save_model(module, ["Identity"], tmp_path / "record.txt", tmp_path / "out" / "m")
    assert paths["quantized"].is_file() and paths["fake_quant"].is_file()

    whole = qcc.quantize(path, calib, tmp_path / "quant.json", progress=False)
    assert _qtypes(module) == _qtypes(whole.module)
    assert f"{dense}.weight" not in _qtypes(module)

    # TensorFlow runs the saved GraphDef; same numbers as qcc's runtime
    g = tf.compat.v1.GraphDef()
    g.ParseFromString(paths["quantized"].read_bytes())
    fn = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(g, name=""), [])
    run = fn.prune(fn.graph.get_tensor_by_name("x:0"), fn.graph.get_tensor_by_name("Identity:0"))
    x = rng.normal(size=shape).astype(np.float32)
    (want,) = runtime.run(module, {"x": x}).values()
    np.testing.assert_allclose(np.asarray(run(tf.constant(x))), want, atol=1e-5)
