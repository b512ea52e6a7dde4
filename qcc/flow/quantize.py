"""The whole post-training quantization job, top to bottom:

import -> canonicalize -> resolve the config (the policy) -> build the pass pipeline
from it (`qcc.quant.pipeline.build`: fuse, legalize, equalize, balance, insert
observers, calibrate) -> run it -> export (fake-quant ONNX, deploy ONNX, record,
encodings, report) -> evaluate float against fake-quant.

The job runs one pipeline of passes, and its text is the replay: with `dump_ir` the
IR after each pass goes to OUTDIR/ir/ with `replay.sh`, which runs `qcc-opt -p` with
the printed pipeline on the imported IR. Files are written into a temporary folder
that replaces OUTDIR only when everything worked.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass

from qcc import ir, passes
from qcc.fileio import (
    check_holds_no_input,
    check_output,
    commit_folder,
    discard_folder,
    new_folder,
    read_npz,
    write_file,
)
from qcc.flow import shared_pass
from qcc.passes.balance import BalancePass
from qcc.passes.canonicalize import CanonicalizePass
from qcc.passes.equalize import EqualizePass
from qcc.passes.legalize_ascend import LegalizeAscendPass, legalized_config
from qcc.passes.remarks import Remarks, collecting
from qcc.quant import pipeline as qpipeline
from qcc.quant.calib_data import CalibrationError, check_data, check_weights, model_batches
from qcc.quant.config import SimpleConfig
from qcc.quant.inputs import Supply, supplying

CONFIG_FILE = "../quant.json"
"""The resolved config as the pipeline names it: OUTDIR/quant.json, seen from the
folder replay.sh runs in (OUTDIR/ir)."""


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


def _progress_bar(label: str) -> Callable[[int, int], None]:
    """`show(done, total)`: a bar redrawn in place on a terminal; a line every quarter
    otherwise."""
    width = 30
    tty = sys.stderr.isatty()

    def show(n: int, total: int) -> None:
        if tty:
            done = int(width * n / max(total, 1))
            end = "\n" if n >= total else ""
            print(f"\r{label} [{'#' * done}{'.' * (width - done)}] {n}/{total}", end=end,
                  file=sys.stderr, flush=True)
        elif n == total or n % max(1, total // 4) == 0:
            print(f"{label}: {n}/{total} batches", file=sys.stderr, flush=True)

    return show


class _Run:
    """The passes run so far on one module, with their remarks; the IR after each
    when dumping. Their text (`passes.text`) is the replay. The module is verified
    after each pass when dumping (each dump is checked IR), otherwise once after the
    pipeline (`verify`): a verification walks the whole module, and the passes are
    verified one by one in their own tests and by `qcc-opt`."""

    def __init__(self, module: ModuleOp, dump_dir: Path | None,
                 progress: Callable[[int, int], None] | None) -> None:
        self.module = module
        self.dump_dir = dump_dir
        self.progress = progress
        self.done: list[ModulePass] = []
        self.remarks = Remarks()
        self._dump("import")

    def run(self, pipeline: Sequence[ModulePass], files: Mapping | None = None,
            after: Callable[[ModulePass, ModuleOp], None] | None = None) -> None:
        def each(p: ModulePass, module: ModuleOp) -> None:
            self.done.append(p)
            self._dump(p.name)
            if after is not None:
                after(p, module)

        passes.run(self.module, pipeline, remarks=self.remarks, files=files,
                   progress=self.progress, after=each, verify=self.dump_dir is not None)

    def verify(self) -> None:
        self.module.verify()

    def run_as(self, p: ModulePass, apply: Callable[[ModuleOp], None], files: Mapping,
               after: Callable[[ModulePass, ModuleOp], None] | None = None) -> None:
        """Pass `p` applied by `apply(module)`, which does what `p.apply` does with
        what the flow already measured (`shared_pass`); then as `run` does after a
        pass: verify, record, dump."""
        with supplying(Supply(dict(files), self.progress)), collecting(self.remarks):
            apply(self.module)
        if self.dump_dir is not None:
            self.module.verify()
        self.done.append(p)
        self._dump(p.name)
        if after is not None:
            after(p, self.module)

    def _dump(self, label: str) -> None:
        if self.dump_dir is None:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        ir.print_module(self.module, self.dump_dir / f"{len(self.done):02d}-{label}.mlir")

    def write_replay(self) -> None:
        if self.dump_dir is None:
            return
        write_file(self.dump_dir / "replay.sh",
            "#!/bin/sh\n# Replays the quantization pipeline on the imported IR.\n"
            f"cd \"$(dirname \"$0\")\"\n"
            f"qcc-opt 00-import.mlir -p {shlex.quote(passes.text(self.done))} "
            "-o replayed.mlir\n")


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
    if final is not None:
        check_holds_no_input(final, (model, weights, calib, eval_data, config))
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
        job = _Run(module, work / "ir" if (work and dump_ir) else None,
                   _progress_bar("calibrating") if progress else None)
        job.run([CanonicalizePass()])
        if simple is None and config is not None and str(config).endswith(".json"):
            cfg = config_json.load_json(config)
        else:
            cfg = qconfig.resolve(module, simple, str(model) if not isinstance(
                model, ModuleOp) else None)
        config_json.validate_json(cfg, module)
        if work is not None:
            config_json.dump_json(cfg, work / "quant.json")
        data_file = "CALIB.npz" if isinstance(calib, Mapping) else str(Path(calib).resolve())
        pipeline = qpipeline.build(cfg, config=CONFIG_FILE, data=data_file, target=target,
                                   overrides=overrides)
        files = {CONFIG_FILE: cfg, data_file: data}
        keep = qpipeline.float_prefix(pipeline)
        job.run(pipeline[:keep], files)
        float_module = module.clone()
        extra: dict = {"model": name}
        if target is not None:
            extra["remarks"] = job.remarks.results.get(LegalizeAscendPass.name, [])
        sqnr_before = _weight_sqnr(module) if cfg.get("equalize") else {}
        sqnr_after: dict[str, float] = {}

        def after(p: ModulePass, mod: ModuleOp) -> None:
            if isinstance(p, EqualizePass):
                sqnr_after.update(_weight_sqnr(mod))

        _run_shared(job, pipeline[keep:], files, after)
        job.verify()
        job.write_replay()
        if cfg.get("equalize"):
            extra["equalization"] = _equalization(job.remarks, sqnr_before, sqnr_after)
        if cfg.get("balance"):
            extra["balance"] = _balance(job.remarks, cfg["balance"])
        if target is not None:
            cfg = legalized_config(module, cfg)

        int8_module = module.clone()
        passes.run(int8_module, "qcc-realize-int8")
        evaluation = (evaluate(float_module, module, eval_arrays, int8_module)
                      if eval_arrays is not None else {})
        from qcc.quant.report import build_report

        if evaluation:
            extra["evaluation"] = evaluation
        batch = next(model_batches(module, data, cfg.get("batch_num")), None)
        report = build_report(module, cfg, batch, extra, executor=_unfused_executor)
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


def _run_shared(job: _Run, pipeline: Sequence[ModulePass], files: Mapping,
                after: Callable[[ModulePass, ModuleOp], None]) -> None:
    """`job.run(pipeline, ...)`, with balance, insert-quant and calibrate sharing one
    pass over the calibration data where they can (`qcc.flow.shared_pass`)."""
    start = next((i for i, p in enumerate(pipeline) if isinstance(p, BalancePass)), None)
    if start is None or not shared_pass.fits(pipeline[start:start + 3]):
        job.run(pipeline, files, after)
        return
    job.run(pipeline[:start], files, after)
    bal, ins, cal = pipeline[start:start + 3]
    if not shared_pass.run(job, bal, ins, cal, files, after):  # type: ignore[arg-type]
        job.run(pipeline[start:start + 3], files, after)
    job.run(pipeline[start + 3:], files, after)


def _unfused_executor(module: ModuleOp, hooks: Mapping) -> Callable[[Mapping], object]:
    """A `qcc.registry.Executor` on the runtime's unfused plan (every value is a
    step's input or output, so a hook sees each; one compilation)."""
    from functools import partial

    from qcc.runtime import compile_module, execute

    plan = compile_module(module, fuse=False)
    kernels = {step.op: step.fn for step in plan.steps}

    def kernel_of(fn: Callable) -> Callable:
        return lambda op, *arrays: fn(*arrays)

    overrides = {op: partial(hook, kernel_of(kernels[op])) for op, hook in hooks.items()
                 if op in kernels}
    return lambda batch: execute(plan, batch, overrides=overrides)


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


def _equalization(remarks: Remarks, before: dict[str, float], after: dict[str, float]) -> dict:
    from qcc.passes import equalize

    return {"pairs": {f"{a} -> {b}": {"min_scale": float(min(s)), "max_scale": float(max(s))}
                      for (a, b), s in equalize.scales_of(remarks).items()},
            "weight_sqnr_db_per_tensor": {k: {"before": before[k], "after": after.get(k)}
                                          for k in before}}


def _balance(remarks: Remarks, spec: dict) -> dict:
    """What qcc-balance did: every layer, or (`outlier_ratio`) the layers whose input
    has outlier channels; then the report lists the measured ratio of each layer."""
    factors = remarks.results.get(BalancePass.name, {})
    ratios = remarks.results.get(f"{BalancePass.name}.outlier_ratio", {})
    out: dict = {"alpha": spec["alpha"], "layers": {
        k: {"min": float(np.min(v)), "max": float(np.max(v)), "outlier_ratio": ratios.get(k)}
        for k, v in factors.items()}}
    if spec.get("outlier_ratio"):
        out["outlier_ratio"] = spec["outlier_ratio"]
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
