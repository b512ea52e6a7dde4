"""The condition language of target descriptions: the facts a rule can ask about a
layer (`FACTS`, `layer_facts`), expression trees (printed back as .td text) and their
evaluation (no Python eval). Parsing and type checking live in `loader.py`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Attribute, Operation

from qcc.dialects.layers import WEIGHTED, layer_of
from qcc.errors import QccError


class OpTable(Protocol):
    """The part of a `Target` that layer facts read: its framework op tables."""

    def lists(self, framework: str, source_op: str, op: str) -> bool: ...


class TargetError(QccError):
    """A bad target description (`path:line:col: ...`) or a rule that cannot be evaluated."""


# ------------------------------------------------------------------ facts

_CONV, _POOL = ("qnn.conv", "qnn.conv_transpose"), ("qnn.avg_pool",)
_MM = ("qnn.dense", "qnn.matmul")
FACTS: dict[str, tuple[str, tuple[str, ...] | None, str]] = {
    "op": ("str", None, 'the layer op, "qnn.conv"'),
    "source": ("str", None, 'its `source` attribute, "onnx.Conv" ("" when absent)'),
    "framework": ("str", None, "framework of origin (source, else the module's qcc.framework)"),
    "source_op": ("str", None, 'the framework op, "Conv" ("" when unknown)'),
    "in_framework_table": ("bool", None, "source -> op is in the target's framework table"),
    "rank": ("num", None, "rank of the (first) input"),
    "in_channels": ("num", None, "input channels: dim 1, or the last dim for dense/matmul"),
    "out_channels": ("num", None, "output channels: dim 1, or the last dim for dense/matmul"),
    "has_bias": ("bool", WEIGHTED, "the layer has a bias operand"),
    "groups": ("num", _CONV, "convolution groups"),
    "spatial_dims": ("num", _CONV + _POOL, "number of spatial dims (2 for NCHW)"),
    "kernel": ("num[]", _CONV + _POOL, "kernel size per spatial dim"),
    "strides": ("num[]", _CONV + _POOL, "strides per spatial dim"),
    "dilations": ("num[]", _CONV + _POOL, "dilations per spatial dim (depth first for 3-d)"),
    "pads": ("num[]", _CONV + _POOL, "pads, all begins then all ends"),
    "pad_mode": ("str", _CONV, 'attribute pad_mode ("zeros" when absent)'),
    "transpose_a": ("bool", _MM, "attribute transpose_a (false when absent)"),
    "transpose_b": ("bool", _MM, "attribute transpose_b (false when absent)"),
    "adj_x": ("bool", _MM, "attribute adj_x (false when absent)"),
    "adj_y": ("bool", _MM, "attribute adj_y (false when absent)"),
}
"""Fact name -> (type, the layer ops that have it (None: all), meaning)."""

FUNCTIONS = {"any": ("bool[]", "bool"), "all": ("bool[]", "bool"), "len": ("[]", "num"),
             "min": ("num[]", "num"), "max": ("num[]", "num"), "sum": ("num[]", "num")}
TYPE_NAMES = {"num": "a number", "bool": "a boolean", "str": "a string",
              "num[]": "a list of numbers", "bool[]": "a list of booleans",
              "str[]": "a list of strings"}


def _shape(value) -> tuple[int, ...]:
    t = value.type
    return tuple(t.get_shape()) if isinstance(t, TensorType) else ()


def _attr_value(attr: Attribute | None) -> object:
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, IntegerAttr):
        v = attr.value.data
        return bool(v) if isinstance(attr.type, IntegerType) and attr.type.width.data == 1 else v
    if isinstance(attr, FloatAttr):
        return attr.value.data
    if isinstance(attr, DenseArrayBase):
        return list(attr.get_values())
    if isinstance(attr, UnitAttr):
        return True
    return None


def _get(op: Operation, name: str) -> object:
    return _attr_value(op.attributes.get(name) or op.properties.get(name))


def layer_facts(op: Operation, target: OpTable, module_framework: str = "") -> dict[str, object]:
    """Every fact of layer `op` that applies to its op kind."""
    attr = _get(op, "source")
    source = attr if isinstance(attr, str) else ""
    framework, _, source_op = source.partition(".") if source else (module_framework, "", "")
    layer = layer_of(op)
    assert layer is not None, f"{op.name} is not a layer op"
    rank = len(_shape(op.operands[0]))
    f: dict[str, object] = {
        "op": op.name, "source": source, "framework": framework, "source_op": source_op,
        "in_framework_table": target.lists(framework, source_op, op.name), "rank": rank,
        "in_channels": layer.in_channels, "out_channels": layer.out_channels}
    if op.name in _CONV + _POOL:
        d = rank - 2
        f |= {"spatial_dims": d, "strides": _get(op, "strides"), "pads": _get(op, "pads"),
              "dilations": _get(op, "dilations") or [1] * d}
    if op.name in _CONV and layer.weight is not None:
        f |= {"groups": layer.groups, "kernel": list(_shape(layer.weight)[2:]),
              "pad_mode": _get(op, "pad_mode") or "zeros"}
    if op.name in _POOL:
        f["kernel"] = _get(op, "kernel")
    if op.name in _MM:
        f |= {k: bool(_get(op, k)) for k in ("transpose_a", "transpose_b", "adj_x", "adj_y")}
    if layer.has_weight:
        f["has_bias"] = layer.bias is not None
    f["_op"] = op
    return f


# ---------------------------------------------------------- expressions

_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4,
         "not in": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}


class Expr:
    prec = 8

    def wrap(self, min_prec: int) -> str:
        return f"({self})" if self.prec < min_prec else str(self)


@dataclass(frozen=True)
class Const(Expr):
    value: Any

    def __str__(self) -> str:
        v = self.value
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, float) and not re.fullmatch(r"[0-9]+\.[0-9]+", repr(v)):
            text = format(Decimal(v), "f")  # the grammar has no exponents: 1e-20, 1e+16
            return text if "." in text else text + ".0"
        return repr(v)


@dataclass(frozen=True)
class Fact(Expr):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListOf(Expr):
    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.items)) + "]"


@dataclass(frozen=True)
class Index(Expr):
    base: Expr
    index: Expr

    def __str__(self) -> str:
        return f"{self.base.wrap(8)}[{self.index}]"


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f"{self.func}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "not" or "-"
    operand: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        return 3 if self.op == "not" else 7

    def __str__(self) -> str:
        return f"not {self.operand.wrap(3)}" if self.op == "not" else f"-{self.operand.wrap(7)}"


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        return _PREC[self.op]

    def __str__(self) -> str:
        p = self.prec
        left = self.lhs.wrap(p + 1 if p == 4 else p)  # comparisons do not chain
        return f"{left} {self.op} {self.rhs.wrap(p + 1)}"


def _elementwise(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if isinstance(a, list):
        return [fn(x, b) for x in a]
    if isinstance(b, list):
        return [fn(a, y) for y in b]
    return fn(a, b)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "%": lambda a, b: a % b}
_CALLS: dict[str, Callable[[list], Any]] = {"any": any, "all": all, "len": len, "min": min,
                                            "max": max, "sum": sum}


def evaluate(expr: Expr, facts: Mapping[str, object]) -> Any:
    """The value of `expr` for a layer with `facts` (`layer_facts`); TargetError when
    an index is out of range or an attribute has the wrong type."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Fact):
        return facts[expr.name]
    if isinstance(expr, ListOf):
        return [evaluate(e, facts) for e in expr.items]
    if isinstance(expr, Index):
        base, i = evaluate(expr.base, facts), evaluate(expr.index, facts)
        if not isinstance(i, int) or not -len(base) <= i < len(base):
            raise TargetError(f"{expr}: index {i} is out of range ({expr.base} = {base})")
        return base[i]
    if isinstance(expr, Unary):
        v = evaluate(expr.operand, facts)
        return (not v) if expr.op == "not" else -v
    if isinstance(expr, Call):
        if expr.func == "attr":
            return _eval_attr(expr, facts)
        values = evaluate(expr.args[0], facts)
        if expr.func in ("min", "max") and not values:
            raise TargetError(f"{expr}: {expr.func} of an empty list")
        return _CALLS[expr.func](values)
    assert isinstance(expr, Binary)
    if expr.op in ("and", "or"):
        lhs = evaluate(expr.lhs, facts)
        return evaluate(expr.rhs, facts) if bool(lhs) == (expr.op == "and") else lhs
    a, b = evaluate(expr.lhs, facts), evaluate(expr.rhs, facts)
    if expr.op in ("in", "not in"):
        return (a in b) == (expr.op == "in")
    if expr.op in ("/", "%") and 0 in (b if isinstance(b, list) else [b]):
        raise TargetError(f"{expr}: division by zero")
    return _elementwise(_BINARY[expr.op], a, b)


def _eval_attr(expr: Call, facts: Mapping[str, object]) -> Any:
    name, default = (a.value for a in expr.args if isinstance(a, Const))
    value = _get(facts["_op"], name)  # type: ignore[arg-type]
    if value is None:
        return default
    if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, str if isinstance(default, str) else (int, float)):
        raise TargetError(f"{expr}: the attribute is {value!r}, not of the default's type")
    return value
