"""Caffe exporters: a qnn module as `.prototxt` + `.caffemodel`.

    export_caffe(module, "net_fake_quant.prototxt", "net_fake_quant.caffemodel")
    export_caffe(lowered, "net_deploy.prototxt", "net_deploy.caffemodel")

1. The accuracy-simulation model is the calibrated fake-quant graph (BN + Scale
   already fused): a `quant.fake_quant` of a weight is folded into the weight blob
   (the values the runtime computes with); one of an activation becomes qcc's
   `FakeQuant` layer (`fake_quant_param`: scales, zero points, axis, storage range),
   which the Caffe frontend imports back as `quant.fake_quant`.
2. The deployable model is the graph after `qcc-realize-int8,qcc-lower-ascend`:
   `ascend.quant` becomes a `Quant` layer (scale = 1 / scale_d, offset = the int8
   zero point), the layer keeps int8 weights (`int8_data`) and an int32 bias
   (`int32_data`), `ascend.dequant` becomes a `DeQuant` layer whose blob holds the
   packed uint64 deq_scale (`uint64_data`), `ascend.anti_quant` an `AntiQuant`
   layer; the f16 -> f32 casts around them are dropped (Caffe blobs are float).
3. Every other op maps to the Caffe layer it was imported from (Convolution,
   Deconvolution, InnerProduct, Pooling, BatchNorm, Scale, Eltwise, ...). Ops with
   no Caffe layer are listed all at once in an `ExportError`; nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import ascend, qnn, quant
from qcc.dialects.base import get_float, get_int, get_ints
from qcc.exporters.onnx import ExportError
from qcc.exporters.onnx_base import _Names
from qcc.fileio import write_file
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.caffe.node import caffe_pool_size

__all__ = ["export_caffe", "write_quantized", "ExportError"]

Writer = Callable[["_Exporter", Operation], None]
WRITERS: dict[str, Writer] = {}
ALIASES = ("qnn.identity", "qnn.dropout", "qnn.cast")
"""Ops whose result is their input in the Caffe model (cast: f16 -> f32 after DeQuant)."""


INTEGER_OK = ("qnn.conv", "qnn.conv_transpose", "qnn.dense", "qnn.avg_pool",
              "quant.requantize", "ascend.quant",
              "ascend.dequant", "ascend.anti_quant", "ascend.weight_quant", "quant.quantize",
              "qnn.constant", "func.return")
"""Ops that may touch quantized integer types in a Caffe model (the deployable one)."""


def _on_integers(op: Operation) -> bool:
    return any(quant.quantized_element(v.type) is not None
               for v in (*op.operands, *op.results))


def writer(*names: str) -> Callable[[Writer], Writer]:
    def register(fn: Writer) -> Writer:
        for n in names:
            WRITERS[n] = fn
        return fn

    return register


def export_caffe(module: ModuleOp, prototxt: str | os.PathLike,
                 caffemodel: str | os.PathLike) -> None:
    """Write `module` as a Caffe net (text) and its weights (binary), atomically."""
    net, weights = _Exporter(module).run(Path(prototxt).stem)
    _atomic(Path(prototxt), text_format.MessageToString(net).encode())
    _atomic(Path(caffemodel), weights.SerializeToString())


def write_quantized(outdir: Path, name: str, fake_quant: ModuleOp, int8: ModuleOp,
                    report: dict) -> None:
    """`qcc quantize` on a Caffe model: `<name>_fake_quant.prototxt/.caffemodel` and
    `<name>_deploy.prototxt/.caffemodel` beside the ONNX files. A model the deploy
    form cannot express gets no deploy files; the report says why."""
    import sys

    from qcc import passes

    lowered = int8.clone()
    passes.run(lowered, "qcc-lower-ascend")
    for kind, graph in (("fake_quant", fake_quant), ("deploy", lowered)):
        try:
            export_caffe(graph, outdir / f"{name}_{kind}.prototxt",
                         outdir / f"{name}_{kind}.caffemodel")
        except ExportError as e:
            report[f"caffe_{kind}"] = f"not written: {e}"
            print(f"qcc quantize: warning: {name}_{kind}.prototxt not written: {e}",
                  file=sys.stderr)


def _atomic(path: Path, data: bytes) -> None:
    write_file(path, data)


def _shape(v: SSAValue) -> tuple[int, ...]:
    assert isinstance(v.type, TensorType)
    return tuple(v.type.get_shape())


def _blob(array: np.ndarray) -> pb.BlobProto:
    b = pb.BlobProto()
    b.shape.dim.extend(int(d) for d in array.shape)
    a = np.ascontiguousarray(array)
    if a.dtype == np.int8:
        b.int8_data = a.tobytes()
    elif a.dtype == np.int32:
        b.int32_data.extend(int(v) for v in a.ravel())
    elif a.dtype == np.uint64:
        b.uint64_data.extend(int(v) for v in a.ravel())
    else:
        b.data.extend(np.asarray(a, np.float32).ravel().tolist())
    return b


class _Exporter:
    def __init__(self, module: ModuleOp) -> None:
        self.fn = ir.main_func(module)
        self.names: dict[SSAValue, str] = {}
        self.taken = _Names()
        self.net = pb.NetParameter()
        self.weights = pb.NetParameter()
        inputs, outputs = ir.io_names(self.fn)
        self.output_names: dict[SSAValue, str] = {}
        ret = self.fn.body.block.last_op
        assert isinstance(ret, func.ReturnOp)
        for v, name in zip(ret.operands, outputs, strict=True):
            self.output_names.setdefault(v, name)
        for arg, name in zip(self.fn.body.block.args, inputs, strict=True):
            self.names[arg] = name
            self.taken.used.add(name)
            self.net.input.append(name)
            self.net.input_shape.add().dim.extend(_shape(arg))

    def run(self, name: str) -> tuple[pb.NetParameter, pb.NetParameter]:
        self.net.name = self.weights.name = name
        ops = list(self.fn.body.block.ops)
        missing: dict[str, list[str]] = {}
        for op in ops:
            if op.name not in WRITERS and op.name not in ALIASES and not _skipped(op):
                missing.setdefault(op.name, []).append(_label(op))
            elif op.name not in INTEGER_OK and _on_integers(op):
                missing.setdefault(f"{op.name} on quantized integers", []).append(_label(op))
        if missing:
            lines = [f"  {k}: {', '.join(v)}" for k, v in sorted(missing.items())]
            raise ExportError(f"{len(missing)} kind(s) of op have no Caffe layer "
                              "(op: ops):\n" + "\n".join(lines))
        for op in ops:
            if op.name in ALIASES:
                self.names[op.results[0]] = self.name_of(op.operands[0])
            elif not _skipped(op):
                WRITERS[op.name](self, op)
        return self.net, self.weights

    # -- helpers used by the writers

    def name_of(self, v: SSAValue) -> str:
        if v not in self.names:
            raise ExportError(f"{_label(v.owner)} is used as a layer input; Caffe layers "
                              "take constants only as their own blobs")
        return self.names[v]

    def layer(self, op: Operation, kind: str, bottoms: list[SSAValue],
              blobs: list[np.ndarray] = ()) -> pb.LayerParameter:  # type: ignore[assignment]
        name = self._unique(_label(op))
        layer = self.net.layer.add(name=name, type=kind)
        layer.bottom.extend(self.name_of(b) for b in bottoms)
        for r in op.results:
            top = self.output_names.get(r) or (name if len(op.results) == 1
                                               else f"{name}:{r.index}")
            top = top if top == name or top not in self.taken.used else self._unique(top)
            self.taken.used.add(top)
            self.names[r] = top
            layer.top.append(top)
        if blobs:
            trained = self.weights.layer.add(name=name, type=kind)
            trained.blobs.extend(_blob(b) for b in blobs)
        return layer

    def _unique(self, base: str) -> str:
        return self.taken.unique(base)


def _label(op: Operation | object) -> str:
    """The layer name: the op's `name`, else its quantizer `id` ("conv.input")."""
    if isinstance(op, Operation):
        for key in ("name", "id"):
            a = op.attributes.get(key)
            if isinstance(a, StringAttr):
                return a.data
        return op.name
    return "a block argument"


