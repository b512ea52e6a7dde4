"""Caffe frontend: nets written as prototxt here, weights generated here, outputs
checked against `caffe_oracle` (a float64 numpy model of Caffe's layer code)."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_nets import DECONV, LEGACY, LENET, MOBILENET, RESNET, input_shapes, parse, write
from caffe_oracle import forward

import qcc
from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.errors import FrontendError
from qcc.runtime import run


def _inputs(net: pb.NetParameter, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in input_shapes(net).items()}


def _check(tmp_path, text: str, legacy: bool = False, atol: float = 2e-5):
    proto, caffemodel, net, model = write(tmp_path, text, legacy)
    module = qcc.load(proto, weights=caffemodel)
    x = _inputs(net)
    got = run(module, x)
    want = forward(net, model, x)
    assert got, "the net has outputs"
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=atol, err_msg=name)
    return module, got


def test_lenet(tmp_path):
    module, got = _check(tmp_path, LENET)
    assert list(got) == ["prob"]  # the TRAIN-only loss layer is not in the deploy view
    assert got["prob"].shape == (2, 10)


def test_resnet_bn_scale_input_dim(tmp_path):
    module, got = _check(tmp_path, RESNET)
    assert list(got) == ["fc"]
    bns = [op for op in module.walk() if isinstance(op, qnn.BatchNormOp)]
    assert len(bns) == 3


def test_mobilenet_depthwise(tmp_path):
    module, _ = _check(tmp_path, MOBILENET)
    groups = sorted(op.groups.value.data for op in module.walk() if isinstance(op, qnn.ConvOp))
    assert groups == [1, 1, 1, 8, 16]


def test_deconvolution(tmp_path):
    module, got = _check(tmp_path, DECONV)
    assert got["cat"].shape == (1, 7, 7, 7)


def test_legacy_v1_layers_and_4d_blobs(tmp_path):
    _check(tmp_path, LEGACY, legacy=True)


def test_legacy_blobs_in_the_current_form(tmp_path):
    _check(tmp_path, RESNET, legacy=True)


def test_ceil_pooling_clips_the_last_window(tmp_path):
    """7x7, kernel 3, stride 2, pad 1: ceil gives 5, but the 5th window would start
    in the end pad (4 * 2 >= 7 + 1), so Caffe drops it; AVE divides a window cut by
    the input's end by its cells inside the padded input."""
    text = """
    name: "Pool"
    input: "x" input_shape { dim: 1 dim: 1 dim: 7 dim: 7 }
    layer { name: "ave" type: "Pooling" bottom: "x" top: "ave"
            pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "max" type: "Pooling" bottom: "x" top: "max"
            pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
    layer { name: "floor" type: "Pooling" bottom: "x" top: "floor"
            pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR } }
    """
    (tmp_path / "p.prototxt").write_text(text)
    module = qcc.load(tmp_path / "p.prototxt")
    x = np.arange(49, dtype=np.float32).reshape(1, 1, 7, 7)
    got = run(module, {"x": x})
    assert got["ave"].shape == (1, 1, 4, 4)
    assert got["max"].shape == (1, 1, 4, 4)  # ceil: the last window holds one column
    assert got["floor"].shape == (1, 1, 3, 3)
    # By hand: window rows -1..1 (clipped to 0..1), cols -1..1: cells 0, 1, 7, 8, divided
    # by the 9 cells of the padded window.
    assert got["ave"][0, 0, 0, 0] == pytest.approx((0 + 1 + 7 + 8) / 9)
    # Last window rows 5..7, cols 5..7: inside the padded input 5..7 (3 rows, since the
    # pad reaches 7), the input has rows 5..6: (40+41+47+48) / 9.
    assert got["ave"][0, 0, 3, 3] == pytest.approx((40 + 41 + 47 + 48) / 9)
    assert got["max"][0, 0, 3, 3] == 48  # column 6 and row 6 alone
    want = forward(parse(text), pb.NetParameter(), {"x": x})
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


def test_batchnorm_moving_average_factor(tmp_path):
    """Caffe's BatchNorm stores mean and variance times a factor (third blob)."""
    text = """
    name: "BN"
    input: "x" input_shape { dim: 1 dim: 2 dim: 1 dim: 1 }
    layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { eps: 0 } }
    """
    model = pb.NetParameter()
    layer = model.layer.add(name="bn", type="BatchNorm")
    for values in ([2.0, -4.0], [8.0, 32.0], [2.0]):  # mean (1, -2), var (4, 16) after / 2
        b = layer.blobs.add()
        b.shape.dim.append(len(values))
        b.data.extend(values)
    (tmp_path / "bn.prototxt").write_text(text)
    (tmp_path / "bn.caffemodel").write_bytes(model.SerializeToString())
    module = qcc.load(tmp_path / "bn.prototxt", weights=tmp_path / "bn.caffemodel")
    y = run(module, {"x": np.array([5.0, 2.0], np.float32).reshape(1, 2, 1, 1)})["y"]
    np.testing.assert_allclose(y.ravel(), [(5 - 1) / 2, (2 + 2) / 4])


