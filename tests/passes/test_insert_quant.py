"""qcc-insert-quant only adds observers: the graph computes the same numbers."""

from pathlib import Path

import numpy as np
import pytest

from qcc import ir, passes
from qcc.dialects import quant
from qcc.runtime import run

LIT = Path(__file__).parents[1] / "lit" / "passes" / "qcc-insert-quant.mlir"
CASES = [c for c in LIT.read_text().split("// -----") if "func.func" in c]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_outputs_before_and_after(case):
    before = ir.parse_module(CASES[case])
    fn = ir.main_func(before)
    names, _ = ir.io_names(fn)
    rng = np.random.default_rng(case)
    inputs = {n: rng.standard_normal(a.type.get_shape()).astype(np.float32)
              for n, a in zip(names, fn.body.block.args, strict=True)}
    after = ir.parse_module(CASES[case])
    passes.run(after, "qcc-insert-quant")
    assert any(isinstance(op, quant.ObserveOp) for op in after.walk())
    want, got = run(before, inputs), run(after, inputs)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_every_layer_of_a_real_model_observed():
    from qcc.examples import digits
    from qcc.frontends.onnx import load_onnx

    module = load_onnx(digits()[0])
    passes.run(module, "canonicalize,qcc-fuse-bn,qcc-insert-quant")
    ids = sorted(op.id.data for op in module.walk() if isinstance(op, quant.ObserveOp))
    assert ids == sorted(f"{layer}.{kind}" for layer in ("conv1", "conv2", "conv3", "fc")
                         for kind in ("input", "weight"))
