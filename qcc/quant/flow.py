"""The whole post-training quantization job, top to bottom:

import -> canonicalize -> fuse (when the config allows) -> resolve the config ->
insert observers -> calibrate -> export (fake-quant ONNX, record, encodings,
report) -> evaluate float against fake-quant.

Every step is a named pass or a file writer; with `dump_ir` the IR after each pass
goes to OUTDIR/ir/ with the `qcc-opt` command that replays the pipeline. Files are
written into a temporary folder that replaces OUTDIR only when everything worked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr

from qcc import ir, passes
from qcc.fileio import check_output, commit_folder, discard_folder, new_folder, read_npz, write_file
from qcc.passes.calib_data import CalibrationError, check_data, check_weights, model_batches
from qcc.passes.calibrate import calibrate
from qcc.passes.remarks import Remarks
from qcc.quant.config import SimpleConfig


@dataclass
class QuantizeResult:
    module: ModuleOp
    float_module: ModuleOp
    config: dict
    report: dict
    outdir: Path | None
    evaluation: dict = field(default_factory=dict)


def load_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    return read_npz(path, what)


def _progress_bar(total: int, label: str) -> Callable[[int], None]:
    """A bar redrawn in place on a terminal; a line every quarter otherwise."""
    width = 30
    tty = sys.stderr.isatty()

    def show(n: int) -> None:
        if tty:
            done = int(width * n / max(total, 1))
            end = "\n" if n >= total else ""
            print(f"\r{label} [{'#' * done}{'.' * (width - done)}] {n}/{total}", end=end,
                  file=sys.stderr, flush=True)
        elif n == total or n % max(1, total // 4) == 0:
            print(f"{label}: {n}/{total} batches", file=sys.stderr, flush=True)

    return show


class _Pipeline:
    """Runs passes on the module, keeping the IR after each when dumping."""

    def __init__(self, module: ModuleOp, dump_dir: Path | None) -> None:
        self.module = module
        self.dump_dir = dump_dir
        self.steps: list[str] = []
        self._dump("import")

    def run(self, spec: str, remarks: Remarks | None = None) -> None:
        passes.run(self.module, spec, remarks=remarks)
        self.steps.append(spec)
        self._dump(spec.split("{")[0])

    def _dump(self, label: str) -> None:
        if self.dump_dir is None:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        n = len(self.steps)
        ir.print_module(self.module, self.dump_dir / f"{n:02d}-{label}.mlir")

    def write_replay(self) -> None:
        if self.dump_dir is None:
            return
        pipeline = ",".join(self.steps)
        write_file(self.dump_dir / "replay.sh",
            "#!/bin/sh\n# Replays the quantization pipeline on the imported IR.\n"
            f"cd \"$(dirname \"$0\")\"\nqcc-opt 00-import.mlir -p '{pipeline}' -o replayed.mlir\n")


def quantize(model: str | os.PathLike | ModuleOp, calib: str | os.PathLike | Mapping,
             config: str | os.PathLike | SimpleConfig | None = None,
             outdir: str | os.PathLike | None = None,
             *, eval_data: str | os.PathLike | Mapping | None = None,
             weights: str | None = None, input_shapes: dict | None = None,
             dump_ir: bool = False, name: str | None = None,
             target: str | None = None, overrides: tuple[str, ...] = (),
             progress: bool = True, load_options: Mapping | None = None) -> QuantizeResult:
    """Quantize `model` with calibration data `calib` (an .npz path or arrays)."""
    from qcc import load
    from qcc.quant import config as qconfig
    from qcc.quant import config_json

    final = check_output(outdir, "folder") if outdir is not None else None
    if isinstance(model, ModuleOp):
        module, name = model, name or "model"
    else:
        module = load(model, weights=weights, input_shapes=input_shapes,
                      **dict(load_options or {}))
        name = name or Path(model).stem
    data = load_npz(calib, "calibration") if not isinstance(calib, Mapping) else dict(calib)
    fn = ir.main_func(module)
    names, types = ir.io_names(fn)[0], [a.type for a in fn.body.block.args]
    check_data(names, types, data)
    eval_arrays = None
    if eval_data is not None:
        eval_arrays = (load_npz(eval_data, "evaluation") if not isinstance(eval_data, Mapping)
                       else dict(eval_data))
        check_data(names, types, {k: v for k, v in eval_arrays.items() if k != "labels"},
                   what="evaluation", source=str(eval_data) if not isinstance(
                       eval_data, Mapping) else None)
    check_weights(module)

    simple = None
    if isinstance(config, qconfig.SimpleConfig):
        simple, config = config, None
    elif config is not None and not str(config).endswith(".json"):
        simple = qconfig.load_simple_config(config)
    work = new_folder(final) if final is not None else None
    try:
        pipe = _Pipeline(module, work / "ir" if (work and dump_ir) else None)
        pipe.run("canonicalize")
        if simple is None and config is not None and str(config).endswith(".json"):
            cfg = config_json.load_json(config)
        else:
            cfg = qconfig.resolve(module, simple, str(model) if not isinstance(
                model, ModuleOp) else None)
        if cfg.get("do_fusion", True):
            skip = ",".join(cfg.get("skip_fusion_layers", []))
            pipe.run(f'qcc-fuse-bn{{skip_layers="{skip}"}}' if skip else "qcc-fuse-bn")
        extra: dict = {"model": name}
        if target is not None:
            from qcc.passes.legalize_ascend import legalize

            cfg, extra["remarks"] = legalize(module, cfg, target, overrides)
            opts = ([f'target="{target}"'] if target != "ascend" else []) + [
                'config="../quant.json"'] + ([f'override="{",".join(overrides)}"']
                                             if overrides else [])
            pipe.steps.append(f"qcc-legalize-ascend{{{' '.join(opts)}}}")
            pipe._dump("qcc-legalize")
        config_json.validate_json(cfg, module)
        float_module = module.clone()
        batches = list(model_batches(module, data, cfg.get("batch_num")))
        if cfg.get("equalize"):
            extra["equalization"] = _equalize(pipe)
        if cfg.get("balance"):
            extra["balance"] = _balance(pipe, batches, cfg["balance"], calib)
        if work is not None:
            config_json.dump_json(cfg, work / "quant.json")
        from qcc.passes.insert_quant import insert_observers

        insert_observers(module, cfg)
        pipe.steps.append('qcc-insert-quant{config="../quant.json"}')
        pipe._dump("qcc-insert-quant")
        bar = _progress_bar(len(batches), "calibrating") if progress else None
        calibrate(module, batches, bar)
        calib_name = "CALIB.npz" if isinstance(calib, Mapping) else Path(calib).resolve()
        pipe.steps.append(f'qcc-calibrate{{data="{calib_name}"}}')
        pipe._dump("qcc-calibrate")
        pipe.write_replay()

        int8_module = module.clone()
        passes.run(int8_module, "qcc-realize-int8")
        evaluation = (evaluate(float_module, module, eval_arrays, int8_module)
                      if eval_arrays is not None else {})
        from qcc.quant.report import build_report
        from qcc.runtime import run

        if evaluation:
            extra["evaluation"] = evaluation
        report = build_report(module, cfg, batches[0] if batches else None, extra,
                              run=run)
        if work is not None:
            _write_outputs(work, name, module, cfg, report)
            _write_deploy(work, name, int8_module, report)
            if getattr(module.attributes.get("qcc.framework"), "data", None) == "caffe":
                from qcc.exporters.caffe import write_quantized

                write_quantized(work, name, module, int8_module, report)
            commit_folder(work, final)  # type: ignore[arg-type]
        return QuantizeResult(module, float_module, cfg, report, final, evaluation)
    finally:
        if work is not None:
            discard_folder(work)


def _weight_sqnr(module: ModuleOp) -> dict[str, float]:
    """Per-tensor symmetric int8 SQNR of every layer weight (what CLE improves)."""
    from qcc.dialects import qnn
    from qcc.dialects.layers import Layer
    from qcc.quant.config import quantizable_layers
    from qcc.quant.report import sqnr_db

    out = {}
    for name, op in quantizable_layers(module).items():
        weight = Layer(op).weight
        if weight is None or not isinstance(weight.owner, qnn.ConstantOp):
            continue
        w = np.asarray(ir.array_of(weight), np.float64)
        scale = max(float(np.abs(w).max()), 1e-30) / 127
        out[name] = sqnr_db(w, np.clip(np.rint(w / scale), -127, 127) * scale)
    return out


def _equalize(pipe: _Pipeline) -> dict:
    from qcc.passes import equalize

    before = _weight_sqnr(pipe.module)
    remarks = Remarks()
    pipe.run("qcc-equalize", remarks)
    after = _weight_sqnr(pipe.module)
    return {"pairs": {f"{a} -> {b}": {"min_scale": float(min(s)), "max_scale": float(max(s))}
                      for (a, b), s in equalize.scales_of(remarks).items()},
            "weight_sqnr_db_per_tensor": {k: {"before": before[k], "after": after.get(k)}
                                          for k in before}}


def _balance(pipe: _Pipeline, batches: list, spec: dict, calib) -> dict:
    """qcc-balance as the config says: every layer, or (`outlier_ratio`) the layers
    whose input has outlier channels; the report lists the measured ratio of each."""
    from qcc.passes.balance import balance

    alpha, k = spec["alpha"], float(spec.get("outlier_ratio", 0.0))
    ratios: dict[str, float] = {}
    factors = balance(pipe.module, batches, alpha=alpha, outlier_ratio=k, ratios=ratios)
    data = "CALIB.npz" if isinstance(calib, Mapping) else Path(calib).resolve()
    option = f" outlier_ratio={k}" if k > 0 else ""
    pipe.steps.append(f'qcc-balance{{alpha={alpha}{option} data="{data}"}}')
    pipe._dump("qcc-balance")
    out: dict = {"alpha": alpha, "layers": {
        name: {"min": float(np.min(v)), "max": float(np.max(v)),
               "outlier_ratio": ratios[name]} for name, v in factors.items()}}
    if k > 0:
        out["outlier_ratio"] = k
        out["not_balanced"] = {n: r for n, r in ratios.items() if n not in factors}
    return out


def _write_outputs(work: Path, name: str, module: ModuleOp, cfg: dict, report: dict) -> None:
    from qcc.quant import records
    from qcc.quant.report import markdown, report_json

    records.write_atomic(work / "record.txt", records.record_text(module))
    records.write_atomic(work / "encodings.json",
                         json.dumps(records.encodings_json(module), indent=2))
    records.write_atomic(work / "report.json", report_json(report))
    records.write_atomic(work / "report.md", markdown(report))
    try:
        from qcc.exporters.onnx import export_onnx
    except ImportError:
        return
    export_onnx(module, work / f"{name}_fake_quant.onnx")
    if module.attributes.get("qcc.framework") == StringAttr("tensorflow"):
        # TensorFlow users get a GraphDef with FakeQuantWithMinMaxVars too
        from qcc.exporters.tensorflow import export_graphdef

        export_graphdef(module, work / f"{name}_fake_quant.pb")


def _write_deploy(work: Path, name: str, int8_module: ModuleOp, report: dict) -> None:
    """`<name>_deploy.onnx`: the integer graph lowered to Ascend operators. A model
    with an op the deploy format cannot express gets no deploy file; the report
    says why (the other files are still written)."""
    from qcc.exporters.deploy import export_deploy
    from qcc.exporters.onnx import ExportError

    lowered = int8_module.clone()
    passes.run(lowered, "qcc-lower-ascend")
    try:
        export_deploy(lowered, work / f"{name}_deploy.onnx")
    except ExportError as e:
        report["deploy"] = f"not written: {e}"
        print(f"qcc quantize: warning: {name}_deploy.onnx not written: {e}", file=sys.stderr)


# --------------------------------------------------------------- evaluation


def evaluate(float_module: ModuleOp, quant_module: ModuleOp,
             data: str | os.PathLike | Mapping, int8_module: ModuleOp | None = None) -> dict:
    """Float against fake-quant: top-1 accuracy when the data has `labels`,
    otherwise per-output cosine similarity (mean and worst sample) and SQNR. With
    `int8_module` (the realized integer graph), also its top-1 and its agreement
    with the fake-quant graph."""
    from qcc.quant.report import sqnr_db
    from qcc.runtime import compile_module, execute

    arrays = load_npz(data, "evaluation") if not isinstance(data, Mapping) else dict(data)
    labels = arrays.pop("labels", None)
    modules = [float_module, quant_module] + ([int8_module] if int8_module else [])
    plans = [compile_module(m) for m in modules]
    outs: list[dict[str, list[np.ndarray]]] = [{} for _ in plans]
    for batch in model_batches(float_module, arrays):
        for plan, acc in zip(plans, outs, strict=True):
            outputs, _ = execute(plan, batch)
            for k, v in outputs.items():
                acc.setdefault(k, []).append(np.asarray(v))
    f_out = {k: np.concatenate(v) for k, v in outs[0].items()}
    q_out = {k: np.concatenate(v) for k, v in outs[1].items()}
    if not f_out:
        raise CalibrationError("the evaluation data holds fewer samples than one batch")
    result: dict = {"samples": int(len(next(iter(f_out.values()))))}
    if labels is not None:
        first = next(iter(f_out))
        n = len(f_out[first])
        y = np.asarray(labels).reshape(-1)[:n]
        result["float_top1"] = float(np.mean(f_out[first].reshape(n, -1).argmax(1) == y))
        result["quant_top1"] = float(np.mean(q_out[first].reshape(n, -1).argmax(1) == y))
        result["top1_agreement"] = float(np.mean(
            f_out[first].reshape(n, -1).argmax(1) == q_out[first].reshape(n, -1).argmax(1)))
        if int8_module is not None:
            i_top = np.concatenate(outs[2][first]).reshape(n, -1).argmax(1)
            result["int8_top1"] = float(np.mean(i_top == y))
            result["int8_vs_fake_quant_agreement"] = float(np.mean(
                i_top == q_out[first].reshape(n, -1).argmax(1)))
    for k in f_out:
        a = f_out[k].reshape(len(f_out[k]), -1).astype(np.float64)
        b = q_out[k].reshape(len(q_out[k]), -1).astype(np.float64)
        cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) *
                                            np.linalg.norm(b, axis=1), 1e-30)
        result[f"{k}.cosine_mean"] = float(np.mean(cos))
        result[f"{k}.cosine_worst"] = float(np.min(cos))
        result[f"{k}.sqnr_db"] = sqnr_db(a, b)
    return result
