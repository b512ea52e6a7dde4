"""Files that describe the quantization of a calibrated module, read from its IR
(every `quant.fake_quant` carries `id`, `algorithm`, `min`, `max`):

- `record.txt`: AMCT-style text protobuf, one `record` per layer with `scale_d`,
  `offset_d` (activation), repeated `scale_w`, `offset_w` (weight, per channel) and,
  for layers `qcc-balance` rescaled, repeated `tensor_balance_factor`.
- `encodings.json`: AIMET layout, `activation_encodings` and `param_encodings`,
  each entry `bitwidth, dtype, is_symmetric, min, max, offset, scale`; one entry
  per channel for per-channel tensors. AIMET's `offset` is the negated zero point
  (`x = (q + offset) * scale`), so `min = offset * scale`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, StringAttr

from qcc.dialects import quant
from qcc.fileio import write_file


@dataclass
class Encoding:
    id: str
    layer: str
    kind: str  # "input" / "input0" / "input1" / "weight"
    algorithm: str
    qtype: quant.UniformQuantizedType
    min: float
    max: float
    skipped: int
    symmetric: bool


def encodings_of(module: ModuleOp) -> list[Encoding]:
    """One entry per calibrated `quant.fake_quant`, in program order."""
    out = []
    for op in module.walk():
        if not isinstance(op, quant.FakeQuantOp):
            continue
        ident = op.attributes.get("id")
        if not isinstance(ident, StringAttr):
            continue
        layer, _, kind = ident.data.rpartition(".")
        out.append(Encoding(ident.data, layer, kind, _str(op, "algorithm"),
                            op.qtype, _float(op, "min"), _float(op, "max"),
                            _int(op, "skipped"), bool(_int(op, "symmetric"))))
    return out


def _str(op, key: str) -> str:
    a = op.attributes.get(key)
    return a.data if isinstance(a, StringAttr) else ""


def _float(op, key: str) -> float:
    a = op.attributes.get(key)
    return float(a.value.data) if isinstance(a, FloatAttr) else float("nan")


def _int(op, key: str) -> int:
    a = op.attributes.get(key)
    return int(a.value.data) if isinstance(a, IntegerAttr) else 0


def _fmt(v: float) -> str:
    return repr(float(v))


def record_text(module: ModuleOp) -> str:
    """The AMCT record: per layer scale_d/offset_d and repeated scale_w/offset_w."""
    layers: dict[str, dict[str, list[str]]] = {}
    for e in encodings_of(module):
        entry = layers.setdefault(e.layer, {})
        q = e.qtype
        if e.kind == "weight":
            entry["scale_w"] = [_fmt(s) for s in q.scales]
            entry["offset_w"] = [str(z) for z in q.zero_points]
        elif e.kind in ("input", "input0"):
            entry["scale_d"] = [_fmt(q.scale)]
            entry["offset_d"] = [str(q.zero_point)]
        else:  # the second activation of a matmul
            entry["scale_d1"] = [_fmt(q.scale)]
            entry["offset_d1"] = [str(q.zero_point)]
    for op in module.walk():
        factor = op.attributes.get("qcc.balance_factor")
        name = op.attributes.get("name")
        if factor is not None and isinstance(name, StringAttr) and name.data in layers:
            layers[name.data]["tensor_balance_factor"] = [
                _fmt(v) for v in factor.get_values()]  # type: ignore[attr-defined]
    lines = []
    for layer, fields in layers.items():
        lines.append("record {")
        lines.append(f"  key: {json.dumps(layer)}")
        lines.append("  value {")
        for key in ("scale_d", "offset_d", "scale_d1", "offset_d1", "scale_w", "offset_w",
                    "tensor_balance_factor"):
            for v in fields.get(key, []):
                lines.append(f"    {key}: {v}")
        lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + ("\n" if lines else "")


def _aimet_entries(e: Encoding) -> list[dict]:
    """AIMET's grid is unsigned: x = (q_u + offset) * scale with q_u in [0, 2^b - 1],
    so offset = storage_min - zero_point (for int8 storage, -128 - zero_point)."""
    q = e.qtype
    out = []
    for scale, zp in zip(q.scales, q.zero_points, strict=True):
        offset = q.storage_min - zp
        out.append({"bitwidth": q.bits, "dtype": "int",
                    "is_symmetric": "True" if e.symmetric else "False",
                    "min": float(offset * scale), "max": float((q.storage_max - zp) * scale),
                    "offset": int(offset), "scale": float(scale)})
    return out


def encodings_json(module: ModuleOp, tensor_names: dict[str, str] | None = None) -> dict:
    """AIMET-style encodings keyed by tensor name (`tensor_names` maps quantizer ids
    to the exported tensor names; by default the id itself)."""
    names = tensor_names or {}
    acts: dict[str, list[dict]] = {}
    params: dict[str, list[dict]] = {}
    for e in encodings_of(module):
        target = params if e.kind == "weight" else acts
        target[names.get(e.id, e.id)] = _aimet_entries(e)
    return {"version": "0.6.1", "activation_encodings": acts, "param_encodings": params}


def write_atomic(path: str | os.PathLike, text: str) -> None:
    write_file(path, text)
