"""ONNX frontend: lower an ONNX model (opsets 9 to 21; newer ones are read with the
same rules) into a qnn module.

    module = load_onnx("model.onnx", input_shapes={"x": (1, 3, 224, 224)})

How a model is read:

1. Parse the file; a file protobuf cannot read is "not a valid ONNX model".
2. Scan every node before lowering any: a node either *folds* (its inputs are all
   constants, or it only reads a static shape: Shape, Size) or has a lowering in
   `onnx_ops.LOWERINGS`
   (filled by `onnx_ops` and `onnx_shape_ops`). All unsupported nodes are reported in one error.
3. Graph inputs become the arguments of `func.func @main`; symbolic dims are
   imported at two probe sizes and kept as `?` where the results differ
   (`onnx_symbolic`), unless `input_shapes` fixes them. Initializers are numpy arrays
   and become a `qnn.constant` named after the initializer only where a lowered op
   uses them.
4. Nodes are visited in order. A folding node is computed with onnx's numpy
   reference implementation (so shape arithmetic never reaches the graph); any
   other is lowered to qnn ops that carry the ONNX node's name. An `If` whose
   condition folds is replaced by the nodes of the branch it takes. With symbolic
   dims, the values in `at_run_time` (computed from a symbolic dim and used by the
   graph) are also lowered, to run-time shape ops (`onnx_dynamic`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence, Set

import numpy as np
import onnx
from onnx import helper, numpy_helper
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import VerifyException

from qcc import ir
from qcc.frontends import onnx_ascend, onnx_qdq, onnx_shape_ops  # noqa: F401 (they fill LOWERINGS)
from qcc.frontends.errors import FrontendError, NotConstantError
from qcc.frontends.onnx_dynamic import RUNTIME_LOWERINGS
from qcc.frontends.onnx_node import (  # Node stays importable from here (__all__)
    STANDARD_DOMAINS,
    Node,
    Value,
    _node_label,
    _op_key,
)
from qcc.frontends.onnx_ops import LOWERINGS
from qcc.frontends.onnx_symbolic import load_symbolic, symbolic_dims

SHAPE_ONLY = ("Shape", "Size")
"""Ops whose result depends only on the (static) shape of their input."""
NEVER_FOLD = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
              "Bernoulli", "Multinomial",
              # Q and DQ of constants must reach their lowering: a folded weight
              # would lose its quantizer.
              "QuantizeLinear", "DequantizeLinear")

__all__ = ["load_onnx", "FrontendError", "Node"]


def load_onnx(model: str | os.PathLike | onnx.ModelProto,
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModuleOp:
    """Lower an ONNX model (path or ModelProto) into `builtin.module { func.func @main }`.

    Symbolic input dims (`batch x 3 x 224 x 224`) stay symbolic (`tensor<?x3x224x224xf32>`,
    see `onnx_symbolic`). `input_shapes` fixes the shape of chosen inputs (and may
    override static ones of the same rank).
    """
    proto, source = _read(model)
    given = dict(input_shapes or {})
    symbols = symbolic_dims(proto, given)
    if not symbols:
        return _Importer(proto, source, given).run()
    return load_symbolic(proto, source, given, symbols,
                         lambda shapes, runtime: _Importer(proto, source, shapes, runtime))


def _read(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        source = model.graph.name or "<onnx.ModelProto>"
        _check_structure(model, source)
        return model, source
    source = os.fspath(model)
    if not os.path.isfile(source):
        raise FrontendError(f"{source}: no such file")
    try:
        proto = onnx.load(source)
    except Exception as e:  # protobuf's DecodeError, missing external data, ...
        raise FrontendError(
            f"{source}: not a valid ONNX model (the parser says: {e})") from None
    _check_structure(proto, source)
    return proto, source


def _check_structure(proto: onnx.ModelProto, source: str) -> None:
    if not proto.HasField("graph") or not proto.graph.output:
        raise FrontendError(f"{source}: not a valid ONNX model (the parser says: "
                            "it has no graph with outputs; is the file truncated?)")


def _opset(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in STANDARD_DOMAINS:
            return imp.version
    return 1


def _lowerings() -> dict:
    """op type -> lowering function (the lowering modules fill `LOWERINGS`)."""
    return LOWERINGS


# ------------------------------------------------------------------ importer


class _Importer:
    def __init__(self, proto: onnx.ModelProto, source: str,
                 input_shapes: Mapping[str, Sequence[int]],
                 at_run_time: Set[str] = frozenset()) -> None:
        """`at_run_time`: ONNX values that fold at import but are computed in the
        graph instead (they depend on a symbolic dim, see `onnx_dynamic`)."""
        self.proto = proto
        self.source = source
        self.input_shapes = dict(input_shapes)
        self.opset = _opset(proto)
        self.graph = ir.Graph()
        self.values: dict[str, Value] = {}
        self.materialized: dict[str, SSAValue] = {}
        self.at_run_time = at_run_time
        self.runtime: dict[str, SSAValue] = {}
        """ONNX value -> its graph value, for the values in `at_run_time`."""
        self.constants_used: set[str] = set()
        """Names of the constants that became `qnn.constant`s."""
        g = proto.graph
        self.consumed = {n for node in g.node for n in node.input} | {o.name for o in g.output}

    def run(self) -> ModuleOp:
        g = self.proto.graph
        for init in g.initializer:
            self.values[init.name] = self._initializer(init)
        self._scan()
        self._inputs()
        self._check_producers()
        for node in g.node:
            self._lower(node)
        outputs = {}
        for out in g.output:
            if out.name not in self.values:
                raise FrontendError(f"{self.source}: graph output '{out.name}' is not "
                                    "computed by any supported node")
            outputs[out.name] = self._as_ssa(out.name)
        module = self.graph.finish(outputs)
        module.attributes["qcc.framework"] = StringAttr("onnx")
        return module

    # -- constants

    def _initializer(self, init: onnx.TensorProto) -> np.ndarray:
        try:
            return numpy_helper.to_array(init, base_dir=self._base_dir())
        except Exception as e:
            raise FrontendError(
                f"{self.source}: cannot read initializer '{init.name}': {e}") from None

    def _base_dir(self) -> str:
        return os.path.dirname(self.source) if os.path.isfile(self.source) else ""

    def add_constant(self, array: np.ndarray, name: str) -> SSAValue:
        try:
            ir.element_type(array.dtype)
        except TypeError:
            raise FrontendError(
                f"constant '{name}' has dtype {array.dtype}, which qnn has no element "
                "type for") from None
        self.constants_used.add(name)
        return self.graph.const(array, name=name)

    def materialize(self, name: str) -> SSAValue:
        """The `qnn.constant` of the constant ONNX value `name` (made once)."""
        if name not in self.materialized:
            value = self.values[name]
            assert isinstance(value, np.ndarray)
            self.materialized[name] = self.add_constant(value, name)
        return self.materialized[name]

    def _as_ssa(self, name: str) -> SSAValue:
        if name in self.runtime:
            return self.runtime[name]
        value = self.values[name]
        return self.materialize(name) if isinstance(value, np.ndarray) else value

    # -- scan

    def _check_producers(self) -> None:
        """Every node input names a graph input, an initializer or an earlier
        node's output; otherwise one error naming the node and the tensor."""
        known = set(self.values)
        later = {o: n for n in self.proto.graph.node for o in n.output if o}
        for node in self.proto.graph.node:
            for name in node.input:
                if name and name not in known:
                    label = f"node '{node.name}' ({node.op_type})" if node.name else \
                        f"a {node.op_type} node"
                    why = (f"only the later node '{later[name].name}' produces it (the graph "
                           "is not in topological order)" if name in later else
                           "no graph input, initializer or node produces it")
                    raise FrontendError(f"{self.source}: {label} reads tensor '{name}', but "
                                        f"{why}; check the model with onnx.checker")
            known.update(o for o in node.output if o)

    def _folds(self, node: onnx.NodeProto, constants: Mapping[str, object] | set[str]) -> bool:
        if node.domain not in STANDARD_DOMAINS or node.op_type in NEVER_FOLD:
            return False
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute):
            return False
        names = [n for n in node.input if n]
        if not names:
            return node.op_type == "Constant"
        return all(n in constants for n in names)

    def _scan(self) -> None:
        """Raise one error listing every node that can neither fold nor lower."""
        constants = set(self.values)
        lowerings = _lowerings()
        unsupported: dict[str, list[str]] = {}
        self._scan_nodes(self.proto.graph.node, constants, lowerings, unsupported)
        if not unsupported:
            return
        lines = [f"  {op}: {', '.join(names)}" for op, names in sorted(unsupported.items())]
        raise FrontendError(
            f"{self.source}: {len(unsupported)} unsupported ONNX op type"
            f"{'s' if len(unsupported) > 1 else ''} (op: nodes):\n" + "\n".join(lines))

    def _scan_nodes(self, nodes: Sequence[onnx.NodeProto], constants: set[str],
                    lowerings: Mapping[str, object], unsupported: dict[str, list[str]]) -> None:
        for node in nodes:
            if node.op_type == "If" and node.domain in STANDARD_DOMAINS:
                # Only the taken branch is lowered; both are scanned (which one is
                # taken is known only once the condition is folded).
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        self.consumed.update(n for sub in attr.g.node for n in sub.input)
                        self.consumed.update(o.name for o in attr.g.output)
                        branch = constants | {i.name for i in attr.g.initializer}
                        self._scan_nodes(attr.g.node, branch, lowerings, unsupported)
                continue
            if self._folds(node, constants) or node.op_type in SHAPE_ONLY:
                constants.update(o for o in node.output if o)
                continue
            key = _op_key(node)
            if key not in lowerings:
                unsupported.setdefault(key, []).append(_node_label(node))

    # -- inputs

    def _inputs(self) -> None:
        g = self.proto.graph
        real = [i for i in g.input if i.name not in self.values]
        unknown = sorted(set(self.input_shapes) - {i.name for i in real})
        if unknown:
            raise FrontendError(
                f"{self.source}: input_shapes names {', '.join(unknown)}, but the model's "
                f"inputs are {', '.join(i.name for i in real) or '(none)'}")
        for vi in real:
            shape, dtype = self._input_type(vi)
            self.values[vi.name] = self.graph.input(vi.name, shape, dtype)

    def _input_type(self, vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...], np.dtype]:
        name = vi.name
        if not vi.type.HasField("tensor_type"):
            raise FrontendError(f"{self.source}: input '{name}' is not a tensor")
        tt = vi.type.tensor_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
            ir.element_type(dtype)
        except (KeyError, TypeError):
            raise FrontendError(
                f"{self.source}: input '{name}' has element type "
                f"{onnx.TensorProto.DataType.Name(tt.elem_type)}, which qnn does not "
                "support") from None
        dims: list[int | str] | None = None
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                    for d in tt.shape.dim]
        given = self.input_shapes.get(name)
        if given is not None:
            if dims is not None and len(dims) != len(given):
                raise FrontendError(
                    f"{self.source}: --input-shape {name} has rank {len(given)}, the "
                    f"model's input has rank {len(dims)} ({_dims_text(dims)})")
            return tuple(int(d) for d in given), dtype
        if dims is None or any(not isinstance(d, int) for d in dims):
            example = ("1x3x224x224" if dims is None else
                       "x".join(str(d) if isinstance(d, int) else "1" for d in dims))
            shape = "unknown" if dims is None else _dims_text(dims)
            raise FrontendError(
                f"{self.source}: input '{name}' has a dynamic shape ({shape}); qcc needs "
                f"static shapes: pass --input-shape {name}={example} (in Python: "
                f"input_shapes={{'{name}': ({example.replace('x', ', ')},)}}) with the "
                "dims you will run")
        return tuple(int(d) for d in dims), dtype

    # -- nodes

    def _lower(self, node: onnx.NodeProto) -> None:
        version = self.opset if node.domain in STANDARD_DOMAINS else 1
        label = f"{self.source}: node '{_node_label(node)}' ({node.op_type})"
        if node.op_type == "If" and node.domain in STANDARD_DOMAINS:
            self._inline_if(node, label)
            return
        is_constant = {n for n in node.input if n and isinstance(self.values[n], np.ndarray)}
        if any(o in self.at_run_time for o in node.output):
            self._lower_at_run_time(node, version, label, folds=True)
            return
        if (any(i in self.runtime for i in node.input) and not self._folds(node, is_constant)
                and _op_key(node) in RUNTIME_LOWERINGS):  # e.g. a reshape to a run-time shape
            self._lower_at_run_time(node, version, label, folds=False)
            return
        try:
            if self._folds(node, is_constant):
                results: Sequence[Value | None] = self._fold(node, version)
            else:
                out = _lowerings()[_op_key(node)](Node(self, node, version))
                results = out if isinstance(out, list | tuple) else [out]
        except NotConstantError as e:
            raise NotConstantError(f"{label}: {e}", e.value_name) from None
        except (FrontendError, VerifyException, ValueError, TypeError) as e:
            raise FrontendError(f"{label}: {e}") from None
        for name, value in zip(node.output, results, strict=False):
            if name and value is not None:
                self.values[name] = value

    def _lower_at_run_time(self, node: onnx.NodeProto, version: int, label: str,
                           folds: bool) -> None:
        """Lower a node that reads or computes a value in `at_run_time` to graph ops.
        A node that `folds` is also folded: its constant value serves the nodes that
        fold on. The results' shapes at this probe are computed with onnx's
        reference, graph values standing in as zeros of their shapes."""
        key = _op_key(node)
        try:
            if node.op_type in SHAPE_ONLY:  # reads a graph value's (probe) shape
                folded = [_lowerings()[key](Node(self, node, version))]
            else:
                folded = self._fold(node, version, stand_ins=not folds)
            n = Node(self, node, version, at_run_time=True)
            if key in RUNTIME_LOWERINGS:
                out = RUNTIME_LOWERINGS[key](n, folded[0])
            elif key in _lowerings():
                out = _lowerings()[key](n)
            else:
                raise FrontendError(f"its value depends on a symbolic dim, and qcc has no "
                                    f"run-time form of {key}")
        except (FrontendError, VerifyException, ValueError, TypeError) as e:
            raise NotConstantError(f"{label}: {e}", node.output[0]) from None
        results = out if isinstance(out, list | tuple) else [out]
        for name, value, const in zip(node.output, results, folded, strict=False):
            if not name:
                continue
            if not folds:
                self.values[name] = value
                continue
            self.values[name] = const
            if isinstance(value, SSAValue):
                self.runtime[name] = value

    def _inline_if(self, node: onnx.NodeProto, label: str) -> None:
        """Lower the branch that the constant condition takes in place of the If."""
        cond = self.values.get(node.input[0])
        if not isinstance(cond, np.ndarray):
            raise NotConstantError(
                f"{label}: the condition '{node.input[0]}' is computed at run time, and "
                "qcc inlines an If only where shapes or constants decide the branch; if it "
                "tests an input's shape, give that input a static shape with --input-shape "
                "NAME=DIMS (in Python: input_shapes=...)", node.input[0])
        if cond.size != 1:
            raise FrontendError(f"{label}: the condition has {cond.size} elements, not one")
        key = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
        branch = next((a.g for a in node.attribute if a.name == key), None)
        if branch is None:
            raise FrontendError(f"{label}: the If has no {key}")
        for init in branch.initializer:
            self.values[init.name] = self._initializer(init)
        for inner in branch.node:
            self._lower(inner)
        if len(branch.output) != len(node.output):
            raise FrontendError(f"{label}: {key} has {len(branch.output)} outputs, the If "
                                f"{len(node.output)}")
        for name, out in zip(node.output, branch.output, strict=True):
            if name:
                self.values[name] = self.values[out.name]

    def _fold(self, node: onnx.NodeProto, version: int, stand_ins: bool = False
              ) -> list[np.ndarray]:
        """Compute a node whose inputs are all constants with onnx's numpy reference
        (with `stand_ins`, a graph value is zeros of its shape)."""
        from onnx.reference import ReferenceEvaluator

        feeds = {n: _stand_in(self.values[n]) if stand_ins else self.values[n]
                 for n in node.input if n}
        graph = helper.make_graph(
            [node], "fold", [helper.make_empty_tensor_value_info(n) for n in feeds],
            [helper.make_empty_tensor_value_info(n) for n in node.output if n])
        try:
            outs = ReferenceEvaluator(graph, opsets={"": version},
                                      new_ops=_fold_overrides()).run(None, feeds)
        except Exception as e:
            raise FrontendError(f"constant folding failed: {e}") from None
        results: list[np.ndarray] = []
        it = iter(outs)
        for name in node.output:
            out = next(it)
            if isinstance(out, list | tuple | dict):
                raise FrontendError(f"output '{name}' is a sequence or map, not a tensor, "
                                    "which qnn does not support")
            results.append(np.asarray(out) if name else None)  # type: ignore[arg-type]
        return results


def _stand_in(value: Value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    assert isinstance(value.type, TensorType)
    return np.zeros(value.type.get_shape(), ir.numpy_dtype(value.type.element_type))


@functools.cache
def _fold_overrides() -> list[type]:
    """Folding implementations that replace onnx's reference where it is narrower
    than onnxruntime: GatherElements with indices smaller than the data off the
    gather axis (torch.gather; BERT's token-type ids gather a [1, seq] slice of a
    [batch, seq] buffer), and more than 32 values along the axis."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=None):
            axis = int(axis or 0) % data.ndim
            crop = tuple(slice(None) if a == axis else slice(0, d)
                         for a, d in enumerate(indices.shape))
            indices = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data[crop], indices, axis=axis),)

    return [GatherElements]


def _dims_text(dims: Sequence[int | str]) -> str:
    return " x ".join(str(d) for d in dims) or "scalar"