def _skipped(op: Operation) -> bool:
    """Constants and the quantizers of constants live in the blobs of their user."""
    if isinstance(op, qnn.ConstantOp) or isinstance(op, func.ReturnOp):
        return True
    if isinstance(op, quant.FakeQuantOp | ascend.WeightQuantOp | quant.QuantizeOp):
        return _constant(op.operands[0]) is not None
    return False


def _constant(v: SSAValue | None) -> np.ndarray | None:
    """The value of a constant operand, through quantizers of constants: the
    fake-quantized floats, or the stored integers of a weight_quant / quantize."""
    if v is None:
        return None
    owner = v.owner
    if isinstance(owner, qnn.ConstantOp):
        return np.asarray(ir.array_of(owner))
    if isinstance(owner, quant.FakeQuantOp) and not owner.learned:
        inner = _constant(owner.input)
        return None if inner is None else owner.qtype.fake_quant(inner)
    if isinstance(owner, ascend.WeightQuantOp | quant.QuantizeOp):
        inner = _constant(owner.operands[0])
        return None if inner is None else owner.qtype.quantize(inner)
    return None


def _need(op: Operation, i: int) -> np.ndarray:
    value = _constant(op.operands[i])
    if value is None:
        raise ExportError(f"{_label(op)}: operand {i} must be a constant to be a Caffe blob")
    return value


