"""The Ascend deployable model: `<name>_deploy.onnx`, the module after
qcc-lower-ascend written as AMCT's deploy model is, for ATC.

    export_deploy(module, "out/net")               # out/net_deploy.onnx
    export_deploy(module, "net_deploy.onnx", record="record.txt")

How it is written (the float parts as `qcc.exporters.onnx` writes them):

1. `ascend.quant` -> AscendQuant(x) {scale, offset, sqrt_mode, round_mode,
   dst_type = "INT8"} with the exact type in its doc_string (`qcc qtype: ...`, as
   the quantized initializers have it: ATC ignores doc strings, qcc reads them); `ascend.dequant` -> AscendDequant(x, deq_scale) {dtype (0:
   float32, 1: float16, GE's numbering), sqrt_mode, relu_flag} with the uint64
   deq_scale initializer `<layer>.dequant.param`; `ascend.anti_quant` ->
   AscendAntiQuant(x) {scale, offset, sqrt_mode, dtype}.
2. Weights (`ascend.weight_quant` / `quant.quantize` of a constant) are int8
   initializers `<weight>_quantized`, biases int32 ones.
3. Integer layers keep their float op type with integer tensors, as AMCT writes
   them: Conv / ConvTranspose (int8 x and W, int32 B, int32 output), dense as
   Gemm(transB = 1) for a 2-D input (else MatMul by the transposed weight + Add),
   matmul as MatMul. A quantized average pool is AveragePool on the int8 tensor
   (its mean in the input's own type), between the AscendQuant before it and the
   AscendAntiQuant after it (qcc-lower-ascend rule 6), as AMCT writes a quantized
   AvgPool.

The domain: AMCT writes AscendQuant, AscendDequant and AscendAntiQuant with no
domain (the default ONNX domain), and CANN's ONNX parser registers them as
`ai.onnx::<opset>::AscendQuant` etc., so `domain=""` (the default, `AMCT_DOMAIN`)
is what ATC reads. Such a model is not a valid standard ONNX model (onnx.checker
knows no AscendQuant), so the checker runs on a copy with those nodes moved to
the `ascend` domain. `domain="ascend"` writes that valid form (opset import
`ascend` version 1). qcc's frontend reads both.

The record (`record=`) is AMCT's record.txt for the same layers: scale_d /
offset_d of each integer layer's input, scale_w / offset_w of its weight (the
format of `qcc.quant.records.record_text`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from xdsl.dialects.builtin import Float16Type, ModuleOp
from xdsl.ir import Operation

from qcc.dialects import ascend, qnn
from qcc.dialects.base import get_bool, get_float, get_str
from qcc.exporters import onnx as base
from qcc.exporters import onnx_int
from qcc.exporters.onnx import DEFAULT_OPSET, OpWriter, Unsupported
from qcc.exporters.onnx_int import IntExporter, export, folded_array, qtype_of
from qcc.exporters.onnx_quant import QTYPE_DOC

AMCT_DOMAIN = ""
"""The domain AMCT's deploy model gives the Ascend ops (none: the default one)."""

ASCEND_DOMAIN = "ascend"
"""The custom domain of the checker-valid form."""

ASCEND_OP_TYPES = ("AscendQuant", "AscendDequant", "AscendAntiQuant")

GE_DTYPE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
"""AscendDequant / AscendAntiQuant `dtype`: GE's DataType numbers."""

DEPLOY_EXPORTS: dict = {}


def _domain(w: OpWriter) -> str:
    return w.exporter.ascend_domain


def _dtype_attr(op: Operation) -> int:
    return GE_DTYPE[np.dtype(np.float16 if isinstance(op.properties["dtype"], Float16Type)
                             else np.float32)]


@export(DEPLOY_EXPORTS, ascend.QuantOp)
def _quant(w: OpWriter) -> None:
    op = w.op
    w.node("AscendQuant", [w.input(0)], [w.out()], domain=_domain(w),
           doc_string=QTYPE_DOC + str(op.properties["qtype"]),
           scale=get_float(op.properties["scale"]), offset=get_float(op.properties["offset"]),
           sqrt_mode=int(get_bool(op.properties["sqrt_mode"])),
           round_mode=get_str(op.properties["round_mode"], "Round"), dst_type="INT8")


@export(DEPLOY_EXPORTS, ascend.DequantOp)
def _dequant(w: OpWriter) -> None:
    op = w.op
    w.node("AscendDequant", [w.input(0), w.input(1)], [w.out()], domain=_domain(w),
           dtype=_dtype_attr(op), sqrt_mode=int(get_bool(op.properties["sqrt_mode"])),
           relu_flag=int(get_bool(op.properties["relu_flag"])))


@export(DEPLOY_EXPORTS, ascend.AntiQuantOp)
def _anti_quant(w: OpWriter) -> None:
    op = w.op
    w.node("AscendAntiQuant", [w.input(0)], [w.out()], domain=_domain(w),
           scale=get_float(op.properties["scale"]), offset=get_float(op.properties["offset"]),
           sqrt_mode=int(get_bool(op.properties["sqrt_mode"])), dtype=_dtype_attr(op))


@export(DEPLOY_EXPORTS, ascend.WeightQuantOp)
def _weight_quant(w: OpWriter) -> None:
    raise Unsupported("the weight must be a constant (it is written as an int8 initializer)")


def _float_layer(w: OpWriter) -> None:
    return base._exports()[type(w.op)](w)


