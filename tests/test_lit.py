"""Run the lit + FileCheck suite (tests/lit) in this process, one pytest item a file.

`lit tests/lit` runs the same files through lit's shell (tests/lit/lit.cfg); each RUN
line there starts new interpreters, which made the suite take most of a minute. Here
the RUN lines are interpreted by a small shell that knows exactly the commands the
suite uses (`qcc-opt`, `filecheck`, `not`, `rm -rf`, `mkdir -p`, `ls`, `diff`), pipes,
`&&` and the redirections `>FILE`, `>/dev/null`, `2>&1`; `qcc-opt` and `filecheck` run
their `main()` in-process. A command this shell does not know fails the test, so the
two ways of running cannot silently disagree.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from filecheck.main import main as filecheck_main

from qcc.tools.opt import main as qcc_opt_main

LIT_DIR = Path(__file__).parent / "lit"
CASES = sorted(p for p in LIT_DIR.rglob("*.mlir") if "Inputs" not in p.parts
               and "Output" not in p.parts)


def run_lines(path: Path) -> list[str]:
    """The file's RUN commands, with `\\` continuations joined."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        marker = raw.find("RUN:")
        if marker < 0:
            continue
        text = raw[marker + 4:].strip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        lines.append(pending + text)
        pending = ""
    return lines


def substitute(line: str, path: Path, tmp: Path) -> str:
    # Longest first, as lit.cfg orders them.
    line = line.replace("%roundtrip", "qcc-opt %s | qcc-opt")
    return (line.replace("%s", str(path)).replace("%S", str(path.parent))
            .replace("%t", str(tmp)))


def split_top(tokens: list[str], sep: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for tok in tokens:
        if tok == sep:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


class Shell:
    def __init__(self, cwd: Path):
        self.cwd = cwd

    def run(self, line: str) -> tuple[int, str]:
        """Run one RUN line; returns (status, transcript)."""
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&<>")
        lexer.whitespace_split = True
        tokens = self._fix_redirections(list(lexer))
        log = []
        for command in split_top(tokens, "&&"):
            status, out = self._pipeline(split_top(command, "|"))
            log.append(f"$ {' '.join(command)}\n{out}")
            if status != 0:
                return status, "\n".join(log)
        return 0, "\n".join(log)

    @staticmethod
    def _fix_redirections(tokens: list[str]) -> list[str]:
        # shlex splits `2>&1` into `2`, `>&`, `1`: glue redirections back together.
        out: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "2" and i + 2 < len(tokens) and tokens[i + 1] == ">&" and tokens[i + 2] == "1":
                out.append("2>&1")
                i += 3
                continue
            if tok in (">", "2>") or (tok == "2" and i + 1 < len(tokens) and tokens[i + 1] == ">"):
                if tok == "2":
                    tok, i = "2>", i + 1
                out.append(tok + tokens[i + 1])
                i += 2
                continue
            out.append(tok)
            i += 1
        return out

    def _pipeline(self, stages: list[list[str]]) -> tuple[int, str]:
        data, status, terminal = "", 0, []
        for argv in stages:
            status, data, stderr = self._command(argv, data)
            terminal.append(stderr)
        return status, "".join(terminal) + data

    def _command(self, argv: list[str], stdin: str) -> tuple[int, str, str]:
        """Run one command; returns (status, what goes down the pipe, what reaches
        the terminal's stderr)."""
        invert = argv[:1] == ["not"]
        if invert:
            argv = argv[1:]
        words = [a for a in argv if not a.startswith(("2>", ">"))]
        redirs = [a for a in argv if a.startswith(("2>", ">"))]
        status, out, err = self._exec(words, stdin)
        if invert:
            status = 1 if status == 0 else 0
        # Redirections apply left to right, as in sh: `2>&1 >/dev/null` sends stderr
        # down the pipe and drops stdout.
        dest = {1: "|", 2: "tty"}
        for r in redirs:
            if r == "2>&1":
                dest[2] = dest[1]
            elif r.startswith("2>"):
                dest[2] = r[2:]
            else:
                dest[1] = r[1:]
        piped, terminal = "", ""
        for fd, text in ((1, out), (2, err)):
            where = dest[fd]
            if where == "|":
                piped += text
            elif where == "tty":
                terminal += text
            elif where != "/dev/null":
                Path(self.cwd, where).write_text(text)
        return status, piped, terminal

    def _exec(self, words: list[str], stdin: str) -> tuple[int, str, str]:
        name, args = words[0], words[1:]
        if name == "qcc-opt":
            return _in_process(qcc_opt_main, args, stdin)
        if name == "filecheck":
            return _in_process(filecheck_main, ["filecheck", *args], stdin)
        if name == "rm" and args[:1] == ["-rf"]:
            for a in args[1:]:
                shutil.rmtree(a, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.remove(a)
            return 0, "", ""
        if name == "mkdir" and args[:1] == ["-p"]:
            for a in args[1:]:
                os.makedirs(a, exist_ok=True)
            return 0, "", ""
        if name == "ls":
            return 0, "".join(f"{n}\n" for n in sorted(os.listdir(args[0]))), ""
        if name == "diff":
            same = Path(args[0]).read_bytes() == Path(args[1]).read_bytes()
            return (0, "", "") if same else (1, f"{args[0]} and {args[1]} differ\n", "")
        raise AssertionError(f"the in-process lit shell does not know {name!r}")


def _in_process(main, argv: list[str], stdin: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    real_stdin = sys.stdin
    sys.stdin = fake_stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = real_stdin
    return int(status or 0), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(LIT_DIR)))
def test_lit(path: Path, tmp_path: Path):
    shell = Shell(tmp_path)
    lines = run_lines(path)
    assert lines, f"{path} has no RUN line"
    for line in lines:
        status, log = shell.run(substitute(line, path, tmp_path / "t"))
        assert status == 0, f"RUN: {line}\n{log[-4000:]}"


BAD_CHECK = """\
// RUN: qcc-opt %s | filecheck %s
// CHECK: qnn.this_op_is_not_there
func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  %y = qnn.relu %x : (tensor<2xf32>) -> tensor<2xf32>
  func.return %y : tensor<2xf32>
}
"""


@pytest.mark.parametrize("run, ok", [
    ("qcc-opt %s | filecheck %s", False),           # the CHECK line does not match
    ("not qcc-opt %s", False),                      # `not` of a success fails
    ("qcc-opt %s > %t.out && diff %t.out %t.out", True),
    ("qcc-opt %s -p no-such-pass 2>&1 >/dev/null | filecheck %s --check-prefix=E", True),
    ("qcc-opt %s -p no-such-pass 2>/dev/null | filecheck %s --check-prefix=E", False),
])
def test_the_shell_fails_when_lit_would(tmp_path: Path, run: str, ok: bool):
    src = tmp_path / "case.mlir"
    src.write_text(BAD_CHECK + "// E: error\n")
    status, log = Shell(tmp_path).run(substitute(run, src, tmp_path / "t"))
    assert (status == 0) == ok, log