def _symmetric(op: Operation, pads: tuple[int, ...]) -> tuple[int, ...]:
    d = len(pads) // 2
    if pads[:d] != pads[d:]:
        raise ExportError(f"{_label(op)}: pads {list(pads)} differ at begin and end; Caffe "
                          "pads both sides equally")
    return pads[:d]


# ---------------------------------------------------------------- layers


@writer("qnn.conv", "qnn.conv_transpose")
def _conv(e: _Exporter, op: Operation) -> None:
    transpose = isinstance(op, qnn.ConvTransposeOp)
    if transpose and any(get_ints(op.properties["output_padding"])):
        raise ExportError(f"{_label(op)}: output_padding has no Caffe Deconvolution form")
    w = _need(op, 1)
    bias = op.operands[2] if len(op.operands) > 2 else None
    blobs = [w] + ([_need(op, 2)] if bias is not None else [])
    layer = e.layer(op, "Deconvolution" if transpose else "Convolution", [op.operands[0]], blobs)
    p = layer.convolution_param
    p.num_output = _shape(op.results[0])[1]
    p.bias_term = bias is not None
    p.kernel_size.extend(w.shape[2:])
    p.pad.extend(_symmetric(op, get_ints(op.properties["pads"])))
    p.stride.extend(get_ints(op.properties["strides"]))
    dil = get_ints(op.properties["dilations"])
    if any(d != 1 for d in dil):
        p.dilation.extend(dil)
    p.group = get_int(op.properties["groups"])


@writer("qnn.dense")
def _dense(e: _Exporter, op: Operation) -> None:
    bias = op.operands[2] if len(op.operands) > 2 else None
    w = _need(op, 1)
    layer = e.layer(op, "InnerProduct", [op.operands[0]],
                    [w] + ([_need(op, 2)] if bias is not None else []))
    p = layer.inner_product_param
    p.num_output, p.bias_term = w.shape[0], bias is not None
    rank = len(_shape(op.operands[0]))
    if rank != 2:
        p.axis = rank - 1


@writer("qnn.max_pool", "qnn.avg_pool")
def _pool(e: _Exporter, op: Operation) -> None:
    x, y = _shape(op.operands[0]), _shape(op.results[0])
    kernel, strides = get_ints(op.properties["kernel"]), get_ints(op.properties["strides"])
    pads = _symmetric(op, get_ints(op.properties["pads"]))
    ceil = get_int(op.properties["ceil_mode"]) != 0
    ave = isinstance(op, qnn.AvgPoolOp)
    if len(kernel) != 2 or any(d != 1 for d in get_ints(op.properties.get("dilations"),
                                                          (1, 1))):
        raise ExportError(f"{_label(op)}: Caffe pools 2-d windows without dilation")
    if ave and any(pads) and not get_int(op.properties["count_include_pad"]):
        raise ExportError(f"{_label(op)}: Caffe's AVE pooling counts the padding "
                          "(count_include_pad = false has no Caffe form)")
    caffe = [caffe_pool_size(x[2 + i], kernel[i], strides[i], pads[i], ceil) for i in range(2)]
    if tuple(caffe) != y[2:]:
        raise ExportError(f"{_label(op)}: Caffe's output size {caffe} differs from {list(y[2:])}")
    p = e.layer(op, "Pooling", [op.operands[0]]).pooling_param
    p.pool = pb.PoolingParameter.AVE if ave else pb.PoolingParameter.MAX
    p.kernel_h, p.kernel_w = kernel
    p.stride_h, p.stride_w = strides
    p.pad_h, p.pad_w = pads
    if not ceil:
        p.round_mode = pb.PoolingParameter.FLOOR


