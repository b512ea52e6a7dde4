"""The kernel table itself: `Kernel`, `TABLE`, the `kernel` decorator, `build` and the
qnn_eval fallbacks (`qcc.runtime.ops` describes the table and re-exports it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects.builtin import AnyFloat, Float32Type, TensorType
from xdsl.ir import Operation

from qcc.dialects import qnn
from qcc.dialects.qnn_eval import EVAL
from qcc.runtime import kernels as C


def _eltwise_module() -> Any:
    """The compiled element-wise kernels (runtime/_eltwise.pyx), or None when the
    numpy kernels run (QCC_REFERENCE_KERNELS=1, an uncompiled checkout)."""
    if not C.compiled:
        return None
    try:
        from qcc.runtime import _eltwise
    except ImportError:
        return None
    return _eltwise


ELTWISE = _eltwise_module()

Consts = Sequence["np.ndarray | None"]
"""Per operand of the op: its array when it is a constant of the plan, else None."""


@dataclass(frozen=True)
class Kernel:
    """A step's function, built once per op: `fn(*arrays)`, one array per operand,
    returns one array per result (a tuple for several)."""

    fn: Callable[..., Any]
    fresh: bool = False
    """The result is a new array (never a view of an argument): followers may
    update it in place."""
    takes_out: bool = False
    """`fn(*arrays, out=buffer)` writes into a preallocated C-contiguous float32
    buffer of the result's shape and returns it."""


Builder = Callable[[Operation, Consts], "Kernel | Callable[..., Any]"]
TABLE: dict[tuple[type, str | None], Builder] = {}


def kernel(*op_types: type, on: str | None = None) -> Callable[[Builder], Builder]:
    """Register a builder for `op_types` on operands of kind `on` ("float", "int",
    or None for both)."""
    assert on in (None, "float", "int")

    def register(fn: Builder) -> Builder:
        for t in op_types:
            TABLE[(t, on)] = fn
        return fn

    return register


def operand_kind(op: Operation) -> str:
    """"int" when the first operand holds integers or quantized integers."""
    if not op.operands:
        return "float"
    t = op.operands[0].type
    if not isinstance(t, TensorType):
        return "float"
    return "float" if isinstance(t.element_type, AnyFloat) else "int"


def build(op: Operation, consts: Consts) -> Kernel | None:
    """The kernel of `op` (None when the table has none)."""
    builder = TABLE.get((type(op), operand_kind(op))) or TABLE.get((type(op), None))
    if builder is None:
        return None
    k = builder(op, consts)
    return k if isinstance(k, Kernel) else Kernel(k)


def is_f32(value) -> bool:
    t = value.type
    return isinstance(t, TensorType) and isinstance(t.element_type, Float32Type)


def _p(op, key: str):
    return op.properties.get(key)


# Ops of qnn_eval whose result is a new array, never a view of an operand.
_FRESH_EVAL = {"qnn.relu", "qnn.clip", "qnn.add", "qnn.sub", "qnn.mul", "qnn.batch_norm",
               "qnn.scale", "qnn.gelu", "qnn.sigmoid", "qnn.softmax", "qnn.layer_norm",
               "qnn.matmul", "qnn.global_avg_pool"}


def _eval_builder(evaluate: Callable[..., Any], fresh: bool) -> Builder:
    return lambda op, consts: Kernel(partial(evaluate, op), fresh=fresh)


for _op in qnn.QNN_OPS:
    if _op.name in EVAL:
        TABLE[(_op, None)] = _eval_builder(EVAL[_op.name], _op.name in _FRESH_EVAL)
