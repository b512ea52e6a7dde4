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


def test_calibrate_canonicalize_realize_int8_realizes_the_layer():
    """The bug's pipeline: canonicalize between qcc-calibrate and qcc-realize-int8
    keeps the weight's fake_quant, so the dense layer runs on int8. Oracle: the
    integer dense worked out in numpy from the hand-computed parameters of
    qcc-calibrate.mlir (input scale 4/255, zero point -64; weight rows 0.01, 0.005)."""
    from qcc.dialects import qnn, quant

    case = next(c for c in CASES if "@weight_observer" in c)
    data = LIT.parent / "Inputs" / "qcc-calibrate.npz"
    m = ir.parse_module(_as_main(case))
    passes.run(m, f'qcc-calibrate{{data="{data}"}},canonicalize,qcc-realize-int8')
    assert not [op for op in m.walk() if isinstance(op, quant.FakeQuantOp)]
    dense = next(op for op in m.walk() if isinstance(op, qnn.DenseOp))
    assert quant.quantized_element(dense.output.type) is not None, "the layer stayed float"

    x = np.array([[0.3, -0.7, 2.9, 1.1], [-1.0, 0.0, 0.5, 3.0]], np.float32)
    (got,) = run(m, {"x": x}).values()
    sx, zx = np.float32(4.0) / np.float32(255.0), -64
    w = np.array([[0.5, -1.27, 0.25, 0.0], [0.1, 0.2, -0.3, 0.635]], np.float32)
    sw = np.array([1.27 / 127, 0.635 / 127], np.float32)
    qx = np.clip(np.rint(x / sx) + zx, -128, 127).astype(np.int64)
    qw = np.clip(np.rint(w / sw[:, None]), -127, 127).astype(np.int64)
    acc = (qx - zx) @ qw.T  # exact integer accumulation
    expected = acc * (np.float64(sx) * sw.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_only_pure_qnn_ops_carry_a_fold_hook():
    from xdsl.traits import HasFolder, Pure

    from qcc.dialects import ascend, qnn, quant

    folding = [op for op in qnn.QNN_OPS if op.has_trait(HasFolder)]
    assert folding and all(op.has_trait(Pure) for op in folding)
    never = [op.name for d in (quant.Quant, ascend.Ascend) for op in d.operations
             if op.has_trait(HasFolder)]
    assert never == [], f"quant/ascend ops must never fold: {never}"
