"""`qcc`: the command for the whole job.

    qcc import MODEL [--weights W] [--input-shape NAME=1x3x224x224 ...] -o OUT.mlir
    qcc run MODEL [--weights W] --inputs IN.npz [--batch-size N] -o OUT.npz
    qcc config MODEL [--config simple.cfg] -o quant.json
    qcc quantize [MODEL] --calib CALIB.npz [--config CFG] [--eval EVAL.npz] [-o OUTDIR]

Exit status 0 on success, 1 on a user error with a message (never a traceback;
QCC_DEBUG=1 shows it), 130 when interrupted (Ctrl-C). Output paths are checked
before any work; every file is written through `qcc.fileio` (temporary file, then
rename), so a failed or interrupted run leaves no partial output.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qcc.errors import QccError
from qcc.fileio import check_output, read_npz, write_file


class UserError(QccError):
    """An error the user can fix; printed as one message."""


def _parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        if not sep or not name:
            raise UserError(f"--input-shape '{item}': expected NAME=1x3x224x224")
        try:
            shapes[name] = tuple(-1 if d == "?" else int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise UserError(f"--input-shape '{item}': dimensions must be integers (or ? "
                            "to keep a symbolic dim) separated by 'x'") from None
    return shapes


def _load(args: argparse.Namespace, need_main: bool = True):
    from qcc import load

    path = Path(args.model)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    module = load(path, weights=args.weights, input_shapes=_parse_shapes(args.input_shape),
                  **_node_names(args))
    if path.suffix.lower() == ".mlir":
        _verify(module, path)
    if need_main:
        from qcc import ir

        try:
            ir.main_func(module)
        except ir.NoMainError as e:
            raise UserError(f"{path}: {e}") from None
    return module


def _verify(module, path: Path) -> None:
    """A module that fails verification is an error naming the file and the op,
    before anything runs or is written."""
    from xdsl.utils.exceptions import DiagnosticException, VerifyException

    try:
        module.verify()
    except (VerifyException, DiagnosticException) as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: the IR fails verification: "
                        f"{first[0] if first else type(e).__name__}") from None


def _node_names(args: argparse.Namespace) -> dict[str, list[str]]:
    """--input-nodes / --output-nodes (a TensorFlow graph's inputs and outputs)."""
    return {k: [n for n in v.split(",") if n] for k in ("inputs", "outputs")
            if (v := getattr(args, f"{k[:-1]}_nodes", None))}


def cmd_import(args: argparse.Namespace) -> None:
    from qcc import ir

    check_output(args.output)
    module = _load(args, need_main=False)
    ir.print_module(module, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> None:
    from qcc.runtime.executor import run_batches

    check_output(args.output)
    inputs = read_npz(args.inputs, "input")
    module = _load(args)
    outputs = run_batches(module, inputs, args.batch_size)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **outputs)  # type: ignore[arg-type]

    write_file(args.output, save)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype} {list(value.shape)}", file=sys.stderr)


def cmd_config(args: argparse.Namespace) -> None:
    from qcc import passes
    from qcc.quant import config as qconfig
    from qcc.quant import config_json

    check_output(args.output)
    module = _load(args)
    passes.run(module, "canonicalize")
    simple = qconfig.load_simple_config(args.config) if args.config else None
    cfg = qconfig.resolve(module, simple, args.model)
    config_json.dump_json(cfg, args.output)
    quantized = sum(1 for e in cfg["layers"].values() if e.get("quantize"))
    print(f"wrote {args.output}: {quantized} of {len(cfg['layers'])} layers quantized",
          file=sys.stderr)


