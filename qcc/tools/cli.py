"""`qcc`: the command for the whole job.

    qcc import MODEL [--weights W] [--input-shape NAME=1x3x224x224 ...] -o OUT.mlir
    qcc run MODEL [--weights W] --inputs IN.npz -o OUT.npz
    qcc config MODEL [--config simple.cfg] -o quant.json
    qcc quantize [MODEL] --calib CALIB.npz [--config CFG] [--eval EVAL.npz] [-o OUTDIR]

Exit status 0 on success, 1 on a user error with a message (never a traceback;
QCC_DEBUG=1 shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qcc.errors import QccError


class UserError(QccError):
    """An error the user can fix; printed as one message."""


def _parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        if not sep or not name:
            raise UserError(f"--input-shape '{item}': expected NAME=1x3x224x224")
        try:
            shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise UserError(f"--input-shape '{item}': dimensions must be integers "
                            "separated by 'x'") from None
    return shapes


def _load(args: argparse.Namespace):
    from qcc import load

    path = Path(args.model)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    return load(path, weights=args.weights, input_shapes=_parse_shapes(args.input_shape))


def cmd_import(args: argparse.Namespace) -> None:
    from qcc import ir

    module = _load(args)
    ir.print_module(module, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> None:
    from qcc.runtime import run

    module = _load(args)
    try:
        data = np.load(args.inputs)
    except (OSError, ValueError) as e:
        raise UserError(f"{args.inputs}: cannot read inputs ({e})") from None
    inputs = {k: data[k] for k in data.files}
    outputs = run(module, inputs)
    out = Path(args.output)
    fd, tmp = tempfile.mkstemp(dir=out.parent or ".", prefix=f".{out.name}", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **outputs)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype} {list(value.shape)}", file=sys.stderr)


def cmd_config(args: argparse.Namespace) -> None:
    from qcc import passes
    from qcc.quant import config as qconfig
    from qcc.quant import config_json

    module = _load(args)
    passes.run(module, "canonicalize")
    simple = qconfig.load_simple_config(args.config) if args.config else None
    cfg = qconfig.resolve(module, simple, args.model)
    config_json.dump_json(cfg, args.output)
    quantized = sum(1 for e in cfg["layers"].values() if e.get("quantize"))
    print(f"wrote {args.output}: {quantized} of {len(cfg['layers'])} layers quantized",
          file=sys.stderr)


def cmd_quantize(args: argparse.Namespace) -> None:
    from qcc.quant.flow import quantize
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
    overrides = tuple(o for o in (args.override or "").split(",") if o)
    result = quantize(args.model, args.calib, args.config, outdir, eval_data=args.eval,
                      weights=args.weights, input_shapes=_parse_shapes(args.input_shape),
                      dump_ir=args.dump_ir, name="digits_cnn" if example else None,
                      target=args.target, overrides=overrides)
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


def _w4_config() -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".cfg")
    with os.fdopen(fd, "w") as f:
        f.write("common_config {\n  arq_quantize { channel_wise: true quant_bits: 4 }\n}\n")
    return path


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qcc", description="qcc, a quantization compiler")
    sub = ap.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help=".mlir, .onnx, .prototxt (with --weights) or .pb")
        p.add_argument("--weights", help="weights file (.caffemodel for a .prototxt)")
        p.add_argument("--input-shape", action="append", default=[], metavar="NAME=SHAPE",
                       help="static shape of a dynamic input, e.g. x=1x3x224x224")

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
