"""Symbolic input dims of an ONNX model (`batch x 3 x 224 x 224`) kept as `?` dims.

The importer folds every shape computation at import, which needs numbers. A model
with symbolic dims is therefore imported twice, each symbolic dim set to a
different probe size (two distinct primes, the same for every input dim of the
same name). What differs between the two modules depends on the symbolic dims:

1. a result dim that differs is `?`;
2. a `qnn.reshape` target entry that differs takes the input's dim at the same
   index when it equals it in both (`copy_dims`, ONNX's 0) or else is the one
   `-1` entry (ONNX's -1); two such entries cannot be expressed;
3. a `qnn.broadcast` target entry that differs and equals the input's aligned dim
   in both is -1 (keep the input's dim);
4. a `qnn.slice` bound that differs by the dim itself counts from the end (a
   negative index, or "to the end"); a `qnn.resize` size equal to the input's dim
   in both is -1 (that axis is not resized);
5. a folded constant that differs and reaches the graph (BERT's position ids, a
   causal mask, ViT's class token expanded to the batch) is computed at run time:
   the model is imported twice more, lowering the nodes that compute it, from the
   Shape nodes on, to graph ops (`onnx_dynamic`) whose `dims` that differ are `?`;
6. anything else that differs (a split's sizes, a resize's sizes, the graph's
   structure, a value with no run-time form) cannot be decided: one error names the
   node and the dims to fix with `--input-shape`.

Every op's result type is then inferred again from the generalized operands, so the
module verifies; the func's arguments and results carry the source's dim names in
the `qnn.dims` argument/result attribute (`""` for a static dim).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import Protocol

import numpy as np
import onnx
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation

from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError, NotConstantError
from qcc.frontends.symbolic import PROBES, Generalizer, Symbol, probes_for

__all__ = ["PROBES", "Symbol", "load_symbolic", "symbolic_dims"]


def symbolic_dims(proto: onnx.ModelProto,
                  input_shapes: Mapping[str, Sequence[int]]) -> dict[Symbol, str]:
    """The model's symbolic input dims not fixed by `input_shapes`, with their
    dim_param names ("" when the model leaves a dim unnamed). A dim given as -1 in
    `input_shapes` (`?` on the command line) stays symbolic."""
    g = proto.graph
    initializers = {i.name for i in g.initializer}
    out: dict[Symbol, str] = {}
    for vi in g.input:
        tt = vi.type.tensor_type
        if vi.name in initializers or not vi.type.HasField("tensor_type"):
            continue
        dims = list(tt.shape.dim) if tt.HasField("shape") else []
        given = input_shapes.get(vi.name)
        if given is not None:
            for axis, d in enumerate(given):
                if d < 0:
                    out[(vi.name, axis)] = dims[axis].dim_param if axis < len(dims) else ""
            continue
        for axis, d in enumerate(dims):
            if not d.HasField("dim_value"):
                out[(vi.name, axis)] = d.dim_param
    return out


class ProbeImport(Protocol):
    """One import of the model at probe sizes (`qcc.frontends.onnx._Importer`)."""

    @property
    def values(self) -> Mapping[str, object]: ...

    @property
    def constants_used(self) -> Set[str]: ...

    def run(self) -> ModuleOp: ...


def load_symbolic(proto: onnx.ModelProto, source: str,
                  input_shapes: Mapping[str, Sequence[int]], symbols: Mapping[Symbol, str],
                  importer: Callable[[dict[str, tuple[int, ...]], Set[str]], ProbeImport]
                  ) -> ModuleOp:
    """Import twice at probe sizes and keep what differs as symbolic (see above)."""
    probes = probes_for(source, symbols, "fix some with --input-shape")
    shapes = [_shapes(proto, input_shapes, symbols, pr) for pr in probes]
    generalizer = _Generalizer(source, symbols, probes, proto)
    imports = [importer(s, frozenset()) for s in shapes]
    modules = [_probe(i, probe, generalizer) for i, probe in zip(imports, probes, strict=True)]
    runtime = at_run_time(proto, imports[0], imports[1])
    if runtime:
        imports = [importer(s, runtime) for s in shapes]
        try:
            modules = [i.run() for i in imports]
        except NotConstantError as e:
            raise FrontendError(f"{e}; it depends on the symbolic dims "
                                f"{generalizer.dims_text()}: {generalizer.fix()}") from None
    return generalizer.run(*modules)


def _probe(imp: ProbeImport, probe: Mapping[str, int], generalizer: Generalizer) -> ModuleOp:
    """Run one probe import; an error it meets says at which sizes (a position
    table shorter than a probe length fails there, say)."""
    try:
        return imp.run()
    except NotConstantError:
        raise
    except FrontendError as e:
        sizes = ", ".join(f"'{k}' = {v}" for k, v in probe.items())
        raise FrontendError(f"{e} (importing at the probe sizes {sizes} of the symbolic "
                            f"dims: {generalizer.fix()})") from None


def at_run_time(proto: onnx.ModelProto, a: ProbeImport, b: ProbeImport) -> frozenset[str]:
    """The folded ONNX values to compute in the graph (rule 5): those that differ
    between the two probe imports and became a `qnn.constant`, with the values
    that differ among the inputs of the nodes computing them."""
    differ = {n for n, x in a.values.items() if isinstance(x, np.ndarray)
              and isinstance(y := b.values.get(n), np.ndarray)
              and (x.shape != y.shape or not np.array_equal(x, y))}
    producer = {o: node for node in proto.graph.node for o in node.output if o}
    todo = [n for n in differ if n in a.constants_used or n in b.constants_used]
    todo += [p for node in proto.graph.node for p in _shape_operands(node, a, b, differ)]
    out: set[str] = set()
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        node = producer.get(name)
        if node is not None:
            todo.extend(i for i in node.input if i in differ)
            out.update(o for o in node.output if o in differ)
    return frozenset(out)


def _shapes(proto: onnx.ModelProto, given: Mapping[str, Sequence[int]],
            symbols: Mapping[Symbol, str], probe: Mapping[str, int]
            ) -> dict[str, tuple[int, ...]]:
    shapes = {k: tuple(v) for k, v in given.items()}
    for vi in proto.graph.input:
        if not any(inp == vi.name for inp, _ in symbols):
            continue
        dims = shapes.get(vi.name) or [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = tuple(
            probe[symbols[(vi.name, a)] or f"{vi.name}:{a}"] if (vi.name, a) in symbols
            else d for a, d in enumerate(dims))
    return shapes


def _shape_operands(node: onnx.NodeProto, a: ProbeImport, b: ProbeImport,
                    differ: Set[str]) -> list[str]:
    """The target shape of a Reshape or Expand of a graph value, or a Slice's
    bounds, when it differs between the probes in a way `_Generalizer` cannot
    express (rules 2-4): two reshaped dims computed from the symbolic dims, an
    expand to a computed size, a bound that is no fixed offset from the end."""
    if node.op_type not in ("Reshape", "Expand", "Slice") or len(node.input) < 2:
        return []
    params = [p for p in node.input[1:3] if p in differ]
    xa, xb = a.values.get(node.input[0]), b.values.get(node.input[0])
    if not params or isinstance(xa, np.ndarray) or xa is None or xb is None:
        return []
    sa, sb = _shape_of(xa), _shape_of(xb)
    va, vb = ([int(d) for d in np.asarray(v.values[p]).reshape(-1)]
              for v, p in ((a, params[0]), (b, params[0])))
    if node.op_type == "Reshape":
        ra = [sa[i] if d == 0 and i < len(sa) else d for i, d in enumerate(va)]
        rb = [sb[i] if d == 0 and i < len(sb) else d for i, d in enumerate(vb)]
        free = [i for i, (da, db) in enumerate(zip(ra, rb, strict=False)) if da != db
                and not (i < len(sa) and da == sa[i] and db == sb[i])]
        return params if len(free) + (-1 in ra) > 1 else []
    if node.op_type == "Expand":
        if len(va) != len(vb):
            return params
        off = len(va) - len(sa)
        bad = [i for i, (da, db) in enumerate(zip(va, vb, strict=True)) if da != db
               and not (i >= off and da == sa[i - off] and db == sb[i - off])]
        return params if bad else []
    return params  # Slice bounds: a run-time slice in every case


def _shape_of(v: object) -> tuple[int, ...]:
    t = getattr(v, "type", None)
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


class _Generalizer(Generalizer):
    def __init__(self, source: str, symbols: Mapping[Symbol, str],
                 probes: Sequence[Mapping[str, int]], proto: onnx.ModelProto) -> None:
        super().__init__(source, symbols, probes)
        self.proto = proto
        self.outputs = {o.name: o for o in proto.graph.output}

    def source_dim_name(self, value: str, axis: int) -> str:
        source = self.outputs.get(value)
        if source is not None:
            dims = source.type.tensor_type.shape.dim
            if axis < len(dims) and dims[axis].dim_param:
                return dims[axis].dim_param
        return ""

    def fix(self) -> str:
        inputs: dict[str, list[str]] = {}
        for vi in self.proto.graph.input:
            if any(inp == vi.name for inp, _ in self.symbols):
                dims = vi.type.tensor_type.shape.dim
                inputs[vi.name] = [str(d.dim_value) if d.HasField("dim_value") else
                                   (d.dim_param or "N").upper() for d in dims]
        given = " ".join(f"--input-shape {k}={'x'.join(v)}" for k, v in inputs.items())
        python = ", ".join(f"'{k}': ({', '.join(v)}{',' if len(v) == 1 else ''})"
                           for k, v in inputs.items())
        return (f"pass {given} with the sizes you will run (in Python: "
                f"input_shapes={{{python}}})")

    def where(self, op: Operation) -> str:
        where = super().where(op)
        if isinstance(op, qnn.ConstantOp):  # name the ONNX node that computed it
            name = op.attributes.get("name")
            label = name.data if isinstance(name, StringAttr) else op.name
            node = next((n for n in self.proto.graph.node if label in n.output), None)
            if node is not None:
                where = f"node '{node.name or label}' ({node.op_type}, output '{label}')"
        return where