def cmd_quantize(args: argparse.Namespace) -> None:
    from qcc.flow.quantize import quantize
    from qcc.quant.report import markdown

    example = args.model is None
    if example:
        from qcc.examples import digits

        model, calib, test = digits()
        args.calib = args.calib or str(calib)
        args.eval = args.eval or str(test)
        args.model = str(model)
        print(f"qcc quantize: no model given, running the embedded example {model}",
              file=sys.stderr)
    if args.calib is None:
        raise UserError("--calib CALIB.npz is required with a model")
    outdir = args.output or f"{Path(args.model).stem}_qcc"
    check_output(outdir, "folder")
    overrides = tuple(o for o in (args.override or "").split(",") if o)
    result = quantize(args.model, args.calib, args.config, outdir, eval_data=args.eval,
                      weights=args.weights, input_shapes=_parse_shapes(args.input_shape),
                      dump_ir=args.dump_ir, name="digits_cnn" if example else None,
                      target=args.target, overrides=overrides,
                      load_options=_node_names(args))
    print(markdown(result.report))
    ev = result.evaluation
    if "float_top1" in ev:
        print(f"top-1 accuracy on {ev['samples']} samples: float {ev['float_top1']:.4f}, "
              f"int8 {ev['quant_top1']:.4f}")
        if "int8_top1" in ev:
            print(f"integer runtime (qcc-realize-int8): top-1 {ev['int8_top1']:.4f}, "
                  f"agreement with fake-quant {ev['int8_vs_fake_quant_agreement']:.4f}")
    if example:
        w4 = quantize(args.model, args.calib, _w4_config(), None, eval_data=args.eval,
                      progress=False)
        print(f"W4A8 (4-bit per-channel weights): top-1 {w4.evaluation['quant_top1']:.4f}")
    print(f"wrote {outdir}/", file=sys.stderr)


def _w4_config():
    from qcc.quant.config import parse_simple_config

    return parse_simple_config(
        "common_config {\n  arq_quantize { channel_wise: true quant_bits: 4 }\n}\n", "<w4a8>")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qcc", description="qcc, a quantization compiler")
    sub = ap.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help=".mlir, .onnx, .prototxt (with --weights), .pb or .pt2 "
                       "(torch.export.save)")
        p.add_argument("--weights", help="weights file (.caffemodel for a .prototxt)")
        p.add_argument("--input-shape", action="append", default=[], metavar="NAME=SHAPE",
                       help="shape of an input, e.g. x=1x3x224x224; ? keeps a symbolic dim "
                            "(ids=?x128)")
        tf_nodes(p)

    def tf_nodes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input-nodes", metavar="NAME[,NAME]",
                       help="TensorFlow graph: the nodes that are the inputs")
        p.add_argument("--output-nodes", metavar="NAME[,NAME]",
                       help="TensorFlow graph: the nodes whose results are the outputs")

    p = sub.add_parser("import", help="import a model into textual IR")
    model_args(p)
    p.add_argument("-o", "--output", required=True, help="output .mlir (weights go next to it)")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("config", help="write the resolved per-layer quantization config")
    model_args(p)
    p.add_argument("--config", help="simplified config (AMCT protobuf text)")
    p.add_argument("-o", "--output", required=True, help="output quant.json")
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("quantize", help="post-training quantization, the whole job")
    p.add_argument("model", nargs="?", help="model (none: run the embedded example)")
    p.add_argument("--weights", help="weights file (.caffemodel for a .prototxt)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=SHAPE")
    tf_nodes(p)
    p.add_argument("--calib", help=".npz calibration data, one array per input")
    p.add_argument("--config", help="simplified config (.cfg) or resolved quant.json")
    p.add_argument("--eval", help=".npz evaluation data (key 'labels' for accuracy)")
    p.add_argument("-o", "--output", help="output folder (default: <model>_qcc)")
    p.add_argument("--dump-ir", action="store_true",
                   help="write the IR after every pass and the replay command to OUTDIR/ir/")
    p.add_argument("--target", help="legalize for a target description (e.g. ascend): "
                   "layers the target cannot run stay float, with the rule in the report")
    p.add_argument("--override", help="target rules to override, comma-separated "
                   "(e.g. min_cin)")
    p.set_defaults(fn=cmd_quantize)

    p = sub.add_parser("run", help="run a model on the reference runtime")
    model_args(p)
    p.add_argument("--inputs", required=True, help=".npz with one array per model input")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per run when the model's batch is symbolic (default: "
                        "the whole file, up to 256); a static batch B runs the file's "
                        "samples B at a time")
    p.set_defaults(fn=cmd_run)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.environ.get("QCC_DEBUG"):
        args.fn(args)
        return 0
    from xdsl.utils.exceptions import DiagnosticException, ParseError

    try:
        args.fn(args)
    except (QccError, ParseError, DiagnosticException) as e:
        print(f"qcc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
