"""The benchmark scripts of tools/bench/ run and print a well-formed table.

`run_all.py --smoke` runs every bench once on a tiny CNN (fp32 and fake-quant against
onnxruntime, int8 against onnxruntime's QDQ model, calibration, the whole job,
memory). Nothing here asserts a speed: timings live in the benchmarks. What is
checked: the machine report (CPU name and the four features, read independently
from /proc/cpuinfo here), one row per measured ratio, numbers that parse, each ratio
equal to qcc / ort of its row and each `ok` equal to ratio <= target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COLUMNS = ["model", "what", "qcc ms", "ort ms", "ratio", "target", "ok"]
KINDS = ["fp32 / ort fp32", "fake-quant / ort fp32", "int8 deploy / ort int8 QDQ",
         "calibration pass / float inference", "whole PTQ job", "peak RSS"]

pytest.importorskip("onnxruntime.quantization")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@pytest.fixture(scope="module")
def smoke_output() -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, str(ROOT / "tools/bench/run_all.py"), "--smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table(out: str) -> list[list[str]]:
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert lines, out
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    assert cells[0] == COLUMNS
    assert set("".join(cells[1])) <= set("-")
    return cells[2:]


def test_reports_the_machine(smoke_output):
    cpu = next(ln for ln in smoke_output.splitlines() if ln.startswith("# cpu:"))
    flags = _cpu_flags()
    for flag in ("avx2", "fma", "avx512f", "avx512_vnni"):
        assert f"{flag}={'yes' if flag in flags else 'no'}" in cpu
    assert any(ln.startswith("# qcc kernels: int8 ") for ln in smoke_output.splitlines())


def test_one_row_per_ratio(smoke_output):
    rows = _table(smoke_output)
    whats = [r[1] for r in rows]
    for kind in KINDS:
        assert sum(w.startswith(kind) for w in whats) == 1, (kind, whats)
    assert len(rows) == len(KINDS)


def test_rows_are_consistent(smoke_output):
    for model, _what, qcc, ort, ratio, target, ok in _table(smoke_output):
        assert model.startswith("tiny_cnn")
        q, o, r = float(qcc), float(ort), float(ratio)
        assert q > 0 and o > 0
        # the printed times are rounded (to 0.1, or 0.001 below 1): the ratio agrees
        # within that rounding
        dq, do = (0.05 if abs(v) >= 1 else 0.0005 for v in (q, o))
        lo, hi = max(q - dq, 0) / (o + do), (q + dq) / max(o - do, 1e-9)
        assert lo - 0.005 <= r <= hi + 0.005, (qcc, ort, ratio)
        assert target.startswith("<= ")
        bound = float(target[3:])
        assert ok in ("yes", "NO")
        if abs(r - bound) > 0.005:
            assert (ok == "yes") == (r <= bound), (ratio, target, ok)
