"""Shared machinery of qcc's value-semantics ops: attribute helpers and type inference.

Every qnn op computes its result types from its operand types and properties
(`infer`). Builders call it so that frontends and passes never compute shapes by
hand, and `verify_` calls it again so that a result type that disagrees with the
operands is a verifier error naming the rule that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    BoolAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    f64,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, ParsePropInAttrDict
from xdsl.utils.exceptions import VerifyException

from qcc.errors import QccError


class ShapeError(QccError, VerifyException):
    """An operand or property does not fit the op's rule."""


# ---------------------------------------------------------------- attributes


def ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def int_attr(value: int) -> IntegerAttr:
    return IntegerAttr(int(value), i64)


def float_attr(value: float) -> FloatAttr:
    return FloatAttr(float(value), f64)


def str_attr(value: str) -> StringAttr:
    return StringAttr(value)


def bool_attr(value: bool) -> IntegerAttr:
    return BoolAttr.from_bool(bool(value))


def get_ints(attr: Attribute | None, default: Sequence[int] = ()) -> tuple[int, ...]:
    if attr is None:
        return tuple(default)
    assert isinstance(attr, DenseArrayBase)
    return tuple(int(v) for v in attr.get_values())


def get_int(attr: Attribute | None, default: int = 0) -> int:
    if attr is None:
        return default
    assert isinstance(attr, IntegerAttr)
    return int(attr.value.data)


def get_float(attr: Attribute | None, default: float = 0.0) -> float:
    if attr is None:
        return default
    if isinstance(attr, IntegerAttr):
        return float(attr.value.data)
    assert isinstance(attr, FloatAttr)
    return float(attr.value.data)


def get_str(attr: Attribute | None, default: str = "") -> str:
    if attr is None:
        return default
    assert isinstance(attr, StringAttr)
    return attr.data


def get_bool(attr: Attribute | None, default: bool = False) -> bool:
    if attr is None:
        return default
    assert isinstance(attr, IntegerAttr)
    return bool(attr.value.data)


def to_attr(value: object) -> Attribute:
    """A Python value as the attribute qcc uses for it (tuple -> array<i64>)."""
    if isinstance(value, Attribute):
        return value
    if isinstance(value, bool):
        return bool_attr(value)
    if isinstance(value, int):
        return int_attr(value)
    if isinstance(value, float):
        return float_attr(value)
    if isinstance(value, str):
        return str_attr(value)
    if isinstance(value, list | tuple):
        return ints(value)
    raise TypeError(f"no attribute for {value!r}")


# --------------------------------------------------------------------- types


def shape_of(t: Attribute) -> tuple[int, ...]:
    if not isinstance(t, TensorType):
        raise ShapeError(f"expected a ranked tensor, got {t}")
    shape = tuple(t.get_shape())
    if any(d < 0 for d in shape):
        raise ShapeError(f"dynamic dimensions are not supported: {t}")
    return shape


def tensor(shape: Sequence[int], element_type: Attribute) -> TensorType:
    return TensorType(element_type, [int(d) for d in shape])


def like(t: Attribute, shape: Sequence[int]) -> TensorType:
    assert isinstance(t, TensorType)
    return tensor(shape, t.element_type)


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Numpy broadcasting of static shapes."""
    rank = max(len(s) for s in shapes)
    out: list[int] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError(
                f"shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# ----------------------------------------------------------------------- ops


class QnnOp(IRDLOperation):
    """Base of the value-semantics ops: generic syntax, inferred result types.

    `qnn.add %a, %b {prop = ...} : (tensor<..>, tensor<..>) -> tensor<..>`
    """

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format: ClassVar[str | None] = (
        "operands attr-dict `:` functional-type(operands, results)")

    # Properties that builders accept as keyword arguments, with defaults.
    PROPS: ClassVar[dict[str, object]] = {}

    @classmethod
    def infer(
        cls, types: Sequence[Attribute], props: dict[str, Attribute]
    ) -> list[Attribute]:
        """Result types from operand types and properties (raise ShapeError)."""
        raise NotImplementedError

    @classmethod
    def make(
        cls,
        *operands: SSAValue | IRDLOperation | None,
        name: str | None = None,
        **props: object,
    ):
        """Build with inferred result types; `None` operands are absent optionals."""
        values = [o.results[0] if isinstance(o, IRDLOperation) else o for o in operands]
        present = [v for v in values if v is not None]
        properties: dict[str, Attribute] = {}
        for key, default in cls.PROPS.items():
            value = props.pop(key, default)
            if value is not None:
                properties[key] = to_attr(value)
        if props:
            raise TypeError(f"{cls.name}: unknown properties {sorted(props)}")
        result_types = cls.infer([v.type for v in present], properties)
        attributes = {"name": StringAttr(name)} if name else {}
        op = cls.__new__(cls)
        IRDLOperation.__init__(
            op,
            operands=cls._segments(values),
            result_types=cls._result_segments(result_types),
            properties=properties,
            attributes=attributes,
        )
        return op

    @classmethod
    def _segments(cls, values: list[SSAValue | None]) -> list:
        """Operand list shaped as the op's operand definitions."""
        defs = cls.get_irdl_definition().operands
        if len(defs) == 1 and _is_variadic(defs[0][1]) and not _is_optional(defs[0][1]):
            return [values]
        return values + [None] * (len(defs) - len(values))

    @classmethod
    def _result_segments(cls, types: list[Attribute]) -> list:
        defs = cls.get_irdl_definition().results
        if len(defs) == 1 and _is_variadic(defs[0][1]):
            return [types]
        return list(types)

    def verify_(self) -> None:
        types = [o.type for o in self.operands]
        try:
            expected = self.infer(types, dict(self.properties))
        except ShapeError as e:
            raise VerifyException(f"'{self.name}': {e}") from None
        actual = [r.type for r in self.results]
        if expected != actual:
            raise VerifyException(
                f"'{self.name}': result type {_fmt(actual)} does not match the "
                f"inferred type {_fmt(expected)}"
            )


def _is_variadic(d: object) -> bool:
    from xdsl.irdl import VariadicDef

    return isinstance(d, VariadicDef)


def _is_optional(d: object) -> bool:
    from xdsl.irdl import OptionalDef

    return isinstance(d, OptionalDef)


def _fmt(types: Sequence[Attribute]) -> str:
    return ", ".join(str(t) for t in types)
