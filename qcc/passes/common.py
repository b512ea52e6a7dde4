"""Small helpers the passes share: an op's name and label, the names of a module's
layers (which the config uses too), tensor types, float32 tensors, and a layer's
config entry with a target's decisions on the op applied."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from xdsl.dialects.builtin import DictionaryAttr, Float32Type, IntegerAttr, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc.dialects import qnn

FLOAT_ATTR = "qcc.float"
"""On a layer a target keeps float (`qcc-legalize-ascend`): "<rule>: <message>"."""

LEGAL_ATTR = "qcc.legal"
"""On a layer a target quantizes: the settings its quant block demands, as
{weight = {bits, symmetric, channel_wise}, activation = {bits[, symmetric]}}."""


def op_name(op: Operation) -> str | None:
    """The op's `name` attribute (the source model's node or layer name), if any."""
    name = op.attributes.get("name")
    return name.data if isinstance(name, StringAttr) else None


def op_label(op: Operation) -> str:
    """`qnn.conv 'conv1'` (or just the op kind when it has no name), for messages."""
    name = op_name(op)
    return f"{op.name} '{name}'" if name else op.name


def tensor_type_of(value: SSAValue) -> TensorType:
    """The type of `value`, which the ops defining and using it require to be a tensor."""
    assert isinstance(value.type, TensorType)
    return value.type


def is_f32(value: SSAValue) -> bool:
    """A float32 ranked tensor."""
    return isinstance(value.type, TensorType) and isinstance(value.type.element_type,
                                                             Float32Type)


def quantizable_layers(module) -> dict[str, Any]:
    """The module's layer ops (`qnn.LAYER_OPS`) by the name configs and reports use,
    in walk order: the op's `name`, else `<kind>_<index>`; repeats get `_1`, `_2`..."""
    layers: dict[str, Any] = {}
    for i, op in enumerate(o for o in module.walk() if isinstance(o, qnn.LAYER_OPS)):
        attr = op.attributes.get("name")
        base = attr.data if isinstance(attr, StringAttr) and attr.data else \
            f"{op.name.removeprefix('qnn.')}_{i}"
        name, k = base, 0
        while name in layers:
            k += 1
            name = f"{base}_{k}"
        layers[name] = op
    return layers


def decided_entry(op: Operation, entry: dict) -> dict | None:
    """The config entry of layer `op` with the target's decisions on the op applied:
    None when the layer stays float (the config's or the target's choice)."""
    if not entry.get("quantize", False) or FLOAT_ATTR in op.attributes:
        return None
    legal = op.attributes.get(LEGAL_ATTR)
    if not isinstance(legal, DictionaryAttr):
        return entry
    out = copy.deepcopy(entry)
    for part, fields in legal.data.items():
        if out.get(part) is None or not isinstance(fields, DictionaryAttr):
            continue
        for key, value in fields.data.items():
            if not isinstance(value, IntegerAttr):
                continue
            n = value.value.data
            out[part][key] = bool(n) if value.type.width.data == 1 else n
    return out


T = TypeVar("T")


@contextmanager
def scoped(var: ContextVar[T | None], value: T) -> Iterator[T]:
    """`var` set to `value` for the `with` body (what a pipeline run carries: its
    remarks, the files it is supplied)."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)
