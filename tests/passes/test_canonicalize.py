"""canonicalize keeps the numbers: run each lit case before and after on the runtime."""

from pathlib import Path

import numpy as np
import pytest

from qcc import ir, passes
from qcc.runtime import run
from qcc.testing.litcases import as_main as _as_main
from qcc.testing.litcases import random_inputs as _random_inputs

LIT = Path(__file__).parents[1] / "lit" / "passes" / "canonicalize.mlir"
CASES = [c for c in LIT.read_text().split("// -----") if "func.func" in c]






@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_outputs_before_and_after(case):
    rng = np.random.default_rng(case)
    before = ir.parse_module(_as_main(CASES[case]))
    inputs = _random_inputs(before, rng)
    expected = run(before, inputs)
    after = ir.parse_module(_as_main(CASES[case]))
    passes.run(after, "canonicalize")
    got = run(after, inputs)
    assert expected.keys() == got.keys()
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=0)
    assert len(list(after.walk())) <= len(list(before.walk()))


def test_folding_matches_hand_calculation():
    g = ir.Graph()
    x = g.input("x", (2,))
    from qcc.dialects import qnn

    a = g.const(np.array([1.0, 2.0], np.float32))
    b = g.const(np.array([3.0, 5.0], np.float32))
    s = g.add(qnn.MulOp.make(a, b))
    y = g.add(qnn.AddOp.make(x, s))
    m = g.finish({"y": y})
    passes.run(m, "canonicalize")
    consts = [op for op in m.walk() if isinstance(op, qnn.ConstantOp)]
    assert len(consts) == 1
    np.testing.assert_array_equal(ir.array_of(consts[0]), [3.0, 10.0])