ZOO = """
name: "Zoo"
input: "x" input_shape { dim: 2 dim: 4 dim: 6 dim: 6 }
layer { name: "split" type: "Split" bottom: "x" top: "a" top: "b" }
layer { name: "slice" type: "Slice" bottom: "a" top: "s1" top: "s2"
        slice_param { axis: 1 slice_point: 1 } }
layer { name: "prod" type: "Eltwise" bottom: "s1" bottom: "s1" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "abs" type: "AbsVal" bottom: "s2" top: "abs" }
layer { name: "max" type: "Eltwise" bottom: "abs" bottom: "s2" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "power" type: "Power" bottom: "abs" top: "power"
        power_param { power: 1.5 scale: 0.5 shift: 1.0 } }
layer { name: "exp" type: "Exp" bottom: "s2" top: "exp" exp_param { base: 2 scale: 0.5 shift: 0.1 } }
layer { name: "log" type: "Log" bottom: "power" top: "log" log_param { base: 10 scale: 2 } }
layer { name: "ln" type: "Log" bottom: "power" top: "ln" }
layer { name: "elu" type: "ELU" bottom: "s2" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "bnll" type: "BNLL" bottom: "s2" top: "bnll" }
layer { name: "sig" type: "Sigmoid" bottom: "s2" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "s2" top: "tanh" }
layer { name: "clip" type: "Clip" bottom: "s2" top: "clip" clip_param { min: -0.5 max: 0.5 } }
layer { name: "prelu" type: "PReLU" bottom: "b" top: "prelu" }
layer { name: "prelu_shared" type: "PReLU" bottom: "b" top: "prelu_shared"
        prelu_param { channel_shared: true } }
layer { name: "lrn" type: "LRN" bottom: "b" top: "lrn"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "lrn_within" type: "LRN" bottom: "b" top: "lrn_within"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "norm" type: "Normalize" bottom: "b" top: "norm" norm_param { across_spatial: false channel_shared: false } }
layer { name: "norm_all" type: "Normalize" bottom: "b" top: "norm_all" }
layer { name: "up" type: "Upsample" bottom: "b" top: "up" upsample_param { scale: 2 } }
layer { name: "interp_zoom" type: "Interp" bottom: "b" top: "interp_zoom" interp_param { zoom_factor: 3 } }
layer { name: "interp_size" type: "Interp" bottom: "b" top: "interp_size"
        interp_param { height: 4 width: 9 } }
layer { name: "interp_shrink" type: "Interp" bottom: "b" top: "interp_shrink"
        interp_param { shrink_factor: 2 zoom_factor: 2 } }
layer { name: "scale_hw" type: "Scale" bottom: "b" top: "scale_hw"
        scale_param { axis: 2 num_axes: 2 bias_term: true } }
layer { name: "scale2" type: "Scale" bottom: "s2" bottom: "abs" top: "scale2"
        scale_param { axis: 0 bias_term: true } }
layer { name: "bias" type: "Bias" bottom: "b" top: "bias" bias_param { axis: 1 num_axes: 1 } }
layer { name: "perm" type: "Permute" bottom: "b" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "flat" type: "Flatten" bottom: "perm" top: "flat" flatten_param { axis: 1 end_axis: 2 } }
layer { name: "reshape" type: "Reshape" bottom: "flat" top: "reshape"
        reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }
layer { name: "ip_axis2" type: "InnerProduct" bottom: "reshape" top: "ip_axis2"
        inner_product_param { num_output: 3 axis: 2 } }
layer { name: "ip_t" type: "InnerProduct" bottom: "b" top: "ip_t"
        inner_product_param { num_output: 5 transpose: true } }
layer { name: "sm" type: "Softmax" bottom: "ip_axis2" top: "sm" softmax_param { axis: 2 } }
layer { name: "drop" type: "Dropout" bottom: "sm" top: "sm" }
layer { name: "silence" type: "Silence" bottom: "a" }
"""


def test_layer_zoo(tmp_path):
    _check(tmp_path, ZOO, atol=1e-5)


# ---------------------------------------------------------------- bad input


def _error(tmp_path, text: str, model: pb.NetParameter | None = None) -> str:
    proto = tmp_path / "bad.prototxt"
    proto.write_text(text)
    weights = None
    if model is not None:
        weights = tmp_path / "bad.caffemodel"
        weights.write_bytes(model.SerializeToString())
    with pytest.raises(FrontendError) as e:
        qcc.load(proto, weights=weights)
    return str(e.value)


def test_syntax_error_has_line_and_column(tmp_path):
    msg = _error(tmp_path, 'name: "n"\ninput: "x"\nlayer { name: "c" type: "ReLU" bottom: x }\n')
    assert msg.startswith(f"{tmp_path / 'bad.prototxt'}:3:")
    assert "\n" not in msg


