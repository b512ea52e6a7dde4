"""The per-layer quantization report: bits, granularity, algorithm, fallback reason
and the SQNR of every quantized tensor against its float value.

Weights are compared with their fake-quantized copy directly. Activations are
compared on a calibration batch: the value entering each `quant.fake_quant` against
what comes out (the quantization noise that tensor adds, in dB).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from qcc import ir
from qcc.dialects import quant
from qcc.dialects.base import get_str
from qcc.quant.records import encodings_of

if TYPE_CHECKING:
    from qcc.registry import Executor


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / noise power) over finite values; inf when exact."""
    r_all = np.asarray(reference).reshape(-1)
    a_all = np.asarray(approx).reshape(-1)
    if r_all.shape != a_all.shape:
        raise ValueError(f"sqnr_db: {r_all.size} reference values, {a_all.size} approximations")
    signal = noise = 0.0
    # float64 sums by dot products over chunks that stay in cache (a ResNet-50 job's
    # report spent a second converting whole tensors and squaring them); a chunk's
    # sums are finite exactly when all its values are (a float32 squared is far
    # from float64's range), else its non-finite values are left out
    for i in range(0, r_all.size, _SQNR_CHUNK):
        r = r_all[i:i + _SQNR_CHUNK].astype(np.float64)
        d = r - a_all[i:i + _SQNR_CHUNK].astype(np.float64)
        s, n = float(np.dot(r, r)), float(np.dot(d, d))
        if not (math.isfinite(s) and math.isfinite(n)):
            ok = np.isfinite(r) & np.isfinite(d)
            s, n = float(np.dot(r[ok], r[ok])), float(np.dot(d[ok], d[ok]))
        signal += s
        noise += n
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * math.log10(signal / noise)


_SQNR_CHUNK = 1 << 15


def report_json(report: Mapping) -> str:
    """`report` as strictly valid JSON: NaN and +-inf (an exact SQNR is inf) become
    null, which JSON readers accept (Python's `json` would write `Infinity`)."""

    def clean(v: object) -> object:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v

    return json.dumps(clean(report), indent=2, allow_nan=False) + "\n"


def build_report(module: ModuleOp, config: Mapping, batch: Mapping[str, np.ndarray] | None,
                 extra: Mapping | None = None, executor: Executor | None = None) -> dict:
    """The report as a JSON-ready dict. With a `batch`, the SQNR of each quantized
    activation is measured on it, running the module with `executor` (hooks on the
    activation fake_quants: `qcc.registry.Executor`; the flow passes the runtime's,
    unfused so that each fake_quant sees the value it quantizes)."""
    fqs = [op for op in module.walk() if isinstance(op, quant.FakeQuantOp)
           and "id" in op.attributes]
    act_sqnr: dict[str, float] = {}
    if batch is not None and executor is not None:
        acts = [op for op in fqs if get_str(op.attributes["id"]).rpartition(".")[2] != "weight"]

        def measure(kernel: Callable[..., Any], op: quant.FakeQuantOp, x: np.ndarray) -> Any:
            y = kernel(op, x)
            act_sqnr[get_str(op.attributes["id"])] = sqnr_db(x, y)
            return y

        executor(module, dict.fromkeys(acts, measure))(batch)
    rows = []
    by_layer: dict[str, dict] = {}
    for e in encodings_of(module):
        q = e.qtype
        row = by_layer.setdefault(e.layer, {"layer": e.layer, "quantized": True})
        entry: dict[str, object] = {
            "bits": q.bits, "granularity": "per-channel" if q.is_per_axis else "per-tensor",
            "algorithm": e.algorithm, "symmetric": e.symmetric, "min": e.min, "max": e.max}
        if e.kind == "weight":
            fq_op = next(op for op in fqs if get_str(op.attributes["id"]) == e.id)
            w = np.asarray(ir.array_of(fq_op.input), np.float32)
            entry["sqnr_db"] = sqnr_db(w, q.fake_quant(w))
        else:
            entry["sqnr_db"] = act_sqnr.get(e.id)
            entry["skipped_values"] = e.skipped
        row[e.kind] = entry
    for name, entry in config.get("layers", {}).items():
        if name in by_layer:
            by_layer[name]["type"] = entry.get("type", "")
        elif not entry.get("quantize", True):
            by_layer[name] = {"layer": name, "type": entry.get("type", ""), "quantized": False,
                              "reason": entry.get("reason", "")}
    order = list(config.get("layers", {}))
    rows = sorted(by_layer.values(), key=lambda r: order.index(r["layer"])
                  if r["layer"] in order else len(order))
    skipped = sum(r.get(k, {}).get("skipped_values", 0) for r in rows
                  for k in ("input", "input0", "input1"))
    report = {"layers": rows, "skipped_values": skipped}
    if extra:
        report.update(extra)
    return report


def _cell(entry: dict | None, key: str, fmt: str = "{}") -> str:
    if not entry or entry.get(key) is None:
        return "-"
    v = entry[key]
    if isinstance(v, float) and not np.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return fmt.format(v)


def markdown(report: Mapping) -> str:
    """The report as a markdown table (also what the CLI prints)."""
    lines = ["| layer | type | weight | act | algorithm (w / a) | SQNR w dB | SQNR a dB "
             "| skipped | note |",
             "|---|---|---|---|---|---:|---:|---:|---|"]
    for r in report["layers"]:
        if not r.get("quantized"):
            lines.append(f"| {r['layer']} | {r.get('type', '')} | float | float | - | - | - "
                         f"| - | {r.get('reason', '')} |")
            continue
        w = r.get("weight")
        a = r.get("input") or r.get("input0")
        wdesc = f"int{w['bits']} {w['granularity']}" if w else "-"
        adesc = f"int{a['bits']} {'sym' if a['symmetric'] else 'asym'}" if a else "-"
        algos = f"{_cell(w, 'algorithm')} / {_cell(a, 'algorithm')}"
        lines.append(f"| {r['layer']} | {r.get('type', '')} | {wdesc} | {adesc} | {algos} | "
                     f"{_cell(w, 'sqnr_db', '{:.1f}')} | {_cell(a, 'sqnr_db', '{:.1f}')} | "
                     f"{_cell(a, 'skipped_values')} | |")
    for key, value in report.items():
        if key not in ("layers",) and not isinstance(value, dict | list):
            lines.append(f"\n{key}: {value}")
    for key, value in report.items():
        if isinstance(value, dict):
            lines.append(f"\n{key}: " + json.dumps(value))
    return "\n".join(lines) + "\n"
