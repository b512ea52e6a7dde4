"""qcc-calibrate: the lit case's numbers by hand, and the runtime before and after."""

from pathlib import Path

import numpy as np
import pytest

from qcc import ir, passes
from qcc.dialects import quant
from qcc.quant.calib_data import CalibrationError
from qcc.runtime import run

LIT = Path(__file__).parents[1] / "lit" / "passes"
CASE = (LIT / "qcc-calibrate.mlir").read_text().split("// -----")[0]
DATA = LIT / "Inputs" / "qcc-calibrate.npz"


def test_fake_quant_graph_is_the_hand_computed_quantization():
    before = ir.parse_module(CASE)
    after = ir.parse_module(CASE)
    passes.run(after, f'qcc-calibrate{{data="{DATA}"}}')
    fq = {op.attributes["id"].data: op.properties["qtype"]
          for op in after.walk() if isinstance(op, quant.FakeQuantOp)}
    assert fq["fc.input"].scale == 4 / 255 and fq["fc.input"].zero_point == -64
    np.testing.assert_allclose(fq["fc.weight"].scales, [1.27 / 127, 0.635 / 127], rtol=1e-7)
    w = np.array([[0.5, -1.27, 0.25, 0.0], [0.1, 0.2, -0.3, 0.635]], np.float32)
    x = np.array([[0.3, -0.7, 2.9, 1.234], [-5.0, 0.0, 3.5, 0.01]], np.float32)
    # by hand: x / s rounded half to even, clipped to [-128, 127] around z = -64
    s = np.float32(4 / 255)
    xq = (np.clip(np.rint(x / s) - 64, -128, 127) + 64) * s
    ws = np.array([[1.27 / 127], [0.635 / 127]], np.float32)
    wq = np.clip(np.rint(w / ws), -127, 127) * ws
    got = run(after, {"x": x})
    np.testing.assert_allclose(next(iter(got.values())), xq @ wq.T, rtol=1e-6, atol=1e-6)
    # and the float graph differs from it by no more than the quantization error
    want = next(iter(run(before, {"x": np.clip(x, -1, 3)}).values()))
    assert np.max(np.abs(next(iter(got.values())) - want)) < 0.05


@pytest.mark.parametrize("kind,old,known", [
    ("activation", 'algorithm = "minmax"', "hfmg, ifmr, kl, minmax, mse, percentile"),
    ("weight", 'algorithm = "arq"', "arq"),
])
def test_unknown_algorithm_is_named_with_the_registry_names(kind, old, known):
    """The verifier leaves algorithm names to the registry; qcc-calibrate names the
    observer, the unknown algorithm and the known ones (qcc.quant.algorithms)."""
    case = CASE.replace(old, 'algorithm = "magic"')
    assert case != CASE
    m = ir.parse_module(case)
    with pytest.raises(CalibrationError,
                       match=rf"no {kind} algorithm 'magic' \(known: {known}\)"):
        passes.run(m, f'qcc-calibrate{{data="{DATA}"}}')
