"""`qcc`: the command for the whole job.

    qcc import MODEL [--weights W] [--input-shape NAME=1x3x224x224 ...] -o OUT.mlir
    qcc run MODEL [--weights W] --inputs IN.npz -o OUT.npz

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


class UserError(Exception):
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
    from qcc.errors import USER_ERRORS

    try:
        args.fn(args)
    except (UserError, *USER_ERRORS) as e:
        print(f"qcc {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