@writer("qnn.global_avg_pool")
def _global_pool(e: _Exporter, op: Operation) -> None:
    p = e.layer(op, "Pooling", [op.operands[0]]).pooling_param
    p.pool, p.global_pooling = pb.PoolingParameter.AVE, True


@writer("qnn.batch_norm")
def _batch_norm(e: _Exporter, op: Operation) -> None:
    scale, bias, mean, var = (_need(op, i) for i in range(1, 5))
    affine = not (np.all(scale == 1) and np.all(bias == 0))
    name = _label(op)
    layer = e.layer(op, "BatchNorm", [op.operands[0]],
                    [mean, var, np.ones(1, np.float32)])
    layer.batch_norm_param.use_global_stats = True
    layer.batch_norm_param.eps = get_float(op.properties["epsilon"])
    if not affine:
        return
    top = layer.top[0]  # the BN's value is the Scale's top: BN writes an inner blob
    layer.top[0] = e._unique(f"{name}/normalized")
    scale_layer = e.net.layer.add(name=e._unique(f"{name}/scale"), type="Scale",
                                  bottom=[layer.top[0]], top=[top])
    scale_layer.scale_param.bias_term = True
    trained = e.weights.layer.add(name=scale_layer.name, type="Scale")
    trained.blobs.extend([_blob(scale), _blob(bias)])


@writer("qnn.scale")
def _scale(e: _Exporter, op: Operation) -> None:
    bias = op.operands[2] if len(op.operands) > 2 else None
    layer = e.layer(op, "Scale", [op.operands[0]],
                    [_need(op, 1)] + ([_need(op, 2)] if bias is not None else []))
    layer.scale_param.axis = get_int(op.properties["axis"])
    layer.scale_param.bias_term = bias is not None


_UNARY = {"qnn.relu": "ReLU", "qnn.sigmoid": "Sigmoid", "qnn.tanh": "TanH",
          "qnn.abs": "AbsVal", "qnn.exp": "Exp", "qnn.log": "Log"}


@writer(*_UNARY)
def _unary(e: _Exporter, op: Operation) -> None:
    e.layer(op, _UNARY[op.name], [op.operands[0]])


@writer("qnn.leaky_relu")
def _leaky(e: _Exporter, op: Operation) -> None:
    layer = e.layer(op, "ReLU", [op.operands[0]])
    layer.relu_param.negative_slope = get_float(op.properties["alpha"])


@writer("qnn.clip")
def _clip(e: _Exporter, op: Operation) -> None:
    p = e.layer(op, "Clip", [op.operands[0]]).clip_param
    p.min, p.max = get_float(op.properties["min"]), get_float(op.properties["max"])


@writer("qnn.softmax")
def _softmax(e: _Exporter, op: Operation) -> None:
    axis = get_int(op.properties["axis"]) % len(_shape(op.operands[0]))
    e.layer(op, "Softmax", [op.operands[0]]).softmax_param.axis = axis


@writer("qnn.lrn")
def _lrn(e: _Exporter, op: Operation) -> None:
    p = e.layer(op, "LRN", [op.operands[0]]).lrn_param
    p.local_size = get_int(op.properties["size"])
    p.alpha, p.beta = get_float(op.properties["alpha"]), get_float(op.properties["beta"])
    p.k = get_float(op.properties["bias"])


@writer("qnn.prelu")
def _prelu(e: _Exporter, op: Operation) -> None:
    slope = _need(op, 1)
    layer = e.layer(op, "PReLU", [op.operands[0]], [slope.reshape(-1)])
    layer.prelu_param.channel_shared = slope.size == 1


