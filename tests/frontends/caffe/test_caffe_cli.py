"""`qcc run` and `qcc quantize` on a prototxt + caffemodel; bad input is one message
with exit status 1 and no output file."""

from __future__ import annotations

import re

import numpy as np
from caffe_nets import LENET, RESNET, input_shapes, write
from caffe_oracle import forward

from qcc.tools.cli import main


def test_run_prototxt_with_weights(tmp_path, capsys):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    x = np.random.default_rng(0).standard_normal(input_shapes(net)["data"]).astype(np.float32)
    np.savez(tmp_path / "x.npz", data=x)
    out = tmp_path / "y.npz"
    assert main(["run", str(proto), "--weights", str(caffemodel), "--inputs",
                 str(tmp_path / "x.npz"), "-o", str(out)]) == 0
    with np.load(out) as y:
        np.testing.assert_allclose(y["prob"], forward(net, model, {"data": x})["prob"],
                                   rtol=1e-4, atol=1e-6)


def test_run_bad_prototxt_is_one_message(tmp_path, capsys):
    proto = tmp_path / "bad.prototxt"
    proto.write_text('layer { name: "a" type: "ReLU" bottom: "x" top: "y" \n')
    np.savez(tmp_path / "x.npz", x=np.zeros(1, np.float32))
    out = tmp_path / "y.npz"
    assert main(["run", str(proto), "--inputs", str(tmp_path / "x.npz"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(rf'qcc run: error: {re.escape(str(proto))}:1:\d+: Expected "}}".\n', err)
    assert "Traceback" not in err and not out.exists()


def test_quantize_prototxt_end_to_end(tmp_path, capsys):
    proto, caffemodel, net, model = write(tmp_path, RESNET)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", data=rng.standard_normal((4, 3, 15, 15)).astype(np.float32))
    out = tmp_path / "out"
    assert main(["quantize", str(proto), "--weights", str(caffemodel), "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert {"ResNetLike_fake_quant.onnx", "record.txt", "encodings.json"} <= set(files)
    record = (out / "record.txt").read_text()
    for layer in ("conv1", "res_a", "res_b", "fc"):  # BN + Scale fused into the convs
        assert f'key: "{layer}"' in record
    assert "bn1" not in record and "scale1" not in record
