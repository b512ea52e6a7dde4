"""Caffe nets written as prototxt, with weights generated here and written as a
caffemodel through qcc's schema, for the Caffe frontend and exporter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from qcc.frontends.caffe import caffe_pb2 as pb

LENET = """
name: "LeNet"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 1 dim: 28 dim: 28 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 4 kernel_size: 5 stride: 1
                            weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 5 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
        inner_product_param { num_output: 20 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss"
        include { phase: TRAIN } }
"""

# BatchNorm + Scale after every conv, the `input` + `input_dim` form, a residual
# Eltwise SUM with coeff, AVE pooling in ceil mode with a clipped last window.
RESNET = """
name: "ResNetLike"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 15 input_dim: 15
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
        batch_norm_param { use_global_stats: true eps: 1e-5 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "res_a" type: "Convolution" bottom: "conv1" top: "res_a"
        convolution_param { num_output: 8 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 } }
layer { name: "bn_a" type: "BatchNorm" bottom: "res_a" top: "res_a" }
layer { name: "scale_a" type: "Scale" bottom: "res_a" top: "res_a" scale_param { bias_term: true } }
layer { name: "relu_a" type: "ReLU" bottom: "res_a" top: "res_a" relu_param { negative_slope: 0.1 } }
layer { name: "res_b" type: "Convolution" bottom: "res_a" top: "res_b"
        convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "bn_b" type: "BatchNorm" bottom: "res_b" top: "res_b" }
layer { name: "scale_b" type: "Scale" bottom: "res_b" top: "res_b" scale_param { bias_term: true } }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "res_b" top: "sum"
        eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5 } }
layer { name: "relu_sum" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "pool" type: "Pooling" bottom: "sum" top: "pool"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "gpool" type: "Pooling" bottom: "pool" top: "gpool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "gpool" top: "fc"
        inner_product_param { num_output: 5 } }
"""

MOBILENET = """
name: "MobileNetV1Like"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv0" type: "Convolution" bottom: "data" top: "conv0"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 bias_term: false } }
layer { name: "conv0/bn" type: "BatchNorm" bottom: "conv0" top: "conv0" }
layer { name: "conv0/scale" type: "Scale" bottom: "conv0" top: "conv0" scale_param { bias_term: true } }
layer { name: "conv0/relu" type: "ReLU" bottom: "conv0" top: "conv0" }
layer { name: "conv1/dw" type: "Convolution" bottom: "conv0" top: "conv1/dw"
        convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "conv1/dw/bn" type: "BatchNorm" bottom: "conv1/dw" top: "conv1/dw" }
layer { name: "conv1/dw/scale" type: "Scale" bottom: "conv1/dw" top: "conv1/dw"
        scale_param { bias_term: true } }
layer { name: "conv1/dw/relu" type: "ReLU" bottom: "conv1/dw" top: "conv1/dw" }
layer { name: "conv1/sep" type: "Convolution" bottom: "conv1/dw" top: "conv1/sep"
        convolution_param { num_output: 16 kernel_size: 1 bias_term: false } }
layer { name: "conv1/sep/bn" type: "BatchNorm" bottom: "conv1/sep" top: "conv1/sep" }
layer { name: "conv1/sep/scale" type: "Scale" bottom: "conv1/sep" top: "conv1/sep"
        scale_param { bias_term: true } }
layer { name: "conv1/sep/relu" type: "ReLU" bottom: "conv1/sep" top: "conv1/sep" }
layer { name: "conv2/dw" type: "Convolution" bottom: "conv1/sep" top: "conv2/dw"
        convolution_param { num_output: 16 group: 16 kernel_size: 3 pad: 1 stride: 2
                            bias_term: false } }
layer { name: "conv2/dw/bn" type: "BatchNorm" bottom: "conv2/dw" top: "conv2/dw" }
layer { name: "conv2/dw/scale" type: "Scale" bottom: "conv2/dw" top: "conv2/dw"
        scale_param { bias_term: true } }
layer { name: "conv2/dw/relu" type: "ReLU" bottom: "conv2/dw" top: "conv2/dw" }
layer { name: "pool" type: "Pooling" bottom: "conv2/dw" top: "pool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "Convolution" bottom: "pool" top: "fc"
        convolution_param { num_output: 10 kernel_size: 1 } }
