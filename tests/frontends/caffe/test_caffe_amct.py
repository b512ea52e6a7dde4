"""AMCT's Caffe vocabulary (create_quant_config, init, quantize_model, save_model,
convert_model) on prototxt + caffemodel files."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_nets import LENET, input_shapes, parse, write
from caffe_oracle import forward

import qcc
from qcc.frontends.caffe import amct
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.errors import FrontendError
from qcc.runtime import run


def _data(net, n, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((n, *v[1:])).astype(np.float32)
            for k, v in input_shapes(net).items()}


def test_the_whole_vocabulary(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    cfg = amct.create_quant_config(tmp_path / "quant.json", proto, caffemodel,
                                   skip_layers=["ip2"])
    assert not cfg["layers"]["ip2"]["quantize"] and cfg["layers"]["conv1"]["quantize"]
    graph = amct.init(tmp_path / "quant.json", proto, caffemodel)
    amct.quantize_model(graph, _data(net, 4, 0))
    paths = amct.save_model(graph, "Both", tmp_path / "out" / "lenet")
    assert {k: p.name for k, p in paths.items()} == {
        "fake_quant": "lenet_fake_quant.prototxt", "deploy": "lenet_deploy.prototxt",
        "record": "lenet_record.txt"}
    back = qcc.load(paths["fake_quant"], weights=paths["fake_quant"].with_suffix(".caffemodel"))
    x = _data(net, 2, 1)
    np.testing.assert_array_equal(run(back, x)["prob"], run(graph, x)["prob"])
    assert 'key: "ip2"' not in paths["record"].read_text()


CONV = """
name: "OneConv"
input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "conv" type: "Convolution" bottom: "x" top: "y"
        convolution_param { num_output: 2 kernel_size: 2 bias_term: false }
        blobs { shape { dim: 2 dim: 2 dim: 2 dim: 2 }
                data: 0.30 data: -0.52 data: 0.11 data: 0.70 data: -0.25 data: 0.05
                data: 0.90 data: -0.33 data: 1.00 data: 0.27 data: -0.73 data: 0.48
                data: 0.12 data: -0.99 data: 0.61 data: 0.07 } }
"""

RECORD = """record {
  key: "conv"
  value { scale_d: 0.02 offset_d: -3 scale_w: 0.01 scale_w: 0.008 offset_w: 0 offset_w: 0 }
}
"""


def test_convert_model_from_a_hand_written_record(tmp_path):
    (tmp_path / "n.prototxt").write_text(CONV)
    (tmp_path / "record.txt").write_text(RECORD)
    paths = amct.convert_model(tmp_path / "n.prototxt", None, tmp_path / "record.txt",
                               tmp_path / "out" / "n")
    back = qcc.load(paths["fake_quant"], weights=paths["fake_quant"].with_suffix(".caffemodel"))
    x = np.random.default_rng(2).uniform(-3, 3, (1, 2, 3, 3)).astype(np.float32)
    # By hand: x on the grid 0.02 * (q + 3), q in [-128, 127]; weights per output
    # channel on 0.01 * k and 0.008 * k, k in [-127, 127].
    xq = (np.clip(np.rint(x / np.float32(0.02)) - 3, -128, 127) + 3) * 0.02
    net = parse(CONV)
    w = np.asarray(net.layer[0].blobs[0].data).reshape(2, 2, 2, 2)
    s = np.array([0.01, 0.008]).reshape(2, 1, 1, 1)
    fused = pb.NetParameter()
    layer = fused.layer.add(name="conv")
    b = layer.blobs.add()
    b.shape.dim.extend(w.shape)
    b.data.extend((np.clip(np.rint(w / s), -127, 127) * s).ravel())
    want = forward(net, fused, {"x": xq})["y"]
    np.testing.assert_allclose(run(back, {"x": x})["y"], want, rtol=1e-5, atol=1e-6)
    deploy = (tmp_path / "out" / "n_deploy.prototxt").read_text()
    assert 'type: "Quant"' in deploy and 'type: "DeQuant"' in deploy


def test_convert_model_with_qcc_s_own_record_gives_its_model(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    calib = _data(net, 4, 3)
    result = qcc.quantize(str(proto), calib, None, tmp_path / "q", weights=str(caffemodel),
                          progress=False)
    paths = amct.convert_model(proto, caffemodel, tmp_path / "q" / "record.txt",
                               tmp_path / "c" / "lenet")
    back = qcc.load(paths["fake_quant"], weights=paths["fake_quant"].with_suffix(".caffemodel"))
    x = _data(net, 2, 4)
    np.testing.assert_array_equal(run(back, x)["prob"], run(result.module, x)["prob"])


def test_record_errors(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    (tmp_path / "r.txt").write_text('record { key: "nope" value { scale_d: 1 } }\n')
    with pytest.raises(FrontendError, match="no quantizable layer named nope"):
        amct.convert_model(proto, caffemodel, tmp_path / "r.txt", tmp_path / "o" / "n")
    (tmp_path / "r.txt").write_text('record { key: "conv1" value { scale_d: } }\n')
    with pytest.raises(FrontendError, match=r"r\.txt:1:\d+: "):
        amct.convert_model(proto, caffemodel, tmp_path / "r.txt", tmp_path / "o" / "n")
    assert not (tmp_path / "o").exists()