def test_unknown_types_are_listed_at_once(tmp_path):
    msg = _error(tmp_path, """
    input: "x" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }
    layer { name: "a" type: "Foo" bottom: "x" top: "a" }
    layer { name: "b" type: "Bar" bottom: "a" top: "b" }
    layer { name: "c" type: "Foo" bottom: "b" top: "c" }
    """)
    assert "2 unsupported Caffe layer types" in msg
    assert "Bar: b" in msg and "Foo: a, c" in msg


def test_blob_shape_mismatch_names_layer_and_shapes(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    model.layer[1].blobs[0].shape.dim[1] = 2  # conv2 weight 6x4x5x5 -> 6x2x5x5
    del model.layer[1].blobs[0].data[300:]
    msg = _error(tmp_path, LENET, model)
    assert "layer 'conv2' (Convolution)" in msg
    assert "[6, 2, 5, 5]" in msg and "[6, 4, 5, 5]" in msg


def test_missing_weights_name_the_layer(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, LENET)
    del model.layer[2]  # ip1
    msg = _error(tmp_path, LENET, model)
    assert "layer 'ip1' (InnerProduct)" in msg and "has no weight blob" in msg


def test_undefined_bottom_is_named(tmp_path):
    msg = _error(tmp_path, """
    input: "x" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }
    layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }
    """)
    assert "layer 'r' (ReLU): bottom 'nope' is not produced" in msg


def test_caffemodel_that_is_not_a_netparameter(tmp_path):
    proto = tmp_path / "n.prototxt"
    proto.write_text(LENET)
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(FrontendError, match="not a Caffe NetParameter"):
        qcc.load(proto, weights=bad)


def test_wire_format_uses_caffes_field_numbers(tmp_path):
    """A caffemodel written by hand in protobuf's wire format with the field numbers
    of BVLC Caffe's caffe.proto: NetParameter.layer = 100, LayerParameter.name = 1,
    type = 2, blobs = 7; BlobProto.shape = 7 (BlobShape.dim = 1, packed), data = 5
    (packed floats)."""
    import struct

    def key(field, wire):
        return _varint(field << 3 | wire)

    def ld(field, payload):
        return key(field, 2) + _varint(len(payload)) + payload

    def blob(shape, values):
        dims = b"".join(_varint(d) for d in shape)
        return ld(7, ld(1, dims)) + ld(5, struct.pack(f"<{len(values)}f", *values))

    layer = ld(1, b"s") + ld(2, b"Scale") + ld(7, blob([2], [3.0, -1.0]))
    (tmp_path / "w.caffemodel").write_bytes(ld(100, layer))
    (tmp_path / "w.prototxt").write_text(
        'input: "x" input_shape { dim: 1 dim: 2 }\n'
        'layer { name: "s" type: "Scale" bottom: "x" top: "y" }\n')
    module = qcc.load(tmp_path / "w.prototxt", weights=tmp_path / "w.caffemodel")
    y = run(module, {"x": np.array([[2.0, 5.0]], np.float32)})["y"]
    np.testing.assert_array_equal(y, [[6.0, -5.0]])


def _varint(v: int) -> bytes:
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def test_import_prints_and_parses(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, MOBILENET)
    module = qcc.load(proto, weights=caffemodel)
    ir.print_module(module, tmp_path / "m.mlir")
    again = ir.load_module(tmp_path / "m.mlir")
    x = _inputs(net)
    np.testing.assert_array_equal(run(module, x)["prob"], run(again, x)["prob"])
    assert module.attributes["qcc.framework"].data == "caffe"
    sources = {op.attributes["source"].data for op in module.walk() if "source" in op.attributes}
    assert sources == {"caffe.Convolution", "caffe.Pooling"}


def test_train_val_prototxt_names_its_data_and_accuracy_layers(tmp_path):
    msg = _error(tmp_path, """
    name: "TrainVal"
    layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
            transform_param { scale: 0.00390625 mirror: false }
            data_param { source: "train_lmdb" batch_size: 64 backend: LMDB } }
    layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
            transform_param { scale: 0.00390625 mean_value: 104 }
            data_param { source: "test_lmdb" batch_size: 100 backend: LMDB } }
    layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
            param { lr_mult: 1 decay_mult: 1 } inner_product_param { num_output: 10 } }
    layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
            include { phase: TEST } accuracy_param { top_k: 1 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
            loss_param { normalize: true } exclude { phase: TEST } }
    """)
    assert msg.endswith("2 unsupported Caffe layer types (type: layers):\n"
                        "  Accuracy: accuracy\n  Data: mnist")


def test_input_shapes_override_and_missing_shapes(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, MOBILENET)
    module = qcc.load(proto, weights=caffemodel, input_shapes={"data": (3, 3, 16, 16)})
    assert run(module, {"data": np.zeros((3, 3, 16, 16), np.float32)})["prob"].shape == (3, 10)
    with pytest.raises(FrontendError, match="input_shapes names nope, but the net's inputs "
                                            "are data"):
        qcc.load(proto, weights=caffemodel, input_shapes={"nope": (1,)})
    msg = _error(tmp_path, 'input: "x"\nlayer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    assert "input 'x' has no static shape" in msg and "--input-shape x=" in msg
