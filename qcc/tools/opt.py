"""`qcc-opt`: the pass driver, built on xDSL's `xDSLOptMain`.

    qcc-opt model.mlir -p 'canonicalize,qcc-fuse-bn' -o out.mlir

Differences from `xdsl-opt`: qcc's dialects and passes only (plus builtin, func,
arith), weights read from and written to the `.weights` sidecar, errors as one
diagnostic with exit status 1 instead of a traceback, `--print-ir-after-all`,
`--print-ir-before-all` and `--list-passes`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass, PassPipeline
from xdsl.printer import Printer
from xdsl.utils.exceptions import DiagnosticException, ParseError
from xdsl.xdsl_opt_main import xDSLOptMain

from qcc import ir, registry
from qcc.errors import QccError


class QccOptMain(xDSLOptMain):
    version_format = "qcc-opt (xdsl {xdsl_version})"

    def register_all_dialects(self) -> None:
        self.ctx = registry.make_context()

    def register_all_passes(self) -> None:
        for name, factory in registry.all_passes().items():
            self.register_pass(name, factory)

    def register_all_frontends(self) -> None:
        def parse_mlir(stream: IO[bytes]) -> ModuleOp:
            path = self.args.input_file
            module = ir.Parser(self.ctx, stream.read(), self.get_input_name()).parse_module(
                not self.args.no_implicit_module)
            base = Path(path).parent if path else None
            ir.resolve_resources(module, self.ctx, base, self.get_input_name())
            return module

        self.available_frontends["mlir"] = parse_mlir

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument("--print-ir-after-all", action="store_true",
                                help="print the IR after every pass (to stderr)")
        arg_parser.add_argument("--print-ir-before-all", action="store_true",
                                help="print the IR before every pass (to stderr)")
        arg_parser.add_argument("--list-passes", action="store_true",
                                help="list qcc's passes with one line each and exit")
        arg_parser.add_argument("--remarks", action="store_true",
                                help="print why passes left things alone (to stderr)")
        arg_parser.epilog = "passes:\n" + _pass_table()
        arg_parser.formatter_class = argparse.RawDescriptionHelpFormatter

    def prepare_input(self):
        chunks, ext = super().prepare_input() if self._known_ext() else self._as_mlir()
        return chunks, ext

    def _known_ext(self) -> bool:
        path = self.args.input_file
        return self.args.frontend or path is None or Path(path).suffix[1:] in (
            self.available_frontends)

    def _as_mlir(self):
        # Any other extension is textual IR.
        self.args.frontend = "mlir"
        return super().prepare_input()

    def apply_passes(self, prog: ModuleOp) -> None:
        from qcc.passes.remarks import collecting

        with collecting() as remarks:
            super().apply_passes(prog)
        if self.args.remarks:
            for line in remarks.lines:
                print(f"remark: {line}", file=sys.stderr)

    def setup_pipeline(self) -> None:
        def callback(previous: ModulePass | None, module: ModuleOp,
                     following: ModulePass | None) -> None:
            if not self.args.disable_verify:
                module.verify()
            if previous is not None and self.args.print_ir_after_all:
                _dump(f"IR after {previous.name}", module)
            if following is not None and self.args.print_ir_before_all:
                _dump(f"IR before {following.name}", module)

        self.pipeline = PassPipeline.parse_spec(self.available_passes, self.args.passes,
                                                callback)

    def output_resulting_program(self, prog: ModuleOp) -> str:
        return ir.print_module(prog, generic=self.args.print_op_generic)

    def run(self) -> None:
        if self.args.output_file is None or self.args.split_input_file:
            super().run()
            return
        # One module to a file: write it (and its weights sidecar) atomically.
        chunks, ext = self.prepare_input()
        (chunk, _), = chunks
        module = self.parse_chunk(chunk, ext)
        assert module is not None
        self.apply_passes(module)
        ir.print_module(module, self.args.output_file,
                        generic=self.args.print_op_generic)

    def prepare_output(self):
        return sys.stdout if self.args.output_file is None else open(
            self.args.output_file, "w")


def _dump(title: str, module: ModuleOp) -> None:
    print(f"// -----// {title} //----- //", file=sys.stderr)
    Printer(stream=sys.stderr).print_op(module)
    print(file=sys.stderr)


def _pass_table() -> str:
    lines = []
    for name, factory in sorted(registry.all_passes().items()):
        try:
            doc = (factory().__doc__ or "").strip().splitlines()
        except Exception as e:  # a broken plugin must not break --help
            doc = [f"(failed to load: {e})"]
        lines.append(f"  {name:24} {doc[0] if doc else ''}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one diagnostic and return 1 (set
    QCC_DEBUG=1 for the Python traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("QCC_DEBUG"):
        QccOptMain(description="qcc pass driver", args=argv).run()
        return 0
    if "--list-passes" in argv:
        print(_pass_table())
        return 0
    try:
        QccOptMain(description="qcc pass driver", args=argv).run()
    except (QccError, ParseError, DiagnosticException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: {e.filename}: no such file", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
