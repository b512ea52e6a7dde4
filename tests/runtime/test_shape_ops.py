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
