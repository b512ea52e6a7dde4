"""The executor: intermediate values on request, buffers released, errors listed."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn
from qcc.runtime import RuntimeError_, compile_module, run


def _module():
    g = ir.Graph()
    x = g.input("x", (2, 3))
    w = g.const(np.arange(12, dtype=np.float32).reshape(4, 3), name="fc.weight")
    h = g.add(qnn.DenseOp.make(x, w, name="fc"))
    r = g.add(qnn.ReluOp.make(h, name="relu"))
    y = g.add(qnn.MulOp.make(r, r, name="square"))
    return g.finish({"y": y})


def test_keep_returns_intermediates_by_name():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    outputs, kept = run(_module(), {"x": x}, keep=["fc", "relu"])
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(kept["fc"], x @ w.T, rtol=1e-6)
    np.testing.assert_allclose(kept["relu"], np.maximum(x @ w.T, 0), rtol=1e-6)
    np.testing.assert_allclose(outputs["y"], kept["relu"] ** 2, rtol=1e-6)


def test_keep_unknown_name_is_an_error():
    with pytest.raises(RuntimeError_, match="no value named 'nope'"):
        run(_module(), {"x": np.zeros((2, 3), np.float32)}, keep=["nope"])


def test_dead_values_are_released():
    plan = compile_module(_module())
    # `fc` dies after relu, `relu` after square: each step frees what it last used.
    freed = [len(step.dead) for step in plan.steps]
    assert freed == [0, 1, 1]