layer { name: "flat" type: "Flatten" bottom: "fc" top: "flat" }
layer { name: "prob" type: "Softmax" bottom: "flat" top: "prob" }
"""

DECONV = """
name: "DeconvNet"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 4 dim: 7 dim: 7 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 } }
layer { name: "up" type: "Deconvolution" bottom: "conv" top: "up"
        convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layer { name: "up_bn" type: "BatchNorm" bottom: "up" top: "up" }
layer { name: "up_scale" type: "Scale" bottom: "up" top: "up" scale_param { bias_term: true } }
layer { name: "up2" type: "Deconvolution" bottom: "up" top: "up2"
        convolution_param { num_output: 3 kernel_size: 3 stride: 1 bias_term: false } }
layer { name: "crop" type: "Crop" bottom: "up2" bottom: "data" top: "crop"
        crop_param { axis: 2 offset: 1 } }
layer { name: "cat" type: "Concat" bottom: "crop" bottom: "data" top: "cat" }
"""

# The legacy V1 `layers` form; weights are written as legacy 4-D blobs.
LEGACY = """
name: "LegacyNet"
input: "data"
input_dim: 1 input_dim: 2 input_dim: 9 input_dim: 9
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         blobs_lr: 1 blobs_lr: 2
         convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "drop" type: DROPOUT bottom: "pool1" top: "pool1"
         dropout_param { dropout_ratio: 0.5 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool1" top: "ip"
         inner_product_param { num_output: 4 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""


def parse(text: str) -> pb.NetParameter:
    net = pb.NetParameter()
    text_format.Parse(text, net)
    return net


def _layers(net: pb.NetParameter):
    return list(net.layer) or list(net.layers)


def _param_shapes(net: pb.NetParameter, inputs: dict[str, tuple[int, ...]]):
    """Blob shapes of each weighted layer, from a walk of the net's shapes (numpy)."""
    from caffe_oracle import LAYERS, V1, layer_list

    shapes = {}
    values = {k: np.zeros(v) for k, v in inputs.items()}
    rng = np.random.default_rng(0)
    for name, kind, bottoms, tops, la in layer_list(net):
        if kind == "Input":
            continue
        xs = [values[b] for b in bottoms]
        blobs = _make_blobs(kind, la, xs, rng)
        shapes[name] = blobs
        outs = LAYERS[kind](la, xs, blobs, len(tops))
        for t, y in zip(tops, outs, strict=True):
            values[t] = y
    del V1
    return shapes


def _make_blobs(kind: str, la, xs, rng) -> list[np.ndarray]:
    x = xs[0] if xs else None
    if kind in ("Convolution", "Deconvolution"):
        p = la.convolution_param
        kh = p.kernel_h if p.HasField("kernel_h") else p.kernel_size[0]
        kw = p.kernel_w if p.HasField("kernel_w") else p.kernel_size[-1]
        c = x.shape[1]
        if kind == "Convolution":
            shape = (p.num_output, c // p.group, kh, kw)
        else:
            shape = (c, p.num_output // p.group, kh, kw)
        fan = np.prod(shape[1:])
        w = [rng.standard_normal(shape) / np.sqrt(fan)]
        return w + ([rng.standard_normal(p.num_output) * 0.1] if p.bias_term else [])
    if kind == "InnerProduct":
        p = la.inner_product_param
        k = int(np.prod(x.shape[p.axis % x.ndim:]))
        shape = (k, p.num_output) if p.transpose else (p.num_output, k)
        w = [rng.standard_normal(shape) / np.sqrt(k)]
        return w + ([rng.standard_normal(p.num_output) * 0.1] if p.bias_term else [])
    if kind == "BatchNorm":
        c = x.shape[1]
        factor = 999.0  # Caffe's moving-average scale factor: mean and var are divided by it
        return [rng.standard_normal(c) * 0.2 * factor, rng.uniform(0.5, 2.0, c) * factor,
                np.array([factor])]
    if kind == "Scale":
        from caffe_oracle import _span

        if len(xs) == 2:
            return [rng.standard_normal(xs[1].shape) * 0.1] if la.scale_param.bias_term else []
        _, dims = _span(x, la.scale_param.axis, la.scale_param.num_axes)
        s = [rng.uniform(0.5, 1.5, dims)]
        return s + ([rng.standard_normal(dims) * 0.1] if la.scale_param.bias_term else [])
    if kind == "Bias" and len(xs) == 1:
        from caffe_oracle import _span

        _, dims = _span(x, la.bias_param.axis, la.bias_param.num_axes)
        return [rng.standard_normal(dims)]
    if kind == "PReLU":
        n = 1 if la.prelu_param.channel_shared else x.shape[1]
        return [rng.uniform(0.05, 0.3, n)]
    if kind == "Normalize":
        n = 1 if la.norm_param.channel_shared else x.shape[1]
        return [rng.uniform(1.0, 20.0, n)]
    return []


def input_shapes(net: pb.NetParameter) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i, name in enumerate(net.input):
        if i < len(net.input_shape):
            shapes[name] = tuple(net.input_shape[i].dim)
        else:
            shapes[name] = tuple(net.input_dim[4 * i:4 * i + 4])
    for la in net.layer:
        if la.type == "Input":
            for j, top in enumerate(la.top):
                shapes[top] = tuple(la.input_param.shape[min(j, len(la.input_param.shape) - 1)].dim)
    return shapes


def weights(net: pb.NetParameter, legacy: bool = False) -> pb.NetParameter:
    """A caffemodel for `net`: random blobs in Caffe's layouts (legacy 4-D blobs
    num/channels/height/width when `legacy`), layers in the net's form."""
    blobs = _param_shapes(net, input_shapes(net))
    model = pb.NetParameter(name=net.name)
    for la in _layers(net):
        arrays = blobs.get(la.name, [])
        if not arrays:
            continue
        if net.layer:
            out = model.layer.add(name=la.name, type=la.type)
        else:
            out = model.layers.add(name=la.name, type=la.type)
        for a in arrays:
            b = out.blobs.add()
            if legacy:
                dims = (1,) * (4 - a.ndim) + a.shape
                b.num, b.channels, b.height, b.width = dims
            else:
                b.shape.dim.extend(a.shape)
            b.data.extend(np.asarray(a, np.float32).ravel())
    return model


def write(tmp: Path, text: str, legacy: bool = False) -> tuple[Path, Path, pb.NetParameter,
                                                                 pb.NetParameter]:
    net = parse(text)
    model = weights(net, legacy)
    proto = tmp / f"{net.name}.prototxt"
    proto.write_text(text)
    caffemodel = tmp / f"{net.name}.caffemodel"
    caffemodel.write_bytes(model.SerializeToString())
    return proto, caffemodel, net, model