@writer("qnn.add", "qnn.mul", "qnn.max", "qnn.sub", "qnn.pow")
def _binary(e: _Exporter, op: Operation) -> None:
    a, b = op.operands
    ca, cb = _constant(a), _constant(b)
    if ca is None and cb is None:
        if _shape(a) != _shape(b) or op.name == "qnn.pow":
            raise ExportError(f"{_label(op)}: Eltwise needs operands of one shape, got "
                              f"{list(_shape(a))} and {list(_shape(b))}")
        p = e.layer(op, "Eltwise", [a, b]).eltwise_param
        p.operation = {"qnn.add": p.SUM, "qnn.sub": p.SUM, "qnn.mul": p.PROD,
                       "qnn.max": p.MAX}[op.name]
        if op.name == "qnn.sub":
            p.coeff.extend([1.0, -1.0])
        return
    x, c = (b, ca) if ca is not None else (a, cb)
    assert c is not None
    if c.size == 1 and op.name in ("qnn.add", "qnn.mul", "qnn.pow") or (
            op.name == "qnn.sub" and cb is not None and c.size == 1):
        v = float(c.reshape(-1)[0])
        p = e.layer(op, "Power", [x]).power_param
        if op.name == "qnn.add":
            p.shift = v
        elif op.name == "qnn.sub":
            p.shift = -v
        elif op.name == "qnn.mul":
            p.scale = v
        elif cb is not None:
            p.power = v
        else:
            raise ExportError(f"{_label(op)}: a constant base of pow has no Caffe layer")
        return
    shape = _shape(x)
    full = (1,) * (len(shape) - c.ndim) + c.shape
    if (op.name in ("qnn.add", "qnn.mul") and len(shape) >= 2 and len(full) == len(shape)
            and full[1] == shape[1] and all(d == 1 for i, d in enumerate(full) if i != 1)):
        kind = "Bias" if op.name == "qnn.add" else "Scale"
        layer = e.layer(op, kind, [x], [c.reshape(-1)])
        if kind == "Scale":
            layer.scale_param.axis = 1
        return
    raise ExportError(f"{_label(op)}: {op.name} with a constant of shape {list(c.shape)} has "
                      "no Caffe layer")


@writer("qnn.reshape")
def _reshape(e: _Exporter, op: Operation) -> None:
    shape = get_ints(op.properties["shape"])
    e.layer(op, "Reshape", [op.operands[0]]).reshape_param.shape.dim.extend(shape)


@writer("qnn.argmax")
def _argmax(e: _Exporter, op: Operation) -> None:
    """Caffe's ArgMax keeps the axis and picks the last of equal maxima."""
    if not get_int(op.properties["keepdims"]) or not get_int(op.properties["select_last_index"]):
        raise ExportError(f"{_label(op)}: a Caffe ArgMax keeps the axis and picks the last "
                          "of equal maxima; this qnn.argmax has keepdims or "
                          "select_last_index false, which has no Caffe layer")
    axis = get_int(op.properties["axis"]) % len(_shape(op.operands[0]))
    e.layer(op, "ArgMax", [op.operands[0]]).argmax_param.axis = axis


@writer("qnn.transpose")
def _transpose(e: _Exporter, op: Operation) -> None:
    perm = get_ints(op.properties["perm"])
    e.layer(op, "Permute", [op.operands[0]]).permute_param.order.extend(perm)


@writer("qnn.concat")
def _concat(e: _Exporter, op: Operation) -> None:
    axis = get_int(op.properties["axis"]) % len(_shape(op.results[0]))
    e.layer(op, "Concat", list(op.operands)).concat_param.axis = axis


@writer("qnn.split")
def _split(e: _Exporter, op: Operation) -> None:
    sizes = get_ints(op.properties["sizes"])
    axis = get_int(op.properties["axis"]) % len(_shape(op.operands[0]))
    p = e.layer(op, "Slice", [op.operands[0]]).slice_param
    p.axis = axis
    p.slice_point.extend(int(v) for v in np.cumsum(sizes)[:-1])


