"""The data-movement kernels with their attributes decoded at plan time
(qcc/runtime/shape_ops.py): the arrays of qnn_eval's formulas (the oracle decodes the
attributes itself on every call), for a symbolic batch, negative axes, a float32
transpose into the step's buffer and an int8 one without, and a plan run twice
(buffers reused)."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.qnn_eval import EVAL
from qcc.runtime import compile_module, execute
from qcc.runtime import ops as K


def _graph(batch, dtype=np.float32):
    g = ir.Graph()
    x = g.input("x", (batch, 6, 4, 5), dtype)
    t = g.add(qnn.TransposeOp.make(x, perm=(0, 2, 3, 1), name="t"))
    r = g.add(qnn.ReshapeOp.make(t, shape=(0 if batch is None else batch, 20, 6),
                                 copy_dims=(0,) if batch is None else None, name="r"))
    parts = g.op(qnn.SplitOp.make(r, axis=-1, sizes=(1, 2, 3), name="s"))
    return g.finish({f"p{i}": v for i, v in enumerate(parts.results)})


def _oracle(module, x):
    ops = {op.name: op for op in module.walk() if op.name.startswith("qnn.")}
    t = EVAL["qnn.transpose"](ops["qnn.transpose"], x)
    r = EVAL["qnn.reshape"](ops["qnn.reshape"], t)
    return EVAL["qnn.split"](ops["qnn.split"], r)


@pytest.mark.parametrize("batch", [3, None], ids=["static", "symbolic"])
@pytest.mark.parametrize("dtype", [np.float32, np.int8], ids=["f32", "i8"])
def test_plan_of_transpose_reshape_split_is_qnn_evals(batch, dtype):
    module = _graph(batch, dtype)
    kinds = {op.name: K.build(op, [None]) for op in module.walk()
             if op.name in ("qnn.transpose", "qnn.reshape", "qnn.split")}
    assert kinds["qnn.transpose"].takes_out == (dtype == np.float32)
    plan = compile_module(module)
    rng = np.random.default_rng(1)
    for n in (3, 3) if batch else (2, 5):
        x = (rng.standard_normal((n, 6, 4, 5)) * 50).astype(dtype)
        got = execute(plan, {"x": x})[0]
        want = _oracle(module, x)
        assert len(got) == 3
        for i, w in enumerate(want):
            assert got[f"p{i}"].dtype == w.dtype and got[f"p{i}"].flags.c_contiguous
            np.testing.assert_array_equal(got[f"p{i}"], w)


def test_a_transpose_that_keeps_the_layout_is_still_a_copy():
    """A transpose moving only a dim of size 1 keeps the memory layout; its result is
    fresh, so the in-place multiply fused after it must not write into the caller's
    input (which a later step reads too). Without a buffer (the product is an output),
    the kernel has to copy."""
    g = ir.Graph()
    x = g.input("x", (1, 5, 4))
    t = g.add(qnn.TransposeOp.make(x, perm=(1, 0, 2), name="t"))
    m = g.add(qnn.MulOp.make(t, g.const(np.float32(2.0)), name="m"))
    s = g.add(qnn.AddOp.make(x, x, name="s"))
    plan = compile_module(g.finish({"m": m, "s": s}))
    xv = np.arange(20, dtype=np.float32).reshape(1, 5, 4)
    keep = xv.copy()
    got = execute(plan, {"x": xv})[0]
    np.testing.assert_array_equal(xv, keep)
    np.testing.assert_array_equal(got["m"], keep.transpose(1, 0, 2) * 2)
    np.testing.assert_array_equal(got["s"], keep + keep)
