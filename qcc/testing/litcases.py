"""Helpers for the pytest half of a pass's tests: run each case of its lit file
before and after the pass on the runtime (STYLE: FileCheck shows the shape of the
output, the runtime shows the numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from qcc import ir
from qcc.dialects.base import DYN
from qcc.passes.common import tensor_type_of


def lit_cases(path: str | Path) -> list[str]:
    """The `// -----` chunks of a lit file that hold a function."""
    return [c for c in Path(path).read_text().split("// -----") if "func.func" in c]


def as_main(text: str) -> str:
    """The chunk with its (first) function renamed `@main`, which the runtime runs."""
    return re.sub(r"^func\.func @\w+", "func.func @main", text, count=1, flags=re.M)


def random_inputs(module: ModuleOp, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal float32 arrays for every input of `@main`, by name; the k-th
    symbolic dim of an input is 3 + 2k (distinct sizes, so that a rewrite mixing
    them up shows)."""
    fn = ir.main_func(module)
    names, _ = ir.io_names(fn)
    out = {}
    for n, a in zip(names, fn.body.block.args, strict=True):
        shape, k = [], 0
        for d in tensor_type_of(a).get_shape():
            shape.append(3 + 2 * k if d == DYN else d)
            k += d == DYN
        out[n] = rng.standard_normal(shape).astype(np.float32)
    return out


def assert_close(got: dict, want: dict, rtol: float = 1e-5) -> None:
    """Same output names; values equal within `rtol`, relative to each output's
    largest magnitude."""
    assert got.keys() == want.keys()
    for k in want:
        scale = float(np.abs(want[k]).max())
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * scale, err_msg=k)
