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
            data: bytes | str = stream.read()
            try:
                text = data.decode() if isinstance(data, bytes) else data
            except UnicodeDecodeError as e:
                raise ir.IRError(f"{self.get_input_name()}: not UTF-8 text (byte "
                                 f"{e.start}); textual IR is UTF-8") from None
            self._text = text
            module = ir.Parser(self.ctx, text, self.get_input_name()).parse_module(
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

        passes = build_passes(self.available_passes, self.args.passes)
        self.pipeline = PassPipeline(passes, callback)

    def output_resulting_program(self, prog: ModuleOp) -> str:
        return ir.print_module(prog, generic=self.args.print_op_generic)

    def run(self) -> None:
        if self.args.output_file is None or self.args.split_input_file:
            self._out: _AtomicText | None = None
            super().run()
            if self._out is not None:  # written only when every chunk went through
                self._out.commit()
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
        if self.args.output_file is None:
            return sys.stdout
        self._out = _AtomicText(self.args.output_file)
        return self._out

    def parse_chunk(self, chunk, file_extension, start_offset=0):
        module = super().parse_chunk(chunk, file_extension, start_offset)
        if module is not None and not self.args.disable_verify:
            _verify(module, self.get_input_name(), getattr(self, "_text", ""), start_offset)
        return module


class PipelineError(QccError):
    """A `-p` pipeline that does not parse, names an unknown pass or gives an
    option a value of the wrong type."""


def build_passes(available: dict, spec: str) -> tuple[ModulePass, ...]:
    """The passes of pipeline `spec`; every problem is a `PipelineError` naming the
    pass (and option) and, for an unknown name, the close registered names."""
    import dataclasses
    import difflib
    from typing import get_type_hints

    from xdsl.utils.arg_spec import _convert_arg_to_type, parse_pipeline
    from xdsl.utils.exceptions import ArgSpecParseError

    try:
        specs = tuple(parse_pipeline(spec))
    except ArgSpecParseError as e:
        detail = str(e).replace("Error parsing pass pipeline specification:", "").strip()
        raise PipelineError(f"pipeline '{spec}' does not parse:\n{detail}") from None
    out = []
    for s in specs:
        if s.name not in available:
            close = difflib.get_close_matches(s.name, list(available), n=3, cutoff=0.6)
            hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
                    else "; `qcc-opt --list-passes` lists them")
            raise PipelineError(f"unknown pass '{s.name}'{hint}")
        cls = available[s.name]()
        hints = get_type_hints(cls)
        fields = {fl.name for fl in dataclasses.fields(cls) if fl.init and fl.name != "name"}
        for option, value in s.normalize_parameter_names().parameters.items():
            if option not in fields:
                close = difflib.get_close_matches(option, sorted(fields), n=3, cutoff=0.6)
                known = ", ".join(sorted(fields)) or "none"
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PipelineError(f"pass '{s.name}': no option '{option}' ({hint}"
                                    f"options: {known})")
            try:
                _convert_arg_to_type(value, hints[option])
            except (ValueError, TypeError):
                given = ", ".join(repr(v) for v in value) or "nothing"
                raise PipelineError(f"pass '{s.name}': option '{option}' expects "
                                    f"{_type_name(hints[option])}, given {given}") from None
        try:
            out.append(cls.from_pass_spec(s))
        except (ValueError, TypeError) as e:
            msg = str(e) if str(e).startswith(s.name) else f"pass '{s.name}': {e}"
            raise PipelineError(msg) from None
    return tuple(out)


def _type_name(hint: object) -> str:
    text = str(hint).replace("<class '", "").replace("'>", "")
    return text.replace(" | None", "").replace("typing.", "")


def _verify(module: ModuleOp, name: str, text: str, line_offset: int) -> None:
    """Verification whose error names the file and the line of the failing op
    (`model.mlir:12: 'qnn.conv': ...`)."""
    from xdsl.utils.exceptions import VerifyException

    try:
        module.verify()
    except VerifyException as e:
        line = _line_of(module, text)
        where = f"{name}:{line + line_offset}" if line else name
        msg = str(e).strip().splitlines()
        raise VerifyException(f"{where}: {msg[0] if msg else 'verification failed'}"
                              ) from None


def _line_of(module: ModuleOp, text: str) -> int | None:
    """The 1-based line of the first op that fails its own verifier: the k-th op of
    that name in the walk is the k-th occurrence of the name in the text."""
    import re

    seen: dict[str, int] = {}
    for op in module.walk():
        k = seen[op.name] = seen.get(op.name, 0) + 1
        try:
            op.verify_()
        except Exception:
            pattern = rf'(?<![\w."]){re.escape(op.name)}(?![\w.])|"{re.escape(op.name)}"'
            matches = [m for m in re.finditer(pattern, text)  # not in // comments
                       if "//" not in text[text.rfind("\n", 0, m.start()) + 1:m.start()]]
            if len(matches) < k:
                return None
            return text.count("\n", 0, matches[k - 1].start()) + 1
    return None


class _AtomicText:
    """A text stream that replaces its file (through `qcc.fileio`) on `commit`."""

    def __init__(self, path: str) -> None:
        import io

        from qcc.fileio import check_output

        self.path = check_output(path)
        self.buffer = io.StringIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # xDSL closes the output even after an error: `commit` writes it

    def commit(self) -> None:
        from qcc.fileio import write_file

        write_file(self.path, self.buffer.getvalue())


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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