@writer("qnn.resize")
def _resize(e: _Exporter, op: Operation) -> None:
    x, y = _shape(op.operands[0]), _shape(op.results[0])
    props = {k: op.properties[k].data for k in  # type: ignore[attr-defined]
             ("mode", "coordinate_transformation_mode", "nearest_mode")}
    if (len(x) == 4 and y[:2] == x[:2] and op.properties.get("scales") is None and props ==
            {"mode": "linear", "coordinate_transformation_mode": "align_corners",
             "nearest_mode": props["nearest_mode"]}):
        p = e.layer(op, "Interp", [op.operands[0]]).interp_param
        p.height, p.width = y[2], y[3]
        return
    s = y[2] // x[2] if len(x) == 4 and x[2] else 0
    if (props != {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                  "nearest_mode": "floor"} or s < 1 or y != (*x[:2], x[2] * s, x[3] * s)):
        raise ExportError(f"{_label(op)}: only nearest upsampling by one integer factor "
                          "(Upsample) and bilinear with aligned corners (Interp) have Caffe "
                          "layers")
    e.layer(op, "Upsample", [op.operands[0]]).upsample_param.scale = s


# ---------------------------------------------------------------- quantization


@writer("quant.fake_quant")
def _fake_quant(e: _Exporter, op: Operation) -> None:
    assert isinstance(op, quant.FakeQuantOp)
    if op.learned:
        raise ExportError(f"{_label(op)}: a fake_quant with learned ranges has no Caffe form; "
                          "convert the trained model first")
    q = op.qtype
    p = e.layer(op, "FakeQuant", [op.input]).fake_quant_param
    p.scale.extend(q.scales)
    p.zero_point.extend(q.zero_points)
    p.axis = -1 if q.axis is None else q.axis
    p.storage_min, p.storage_max = q.storage_min, q.storage_max
    p.bits, p.signed = q.bits, q.signed


@writer("ascend.quant")
def _ascend_quant(e: _Exporter, op: Operation) -> None:
    assert isinstance(op, ascend.QuantOp)
    p = e.layer(op, "Quant", [op.input]).quant_param
    p.scale = op.scale_value
    p.offset = np.int8(op.offset_value).tobytes()
    p.sqrt_mode = op.is_sqrt_mode
    p.round_mode = op.round_mode.data


@writer("ascend.anti_quant")
def _ascend_anti_quant(e: _Exporter, op: Operation) -> None:
    q = quant.quantized_element(op.operands[0].type)
    assert q is not None
    _anti_quant_param(e.layer(op, "AntiQuant", [op.operands[0]]).quant_param, q)


def _anti_quant_param(p: pb.QuantParameter, q: quant.UniformQuantizedType) -> None:
    """scale = scale_d (its square root in sqrt_mode), offset = the zero point byte."""
    scale, _, sqrt_mode = ascend.anti_quant_attributes(q)
    p.scale, p.sqrt_mode = float(scale), bool(sqrt_mode)
    p.offset = np.int8(q.zero_point).tobytes()


@writer("quant.requantize")
def _requantize(e: _Exporter, op: Operation) -> None:
    """quantize(dequantize(q)): AntiQuant to float, then Quant (per tensor, int8)."""
    assert isinstance(op, quant.RequantizeOp)
    src, dst = quant.quantized_element(op.input.type), op.qtype
    if src is None or src.is_per_axis or dst.is_per_axis or src.bits != 8 or dst.bits != 8:
        raise ExportError(f"{_label(op)}: only a per-tensor int8 requantize has a Caffe form")
    producer = _label(op.input.owner) if isinstance(op.input.owner, Operation) else "input"
    name = e._unique(f"{producer}.requant")
    mid = e._unique(f"{name}/float")
    anti = e.net.layer.add(name=f"{name}.anti_quant", type="AntiQuant",
                           bottom=[e.name_of(op.input)], top=[mid])
    _anti_quant_param(anti.quant_param, src)
    top = e.output_names.get(op.results[0]) or name
    e.taken.used.add(top)
    e.names[op.results[0]] = top
    q = e.net.layer.add(name=name, type="Quant", bottom=[mid], top=[top])
    scale, offset, sqrt_mode = ascend.quant_attributes(dst)
    q.quant_param.scale = float(scale)
    q.quant_param.offset = np.int8(offset).tobytes()
    q.quant_param.sqrt_mode = bool(sqrt_mode)


@writer("ascend.dequant")
def _ascend_dequant(e: _Exporter, op: Operation) -> None:
    assert isinstance(op, ascend.DequantOp)
    deq = _need(op, 1)
    p = e.layer(op, "DeQuant", [op.input], [deq.reshape(-1)]).dequant_param
    p.relu_flag = op.is_relu
    p.sqrt_mode = get_int(op.sqrt_mode) != 0
