"""A numpy model of Caffe's forward pass, written from BVLC Caffe's layer sources
(src/caffe/layers/*.cpp), in float64, as the oracle of the Caffe frontend tests.

It shares nothing with qcc but the parsed prototxt: convolution sums taps, the
deconvolution scatters, pooling runs Caffe's own window loops (pooled size with its
ceil rounding and clip, AVE divisor from the window clipped to the padded input).

    tops = forward(net, blobs, {"data": x})   # every blob by name, in-place rebinds
"""

from __future__ import annotations

import math

import numpy as np

from qcc.frontends.caffe import caffe_pb2 as pb

V1 = {"CONVOLUTION": "Convolution", "POOLING": "Pooling", "RELU": "ReLU",
      "INNER_PRODUCT": "InnerProduct", "SOFTMAX": "Softmax", "DROPOUT": "Dropout",
      "CONCAT": "Concat", "ELTWISE": "Eltwise", "LRN": "LRN", "SIGMOID": "Sigmoid"}


def blob(b: pb.BlobProto) -> np.ndarray:
    shape = tuple(b.shape.dim) if b.HasField("shape") else (b.num, b.channels, b.height,
                                                             b.width)
    return np.asarray(b.data, np.float64).reshape(shape)


def layer_list(net: pb.NetParameter):
    """(name, type, bottoms, tops, layer proto, blobs) per layer."""
    if net.layer:
        for la in net.layer:
            if any(r.HasField("phase") and r.phase == pb.TRAIN for r in la.include):
                continue  # the deploy (TEST) view
            yield la.name, la.type, list(la.bottom), list(la.top), la
    else:
        for la in net.layers:
            yield (la.name, V1[pb.V1LayerParameter.LayerType.Name(la.type)], list(la.bottom),
                   list(la.top), la)


def forward(net: pb.NetParameter, weights: pb.NetParameter, inputs: dict) -> dict:
    params = {name: [blob(b) for b in la.blobs] for name, _, _, _, la in layer_list(weights)}
    values = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    for name, kind, bottoms, tops, la in layer_list(net):
        if kind == "Input":
            continue
        xs = [values[b] for b in bottoms]
        outs = LAYERS[kind](la, xs, params.get(name, []), len(tops))
        for t, y in zip(tops, outs, strict=True):
            values[t] = y
    return values


# ---------------------------------------------------------------- helpers


def _hw(p: pb.ConvolutionParameter, field: str, default: int) -> tuple[int, int]:
    """A conv's kernel/pad/stride: the *_h/*_w pair, else the (first) repeated value."""
    if p.HasField(f"{field}_h"):
        return getattr(p, f"{field}_h"), getattr(p, f"{field}_w")
    values = list(getattr(p, "kernel_size" if field == "kernel" else field))
    if not values:
        return default, default
    return values[0], values[-1]


