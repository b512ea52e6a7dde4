"""Helpers for the pytest half of a pass's tests: run each case of its lit file
before and after the pass on the runtime (STYLE: FileCheck shows the shape of the
output, the runtime shows the numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from qcc import ir
from qcc.passes.common import tensor_type_of


def lit_cases(path: str | Path) -> list[str]:
    """The `// -----` chunks of a lit file that hold a function."""
    return [c for c in Path(path).read_text().split("// -----") if "func.func" in c]


def as_main(text: str) -> str:
    """The chunk with its (first) function renamed `@main`, which the runtime runs."""
    return re.sub(r"^func\.func @\w+", "func.func @main", text, count=1, flags=re.M)


def random_inputs(module: ModuleOp, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal float32 arrays for every input of `@main`, by name."""
    fn = ir.main_func(module)
    names, _ = ir.io_names(fn)
    return {n: rng.standard_normal(tensor_type_of(a).get_shape()).astype(np.float32)
            for n, a in zip(names, fn.body.block.args, strict=True)}


def assert_close(got: dict, want: dict, rtol: float = 1e-5) -> None:
    """Same output names; values equal within `rtol`, relative to each output's
    largest magnitude."""
    assert got.keys() == want.keys()
    for k in want:
        scale = float(np.abs(want[k]).max())
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * scale, err_msg=k)
