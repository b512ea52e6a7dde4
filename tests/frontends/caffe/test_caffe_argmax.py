"""Caffe's ArgMax layer, checked against `caffe_oracle.argmax` (written from BVLC
Caffe's argmax_layer.cpp). Inputs hold few distinct values so that ties decide
which index wins (Caffe: the last of equal maxima)."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_nets import parse
from caffe_oracle import forward

import qcc
from qcc.dialects import qnn
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.errors import FrontendError
from qcc.runtime import run

NET = """
name: "ArgMax"
input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
layer { name: "flat" type: "ArgMax" bottom: "x" top: "flat" }
layer { name: "chan" type: "ArgMax" bottom: "x" top: "chan" argmax_param { axis: 1 } }
layer { name: "last" type: "ArgMax" bottom: "x" top: "last"
        argmax_param { axis: -1 top_k: 1 out_max_val: false } }
"""

NET_2D = """
name: "ArgMax2d"
input: "x" input_shape { dim: 3 dim: 7 }
layer { name: "flat" type: "ArgMax" bottom: "x" top: "flat" }
"""


def _check(tmp_path, text, shape):
    proto = tmp_path / "argmax.prototxt"
    proto.write_text(text)
    module = qcc.load(proto)  # no blobs: no caffemodel
    x = {"x": np.random.default_rng(4).integers(-2, 2, shape).astype(np.float32)}
    got, want = run(module, x), forward(parse(text), pb.NetParameter(), x)
    assert got
    for name, value in got.items():
        assert value.dtype == np.float32, name
        assert value.shape == want[name].shape, name
        np.testing.assert_array_equal(value, want[name], err_msg=name)
    assert any(isinstance(op, qnn.ArgMaxOp) for op in module.walk())
    return got


def test_argmax_with_and_without_axis(tmp_path):
    got = _check(tmp_path, NET, (2, 3, 4, 5))
    assert got["flat"].shape == (2, 1, 1, 1)
    assert got["chan"].shape == (2, 1, 4, 5)
    assert got["last"].shape == (2, 3, 4, 1)


def test_argmax_of_a_2d_bottom_is_n_1_1(tmp_path):
    assert _check(tmp_path, NET_2D, (3, 7))["flat"].shape == (3, 1, 1)


@pytest.mark.parametrize("param", ["top_k: 2", "out_max_val: true", "axis: 4"])
def test_unsupported_argmax_forms_name_the_layer(tmp_path, param):
    proto = tmp_path / "bad.prototxt"
    proto.write_text('input: "x" input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }\n'
                     'layer { name: "am" type: "ArgMax" bottom: "x" top: "am" '
                     f"argmax_param {{ {param} }} }}\n")
    with pytest.raises(FrontendError) as e:
        qcc.load(proto)
    msg = str(e.value)
    assert "layer 'am' (ArgMax)" in msg and "\n" not in msg
    assert ("out of range" if param == "axis: 4" else "only top_k 1") in msg


def test_argmax_exports_back_to_caffe(tmp_path):
    """The float Caffe export writes ArgMax layers; the written net matches the oracle."""
    from qcc.exporters.caffe import export_caffe

    proto = tmp_path / "argmax.prototxt"
    proto.write_text(NET)
    export_caffe(qcc.load(proto), tmp_path / "e.prototxt", tmp_path / "e.caffemodel")
    written = (tmp_path / "e.prototxt").read_text()
    assert written.count('type: "ArgMax"') == 3
    back = qcc.load(tmp_path / "e.prototxt")  # no blobs: the caffemodel holds no layers
    x = {"x": np.random.default_rng(6).integers(-2, 2, (2, 3, 4, 5)).astype(np.float32)}
    want = forward(parse(NET), pb.NetParameter(), x)
    got = run(back, x)
    assert sorted(got) == ["chan", "flat", "last"]
    for name, value in got.items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_first_index_argmax_has_no_caffe_layer(tmp_path):
    from qcc.exporters.caffe import ExportError, export_caffe
    from qcc.ir import Graph

    g = Graph()
    x = g.input("x", (2, 3))
    module = g.finish({"y": g.add(qnn.ArgMaxOp.make(x, axis=1))})
    with pytest.raises(ExportError, match="select_last_index false"):
        export_caffe(module, tmp_path / "o.prototxt", tmp_path / "o.caffemodel")