def conv(la, xs, w, ntop):
    p = la.convolution_param
    x = xs[0]
    kh, kw = _hw(p, "kernel", 0)
    ph, pw = _hw(p, "pad", 0)
    sh, sw = _hw(p, "stride", 1)
    d = p.dilation[0] if p.dilation else 1
    g = p.group
    n, c, h, wd = x.shape
    oh = (h + 2 * ph - (d * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (d * (kw - 1) + 1)) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o = p.num_output
    y = np.zeros((n, o, oh, ow))
    cg, og = c // g, o // g
    for gi in range(g):
        xg = xp[:, gi * cg:(gi + 1) * cg]
        wg = w[0][gi * og:(gi + 1) * og]
        for i in range(kh):
            for j in range(kw):
                tap = xg[:, :, i * d:i * d + sh * (oh - 1) + 1:sh, j * d:j * d + sw * (ow - 1) + 1:sw]
                y[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", tap, wg[:, :, i, j])
    if p.bias_term:
        y += w[1].reshape(1, -1, 1, 1)
    return [y]


def deconv(la, xs, w, ntop):
    """Scatter every input pixel through the kernel (col2im), then crop the pad."""
    p = la.convolution_param
    x = xs[0]
    kh, kw = _hw(p, "kernel", 0)
    ph, pw = _hw(p, "pad", 0)
    sh, sw = _hw(p, "stride", 1)
    d = p.dilation[0] if p.dilation else 1
    g = p.group
    n, c, h, wd = x.shape
    o = p.num_output
    fh, fw = sh * (h - 1) + d * (kh - 1) + 1, sw * (wd - 1) + d * (kw - 1) + 1
    full = np.zeros((n, o, fh, fw))
    cg, og = c // g, o // g
    for gi in range(g):
        for ci in range(cg):
            for oi in range(og):
                for i in range(kh):
                    for j in range(kw):
                        full[:, gi * og + oi, i * d:i * d + sh * (h - 1) + 1:sh,
                             j * d:j * d + sw * (wd - 1) + 1:sw] += (
                            x[:, gi * cg + ci] * w[0][gi * cg + ci, oi, i, j])
    y = full[:, :, ph:fh - ph, pw:fw - pw]
    if p.bias_term:
        y = y + w[1].reshape(1, -1, 1, 1)
    return [y]


def pooling(la, xs, w, ntop):
    """pooling_layer.cpp, Forward_cpu."""
    p = la.pooling_param
    x = xs[0]
    n, c, h, wd = x.shape
    if p.global_pooling:
        kh, kw, ph, pw, sh, sw = h, wd, 0, 0, 1, 1
    else:
        kh, kw = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size,) * 2
        ph, pw = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad,) * 2
        sh, sw = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride,) * 2
    rnd = math.ceil if p.round_mode == pb.PoolingParameter.CEIL else math.floor
    oh = int(rnd((h + 2 * ph - kh) / sh)) + 1
    ow = int(rnd((wd + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= wd + pw:
            ow -= 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, wd + pw)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, wd)
            win = x[:, :, hs:he, ws:we]
            if p.pool == pb.PoolingParameter.MAX:
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y[:, :, i, j] = win.sum(axis=(2, 3)) / size
    return [y]


def inner_product(la, xs, w, ntop):
    p = la.inner_product_param
    x = xs[0]
    axis = p.axis % x.ndim
    m = x.reshape(*x.shape[:axis], -1)
    wt = w[0].reshape(-1, m.shape[-1]) if not p.transpose else w[0].reshape(m.shape[-1], -1).T
    y = m @ wt.T
    if p.bias_term:
        y = y + w[1].reshape(-1)
    return [y]


def batch_norm(la, xs, w, ntop):
    f = 0.0 if w[2].reshape(-1)[0] == 0 else 1.0 / w[2].reshape(-1)[0]
    shape = (1, -1) + (1,) * (xs[0].ndim - 2)
    mean, var = (w[0] * f).reshape(shape), (w[1] * f).reshape(shape)
    return [(xs[0] - mean) / np.sqrt(var + la.batch_norm_param.eps)]


def _span(x, axis, num_axes):
    axis %= x.ndim
    end = x.ndim if num_axes == -1 else axis + num_axes
    return axis, x.shape[axis:end]


def _bshape(x, axis, dims):
    return (1,) * axis + tuple(dims) + (1,) * (x.ndim - axis - len(dims))


def scale(la, xs, w, ntop):
    p = la.scale_param
    x = xs[0]
    if len(xs) == 2:
        axis, dims = p.axis % x.ndim, xs[1].shape
        s, rest = xs[1], w
    else:
        axis, dims = _span(x, p.axis, p.num_axes)
        s, rest = w[0], w[1:]
    y = x * s.reshape(_bshape(x, axis, dims))
    if p.bias_term:
        y = y + rest[0].reshape(_bshape(x, axis, dims))
    return [y]


def bias(la, xs, w, ntop):
    p = la.bias_param
    x = xs[0]
    b = xs[1] if len(xs) == 2 else w[0]
    return [x + b.reshape(_bshape(x, p.axis % x.ndim, b.shape))]


def lrn(la, xs, w, ntop):
    p = la.lrn_param
    x = xs[0]
    size, alpha, beta = p.local_size, p.alpha, p.beta
    pre = (size - 1) // 2
    if p.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
        c = x.shape[1]
        sq = np.pad(x * x, ((0, 0), (pre, size - pre - 1), (0, 0), (0, 0)))
        acc = sum(sq[:, i:i + c] for i in range(size))
        return [x * (p.k + alpha / size * acc) ** -beta]
    h, wd = x.shape[2:]
    sq = np.pad(x * x, ((0, 0), (0, 0), (pre, pre), (pre, pre)))
    acc = sum(sq[:, :, i:i + h, j:j + wd] for i in range(size) for j in range(size))
    return [x * (1 + alpha * acc / (size * size)) ** -beta]


def eltwise(la, xs, w, ntop):
    p = la.eltwise_param
    if p.operation == pb.EltwiseParameter.PROD:
        return [np.prod(xs, axis=0)]
    if p.operation == pb.EltwiseParameter.MAX:
        return [np.max(xs, axis=0)]
    coeff = list(p.coeff) or [1.0] * len(xs)
    return [sum(c * x for c, x in zip(coeff, xs, strict=True))]


def slice_(la, xs, w, ntop):
    p = la.slice_param
    x = xs[0]
    axis = p.axis % x.ndim
    points = list(p.slice_point) or [x.shape[axis] // ntop * i for i in range(1, ntop)]
    return np.split(x, points, axis=axis)


def reshape(la, xs, w, ntop):
    p = la.reshape_param
    x = xs[0]
    spec = [x.shape[p.axis + i] if d == 0 else d for i, d in enumerate(p.shape.dim)]
    start = p.axis if p.axis >= 0 else x.ndim + p.axis + 1
    end = x.ndim if p.num_axes == -1 else start + p.num_axes
    return [x.reshape(*x.shape[:start], *spec, *x.shape[end:])]


def permute(la, xs, w, ntop):
    order = list(la.permute_param.order)
    order += [a for a in range(xs[0].ndim) if a not in order]
    return [xs[0].transpose(order)]


def softmax(la, xs, w, ntop):
    x = xs[0]
    axis = la.softmax_param.axis
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [e / e.sum(axis=axis, keepdims=True)]


def crop(la, xs, w, ntop):
    p = la.crop_param
    x, ref = xs
    axis = p.axis % x.ndim
    index = [slice(None)] * x.ndim
    for i, a in enumerate(range(axis, x.ndim)):
        off = p.offset[0] if len(p.offset) == 1 else (p.offset[i] if p.offset else 0)
        index[a] = slice(off, off + ref.shape[a])
    return [x[tuple(index)]]


def normalize(la, xs, w, ntop):
    p = la.norm_param
    x = xs[0]
    axes = tuple(range(1, x.ndim)) if p.across_spatial else (1,)
    norm = np.sqrt((x * x).sum(axis=axes, keepdims=True) + p.eps)
    s = w[0].reshape(-1)
    s = s[0] if p.channel_shared else s.reshape(_bshape(x, 1, s.shape))
    return [x / norm * s]


def upsample(la, xs, w, ntop):
    s = la.upsample_param.scale
    return [xs[0].repeat(s, axis=2).repeat(s, axis=3)]


def interp(la, xs, w, ntop):
    """interp.cpp caffe_cpu_interp2: h1r = rheight * h2, h1 = int(h1r), lambda = h1r - h1."""
    p = la.interp_param
    x = xs[0]
    h1, w1 = x.shape[2:]
    if p.HasField("height"):
        h2, w2 = p.height, p.width
    else:
        h2, w2 = h1, w1
        if p.HasField("shrink_factor"):
            h2, w2 = (h2 - 1) // p.shrink_factor + 1, (w2 - 1) // p.shrink_factor + 1
        if p.HasField("zoom_factor"):
            h2, w2 = h2 + (h2 - 1) * (p.zoom_factor - 1), w2 + (w2 - 1) * (p.zoom_factor - 1)
    rh = (h1 - 1) / (h2 - 1) if h2 > 1 else 0.0
    rw = (w1 - 1) / (w2 - 1) if w2 > 1 else 0.0
    y = np.zeros(x.shape[:2] + (h2, w2))
    for i in range(h2):
        r = rh * i
        a = int(r)
        dh = 1 if a < h1 - 1 else 0
        l1 = r - a
        for j in range(w2):
            c = rw * j
            b = int(c)
            dw = 1 if b < w1 - 1 else 0
            l2 = c - b
            y[:, :, i, j] = ((1 - l1) * ((1 - l2) * x[:, :, a, b] + l2 * x[:, :, a, b + dw])
                             + l1 * ((1 - l2) * x[:, :, a + dh, b] + l2 * x[:, :, a + dh, b + dw]))
    return [y]


def prelu(la, xs, w, ntop):
    x = xs[0]
    a = w[0].reshape(-1)
    a = a[0] if la.prelu_param.channel_shared else a.reshape(_bshape(x, 1, a.shape))
    return [np.where(x > 0, x, a * x)]


def power(la, xs, w, ntop):
    p = la.power_param
    return [(p.shift + p.scale * xs[0]) ** p.power]


def exp(la, xs, w, ntop):
    p = la.exp_param
    base = math.e if p.base == -1 else p.base
    return [base ** (p.shift + p.scale * xs[0])]


def log(la, xs, w, ntop):
    p = la.log_param
    y = np.log(p.shift + p.scale * xs[0])
    return [y if p.base == -1 else y / math.log(p.base)]


def flatten(la, xs, w, ntop):
    p = la.flatten_param
    x = xs[0]
    a, e = p.axis % x.ndim, p.end_axis % x.ndim
    return [x.reshape(*x.shape[:a], -1, *x.shape[e + 1:])]


def relu(la, xs, w, ntop):
    x = xs[0]
    return [np.where(x > 0, x, la.relu_param.negative_slope * x)]


def concat(la, xs, w, ntop):
    return [np.concatenate(xs, axis=la.concat_param.axis)]


def argmax(la, xs, w, ntop):
    """argmax_layer.cpp, Reshape and Forward_cpu: per position, the (value, index)
    pairs sorted by std::greater (equal values: the larger index first); the top holds
    the first top_k indices (and values with out_max_val) as floats."""
    p, x = la.argmax_param, xs[0]
    k, has_axis = int(p.top_k), p.HasField("axis")
    if has_axis:
        axis = p.axis % x.ndim
        dim = x.shape[axis]
        axis_dist = int(np.prod(x.shape[axis:])) // dim
        shape = list(x.shape)
        shape[axis] = k
    else:
        dim, axis_dist = int(np.prod(x.shape[1:])), 1
        shape = [1] * max(x.ndim, 3)
        shape[0], shape[2] = x.shape[0], k
        if p.out_max_val:
            shape[1] = 2
    flat, top = x.reshape(-1), np.zeros(int(np.prod(shape)))
    for i in range(flat.size // dim):
        pairs = [(flat[(i // axis_dist * dim + j) * axis_dist + i % axis_dist], j)
                 for j in range(dim)]
        pairs.sort(reverse=True)
        for j in range(k):
            if p.out_max_val and has_axis:
                top[(i // axis_dist * k + j) * axis_dist + i % axis_dist] = pairs[j][0]
            elif p.out_max_val:
                top[2 * i * k + j] = pairs[j][1]
                top[2 * i * k + k + j] = pairs[j][0]
            else:
                top[(i // axis_dist * k + j) * axis_dist + i % axis_dist] = pairs[j][1]
    return [top.reshape(shape)]


LAYERS = {
    "Convolution": conv, "Deconvolution": deconv, "Pooling": pooling,
    "InnerProduct": inner_product, "BatchNorm": batch_norm, "Scale": scale, "Bias": bias,
    "LRN": lrn, "Eltwise": eltwise, "Slice": slice_, "Reshape": reshape, "Permute": permute,
    "Softmax": softmax, "Crop": crop, "Normalize": normalize, "Upsample": upsample,
    "PReLU": prelu, "Interp": interp, "Power": power, "Exp": exp, "Log": log, "Flatten": flatten, "ReLU": relu,
    "Concat": concat, "ArgMax": argmax,
    "Split": lambda la, xs, w, n: [xs[0]] * n,
    "Silence": lambda la, xs, w, n: [],
    "Dropout": lambda la, xs, w, n: [xs[0]],
    "Sigmoid": lambda la, xs, w, n: [1 / (1 + np.exp(-xs[0]))],
    "TanH": lambda la, xs, w, n: [np.tanh(xs[0])],
    "AbsVal": lambda la, xs, w, n: [np.abs(xs[0])],
    "BNLL": lambda la, xs, w, n: [np.log1p(np.exp(xs[0]))],
    "ELU": lambda la, xs, w, n: [np.where(xs[0] > 0, xs[0],
                                          la.elu_param.alpha * np.expm1(xs[0]))],
    "Clip": lambda la, xs, w, n: [np.clip(xs[0], la.clip_param.min, la.clip_param.max)],
}
