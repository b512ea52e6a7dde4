"""Symbolic dims kept from two imports of one model at two probe sizes.

A frontend folds shape computations at import, which needs numbers. A model with
symbolic dims is therefore imported twice, each symbolic dim set to a different probe
size (two distinct primes, the same for every input dim of the same name); the
frontend-independent `Generalizer` turns what differs between the two modules into
`?` dims (see `qcc.frontends.onnx_symbolic` for the rules). Used by the ONNX,
TensorFlow and PyTorch frontends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.rewriter import Rewriter

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import (
    DYN,
    QnnOp,
    ShapeError,
    get_ints,
    ints,
    like,
)
from qcc.dialects.qnn_dynamic import VALUE_SHAPED
from qcc.dialects.qnn_shapes import SLICE_END
from qcc.frontends.errors import FrontendError

PROBES = ((53, 59, 61, 67, 71, 73, 79, 83), (89, 97, 101, 103, 107, 109, 113, 127))
"""Sizes a symbolic dim takes in the first and the second import."""

Symbol = tuple[str, int]
"""(input name, axis) of a symbolic input dim."""


def probe_keys(symbols: Mapping[Symbol, str]) -> list[str]:
    """One probe per dim name; an unnamed dim is its own."""
    keys: list[str] = []
    for (inp, axis), name in symbols.items():
        key = name or f"{inp}:{axis}"
        if key not in keys:
            keys.append(key)
    return keys


def probes_for(source: str, symbols: Mapping[Symbol, str], hint: str
               ) -> list[dict[str, int]]:
    """The two probe assignments {dim key: size}."""
    keys = probe_keys(symbols)
    if len(keys) > len(PROBES[0]):
        raise FrontendError(f"{source}: {len(keys)} distinct symbolic dims; qcc handles "
                            f"up to {len(PROBES[0])}: {hint}")
    return [{k: p[i] for i, k in enumerate(keys)} for p in PROBES]


def probe_size(probe: Mapping[str, int], symbols: Mapping[Symbol, str],
               inp: str, axis: int) -> int:
    """The size dim `axis` of input `inp` takes in `probe`."""
    return probe[symbols[(inp, axis)] or f"{inp}:{axis}"]


class Generalizer:
    """Merge two imports of one model at two probe sizes into one module with `?`
    dims. A frontend subclasses it for its error texts and source dim names."""

    def __init__(self, source: str, symbols: Mapping[Symbol, str],
                 probes: Sequence[Mapping[str, int]]) -> None:
        self.source = source
        self.symbols = symbols
        # (size in import 1, size in import 2) -> dim name
        self.names = {(probes[0][k], probes[1][k]): k if ":" not in k else ""
                      for k in probes[0]}

    def run(self, a: ModuleOp, b: ModuleOp) -> ModuleOp:
        fa, fb = ir.main_func(a), ir.main_func(b)
        ops_a, ops_b = list(fa.body.block.ops), list(fb.body.block.ops)
        if [o.name for o in ops_a] != [o.name for o in ops_b]:
            raise FrontendError(f"{self.source}: the graph's ops depend on the symbolic "
                                f"dims {self.dims_text()}: {self.fix()}")
        shape_b: dict[SSAValue, tuple[int, ...]] = {}
        shape_a: dict[SSAValue, tuple[int, ...]] = {}
        for va, vb in zip(fa.body.block.args, fb.body.block.args, strict=True):
            shape_a[va], shape_b[va] = _shape(va), _shape(vb)
        for oa, ob in zip(ops_a, ops_b, strict=True):
            for ra, rb in zip(oa.results, ob.results, strict=True):
                shape_a[ra], shape_b[ra] = _shape(ra), _shape(rb)
        block = fa.body.block
        for arg in list(block.args):
            self._retype(arg, _merge(shape_a[arg], shape_b[arg]), shape_a, shape_b)
        for oa, ob in zip(ops_a, ops_b, strict=True):
            if isinstance(oa, func.ReturnOp):
                continue
            self._op(oa, ob, shape_a, shape_b)
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        fa.function_type = func.FunctionType.from_lists(
            [a.type for a in block.args], [v.type for v in ret.operands])
        fa.arg_attrs = self._dim_attrs(fa.arg_attrs, block.args, shape_a, shape_b)
        fa.res_attrs = self._dim_attrs(fa.res_attrs, ret.operands, shape_a, shape_b)
        return a

    # -- one op

    def _op(self, oa: Operation, ob: Operation, shape_a, shape_b) -> None:
        if isinstance(oa, qnn.ConstantOp):
            if not _same_array(oa, ob):
                self.fail(oa, "this constant is computed at import from the symbolic dims")
            return
        for key, pa in list(oa.properties.items()):
            pb = ob.properties.get(key)
            if pa == pb:
                continue
            oa.properties[key] = self._prop(oa, key, pa, pb, shape_a, shape_b)
        if not isinstance(oa, QnnOp):
            return
        try:
            inferred = oa.infer([v.type for v in oa.operands], dict(oa.properties))
        except ShapeError as e:
            self.fail(oa, f"its shape rule fails on the symbolic dims ({e})")
        for r, t in zip(oa.results, inferred, strict=True):
            merged = _merge(shape_a[r], shape_b[r])
            got = _shape(t)
            if any(m == DYN and g != DYN for m, g in zip(merged, got, strict=True)):
                self.fail(oa, f"its result {_fmt(got)} should vary with the symbolic dims")
            self._retype(r, got, shape_a, shape_b, t)

    def _prop(self, op: Operation, key: str, pa: Attribute, pb: Attribute | None,
              shape_a, shape_b) -> Attribute:
        va, vb = get_ints(pa), get_ints(pb)
        if isinstance(op, VALUE_SHAPED) and key == "dims":  # the values decide: `?`
            return ints(_merge(va, vb))
        if isinstance(op, qnn.ReshapeOp) and key == "shape":
            xa, xb = shape_a[op.operands[0]], shape_b[op.operands[0]]
            target, copy = list(va), []
            for i, (da, db) in enumerate(zip(va, vb, strict=True)):
                if da == db:
                    continue
                if i < len(xa) and da == xa[i] and db == xb[i]:
                    target[i] = 0
                    copy.append(i)
                elif -1 in target:
                    self.fail(op, f"its target shape {list(va)} has two dims computed "
                                  "from the symbolic dims")
                else:
                    target[i] = -1
            if copy:
                op.properties["copy_dims"] = ints(copy)
            return ints(target)
        if isinstance(op, qnn.BroadcastOp) and key == "shape":
            xa, xb = shape_a[op.operands[0]], shape_b[op.operands[0]]
            target = list(va)
            for i, (da, db) in enumerate(zip(va, vb, strict=True)):
                j = i - len(va) + len(xa)
                if da != db:
                    if j < 0 or da != xa[j] or db != xb[j]:
                        self.fail(op, f"its target shape {list(va)} is computed from the "
                                      "symbolic dims")
                    target[i] = -1
            return ints(target)
        if isinstance(op, qnn.ResizeOp) and key == "sizes":
            xa, xb = shape_a[op.operands[0]], shape_b[op.operands[0]]
            sizes = list(va)
            for i, (da, db) in enumerate(zip(va, vb, strict=True)):
                if da != db:
                    if da != xa[i] or db != xb[i]:
                        self.fail(op, "it resizes a symbolic dim")
                    sizes[i] = -1
            return ints(sizes)
        if isinstance(op, qnn.SliceOp) and key in ("starts", "ends"):
            xa, xb = shape_a[op.operands[0]], shape_b[op.operands[0]]
            axes = get_ints(op.properties["axes"])
            out = list(va)
            for i, (ax, da, db) in enumerate(zip(axes, va, vb, strict=True)):
                if da == db:
                    continue
                if da - xa[ax] == db - xb[ax]:
                    k = da - xa[ax]
                    out[i] = SLICE_END if k >= 0 else k
                elif da == -xa[ax] - 1 and db == -xb[ax] - 1:
                    out[i] = -SLICE_END
                else:
                    self.fail(op, f"its {key} are computed from the symbolic dims")
            return ints(out)
        self.fail(op, f"its property '{key}' is computed from the symbolic dims")
        raise AssertionError("unreachable")

    # -- types and names

    def _retype(self, value: SSAValue, shape: Sequence[int], shape_a, shape_b,
                t: Attribute | None = None) -> None:
        new = t if t is not None else like(value.type, shape)
        if new == value.type:
            return
        nv = Rewriter.replace_value_with_new_type(value, new)
        shape_a[nv], shape_b[nv] = shape_a.pop(value), shape_b.pop(value)

    def _dim_attrs(self, attrs: ArrayAttr | None, values: Sequence[SSAValue],
                   shape_a, shape_b) -> ArrayAttr[DictionaryAttr]:
        out: list[DictionaryAttr] = []
        for i, v in enumerate(values):
            old: dict[str, Attribute] = {}
            if attrs is not None and i < len(attrs.data):
                entry = attrs.data[i]
                assert isinstance(entry, DictionaryAttr)
                old = dict(entry.data)
            shape = _shape(v.type)
            if DYN in shape:
                name = old.get("qnn.name")
                label = name.data if isinstance(name, StringAttr) else ""
                names = [self._dim_name(a, b, label, axis) if d == DYN else ""
                         for axis, (d, a, b) in enumerate(
                             zip(shape, shape_a[v], shape_b[v], strict=True))]
                old["qnn.dims"] = ArrayAttr([StringAttr(n) for n in names])
            out.append(DictionaryAttr(old))
        return ArrayAttr(out)

    def _dim_name(self, a: int, b: int, value: str, axis: int) -> str:
        if (a, b) in self.names:
            return self.names[(a, b)]
        return self.source_dim_name(value, axis)

    def source_dim_name(self, value: str, axis: int) -> str:
        """The source's name for dim `axis` of result `value` ("" when unnamed)."""
        return ""

    # -- errors

    def dims_text(self) -> str:
        return ", ".join(f"'{name or '?'}' (input '{inp}' dim {axis})"
                         for (inp, axis), name in self.symbols.items())

    def fix(self) -> str:
        """What to do when a dim cannot stay symbolic."""
        return "fix the sizes with input_shapes="

    def where(self, op: Operation) -> str:
        """The source node that `op` comes from, for errors."""
        name = op.attributes.get("name")
        label = name.data if isinstance(name, StringAttr) else op.name
        return f"node '{label}' ({op.name})"

    def fail(self, op: Operation, why: str) -> NoReturn:
        raise FrontendError(f"{self.source}: {self.where(op)}: {why}, which "
                            f"qcc cannot keep symbolic (dims {self.dims_text()}); "
                            f"{self.fix()}")


def _shape(v: SSAValue | Attribute) -> tuple[int, ...]:
    t = v.type if isinstance(v, SSAValue) else v
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def _merge(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    return tuple(x if x == y else DYN for x, y in zip(a, b, strict=True))


def _same_array(a: Operation, b: Operation) -> bool:
    x, y = ir.array_of(a), ir.array_of(b)
    return x.shape == y.shape and x.dtype == y.dtype and bool(
        np.array_equal(x, y, equal_nan=np.issubdtype(x.dtype, np.floating)))


def _fmt(shape: Sequence[int]) -> str:
    return "x".join("?" if d == DYN else str(d) for d in shape)