@export(DEPLOY_EXPORTS, qnn.ConvOp, qnn.ConvTransposeOp, qnn.MatmulOp)
def _layer(w: OpWriter) -> None:
    """The float op on integer tensors (`onnx_ops` writes it from the tensor names)."""
    op = w.op
    if qtype_of(op.operands[0]) is not None and len(op.operands) > 1 and \
            not isinstance(op, qnn.MatmulOp) and folded_array(op.operands[1]) is None:
        raise Unsupported("the weight must be a quantized constant")
    _float_layer(w)


@export(DEPLOY_EXPORTS, qnn.DenseOp)
def _dense(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.DenseOp)
    if qtype_of(op.input) is None:
        return _float_layer(w)
    weight = folded_array(op.weight)
    if weight is None:
        raise Unsupported("the weight must be a quantized constant")
    x, rank = w.input(0), len(w.shape(op.input))
    bias = w.tensor(op.bias)
    if rank == 2:
        w.node("Gemm", [x, w.tensor(op.weight), *([bias] if bias else [])], [w.out()],
               transB=1)
        return
    wt = w.exporter.derived(op.weight.owner.operands[0], "int8T",  # type: ignore[union-attr]
                            lambda: np.ascontiguousarray(weight.T), suffix="_quantized_t")
    if not bias:
        w.node("MatMul", [x, wt], [w.out()])
        return
    y = w.tmp("matmul")
    w.node("MatMul", [x, wt], [y])
    w.node("Add", [y, bias], [w.out()], suffix="bias")


# -------------------------------------------------------------------- record


def _fmt(v: float) -> str:
    return repr(float(v))


def record_fields(module: ModuleOp) -> dict[str, dict[str, list[str]]]:
    """Per integer layer (by name): scale_d, offset_d (scale_d1, offset_d1 for a
    matmul's second input), scale_w, offset_w, read from the quantized types."""
    layers: dict[str, dict[str, list[str]]] = {}
    for op in module.walk():
        if not isinstance(op, onnx_int.LAYERS) or qtype_of(op.operands[0]) is None:
            continue
        name = op.attributes.get("name")
        key = name.data if name is not None else op.name  # type: ignore[attr-defined]
        entry: dict[str, list[str]] = {}
        x = qtype_of(op.operands[0])
        assert x is not None
        entry["scale_d"], entry["offset_d"] = [_fmt(x.scale)], [str(x.zero_point)]
        second = qtype_of(op.operands[1])
        if isinstance(op, qnn.MatmulOp) and second is not None:
            entry["scale_d1"], entry["offset_d1"] = [_fmt(second.scale)], [str(second.zero_point)]
        elif second is not None:
            entry["scale_w"] = [_fmt(s) for s in second.scales]
            entry["offset_w"] = [str(z) for z in second.zero_points]
        layers[key] = entry
    return layers


def record_text(module: ModuleOp) -> str:
    """AMCT's record.txt of the integer layers of `module` (same layout as
    `qcc.quant.records.record_text` of the calibrated module)."""
    lines = []
    for layer, fields in record_fields(module).items():
        lines += ["record {", f"  key: {json.dumps(layer)}", "  value {"]
        for key in ("scale_d", "offset_d", "scale_d1", "offset_d1", "scale_w", "offset_w"):
            lines += [f"    {key}: {v}" for v in fields.get(key, [])]
        lines += ["  }", "}"]
    return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------- entry


class DeployExporter(IntExporter):
    def __init__(self, module: ModuleOp, opset: int, domain: str) -> None:
        super().__init__(module, opset, DEPLOY_EXPORTS)
        self.ascend_domain = domain
        if domain:
            self.domains[domain] = 1


def check_deploy(model: onnx.ModelProto) -> None:
    """onnx.checker on a copy whose Ascend ops are in the `ascend` domain."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    moved = False
    for node in copy.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in ASCEND_OP_TYPES:
            node.domain = ASCEND_DOMAIN
            moved = True
    if moved and all(o.domain != ASCEND_DOMAIN for o in copy.opset_import):
        copy.opset_import.append(onnx.helper.make_opsetid(ASCEND_DOMAIN, 1))
    onnx.checker.check_model(copy)


def deploy_path(path: str | os.PathLike) -> Path:
    """`path` itself when it names an .onnx file, else `<path>_deploy.onnx`."""
    p = Path(path)
    return p if p.suffix.lower() == ".onnx" else p.with_name(f"{p.name}_deploy.onnx")


def export_deploy(module: ModuleOp, path: str | os.PathLike | None = None, *,
                  opset: int = DEFAULT_OPSET, domain: str = AMCT_DOMAIN,
                  record: str | os.PathLike | None = None,
                  model_name: str | None = None) -> onnx.ModelProto:
    """Write the lowered module (after qcc-lower-ascend) as the Ascend deploy model
    (see the module doc); with `path` (an .onnx file, or a prefix for
    `<prefix>_deploy.onnx`) save it atomically, with `record` also the record."""
    if not base.MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is not supported: qcc writes opsets "
                         f"{base.MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    out = deploy_path(path) if path is not None else None
    name = model_name or (out.stem if out is not None else None)
    model = onnx_int.write(DeployExporter(module, opset, domain), out, name, check_deploy)
    if record is not None:
        from qcc.quant.records import write_atomic

        write_atomic(record, record_text(module))
    return model


__all__ = ["export_deploy", "record_text", "record_fields", "AMCT_DOMAIN", "ASCEND_DOMAIN",
           "ASCEND_OP_TYPES", "deploy_path", "check_deploy"]

