"""TensorFlow frontend: lower a frozen GraphDef into a qnn module.

    module = load_graphdef("model.pb")  # a batch of -1 stays `?`
    module = load_graphdef("model.pb", input_shapes={"x": (1, 224, 224, 3)})  # fixed

How a graph is read:

1. Parse the file with qcc's GraphDef schema (no TensorFlow needed).
2. Inputs are the Placeholders (or `inputs`), outputs the nodes nothing consumes (or
   `outputs`); only the nodes between them are read. Unfrozen variables, and every
   op without a lowering, are reported at once before anything is built.
3. Each TensorFlow op becomes standard ONNX nodes (`ops.py`, `shape_ops.py`) that are
   lowered to qnn at once by the ONNX frontend's lowerings, so shapes are known while
   translating and constant subgraphs (Shape/StridedSlice/Pack chains) fold.
4. Layout: NHWC values of convolutions and pools are transposed to NCHW once and stay
   NCHW through element-wise ops (constants are permuted at import); an op that needs
   the model's layout (Reshape, Shape, an output) gets it back with one transpose.
   Inputs and outputs keep the model's layout.
5. Layers carry `source = "tensorflow.<op>"` and MatMul's transpose/adjoint flags, the
   facts the target rules read.
6. Dims of -1 (a Keras batch of None) stay symbolic: the graph is imported at two probe
   sizes and what differs becomes `?` (`qcc.frontends.symbolic`); dim 0 is named
   "batch" in `qnn.dims`. `input_shapes` fixes them instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from onnx import helper
from xdsl.dialects.builtin import BoolAttr, ModuleOp, StringAttr
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends import onnx as onnx_frontend
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx_node import shape_of
from qcc.frontends.symbolic import Generalizer, Symbol, probe_size, probes_for
from qcc.frontends.tensorflow import graphdef as gd
from qcc.frontends.tensorflow import ops, shape_ops  # noqa: F401 (they fill TRANSLATIONS)
from qcc.frontends.tensorflow.node import FREEZE_HINT, NCHW, TRANSLATIONS, Node, Tensor

VARIABLE_OPS = ("VarHandleOp", "VariableV2", "Variable", "ReadVariableOp",
                "AssignVariableOp", "VarIsInitializedOp", "ResourceGather")
NOT_OUTPUTS = ("NoOp", "Const", "Placeholder", "Assert", "SaveV2", "RestoreV2")
def load_graphdef(model: str | os.PathLike | gd.GraphDef,
                  input_shapes: Mapping[str, Sequence[int]] | None = None,
                  inputs: Sequence[str] | None = None,
                  outputs: Sequence[str] | None = None) -> ModuleOp:
    """Lower a frozen GraphDef (path or `GraphDef` message) into qnn."""
    if isinstance(model, gd.GraphDef):
        graph, source = model, "<GraphDef>"
    else:
        source = os.fspath(model)
        graph = gd.read_graphdef(source)
    return import_graph(graph, source, input_shapes or {}, inputs, outputs)


def import_graph(graph: gd.GraphDef, source: str, input_shapes: Mapping[str, Sequence[int]],
                 inputs: Sequence[str] | None, outputs: Sequence[str] | None) -> ModuleOp:
    """Lower `graph`; input dims of -1 (in the graph, or given as -1 in `input_shapes`)
    stay symbolic: the graph is imported at two probe sizes and generalized
    (`qcc.frontends.symbolic`). Dim 0 is named "batch"."""
    first = Importer(graph, source, input_shapes, inputs, outputs)
    symbols = first.symbolic_dims()
    if not symbols:
        return first.run()
    probes = probes_for(source, symbols, "fix some with --input-shape")
    modules = [Importer(graph, source, first.probe_shapes(symbols, p), inputs, outputs).run()
               for p in probes]
    return _Generalizer(source, symbols, probes, first).run(*modules)


class _Generalizer(Generalizer):
    def __init__(self, source: str, symbols: Mapping[Symbol, str],
                 probes: Sequence[Mapping[str, int]], importer: Importer) -> None:
        super().__init__(source, symbols, probes)
        self.importer = importer

    def fix(self) -> str:
        shapes = {name: ["N" if (name, a) in self.symbols else str(d)
                         for a, d in enumerate(dims)]
                  for name, dims in self.importer.declared_shapes().items()
                  if any(inp == name for inp, _ in self.symbols)}
        given = " ".join(f"--input-shape {k}={'x'.join(v)}" for k, v in shapes.items())
        python = ", ".join(f"'{k}': ({', '.join(v)}{',' if len(v) == 1 else ''})"
                           for k, v in shapes.items())
        return (f"pass {given} with the sizes you will run, in the model's layout (in "
                f"Python: input_shapes={{{python}}})")


def translations() -> dict:
    """TensorFlow op -> translation (`ops` and `shape_ops` fill the registry)."""
    return TRANSLATIONS


class Importer:
    def __init__(self, graph: gd.GraphDef, source: str,
                 input_shapes: Mapping[str, Sequence[int]],
                 inputs: Sequence[str] | None, outputs: Sequence[str] | None) -> None:
        self.graph = graph
        self.source = source
        self.input_shapes = dict(input_shapes)
        self.nodes = {n.name: n for n in graph.node}
        self.tensors: dict[str, Tensor | np.ndarray] = {}
        self.converted: dict[tuple[str, tuple | None], str] = {}
        model = helper.make_model(helper.make_graph([], "tf", [], []),
                                  opset_imports=[helper.make_opsetid("", 17)])
        self.onnx = onnx_frontend._Importer(model, source, {})
        self.onnx.consumed = _Everything()
        self.layer_info: dict[str, tuple[str, dict[str, bool]]] = {}
        self.input_names = self._find_inputs(inputs)
        self.output_names = self._find_outputs(outputs)
        self.order = self._needed()
        self._counter = 0

    # -- graph structure

    def _find_inputs(self, given: Sequence[str] | None) -> list[str]:
        if given:
            missing = [n for n in given if gd.node_of(n) not in self.nodes]
            if missing:
                raise FrontendError(f"{self.source}: --input-nodes {', '.join(missing)}: no "
                                    "such node in the graph")
            return [gd.node_of(n) for n in given]
        found = [n.name for n in self.graph.node if n.op == "Placeholder"]
        return found

    def _find_outputs(self, given: Sequence[str] | None) -> list[str]:
        if given:
            missing = [n for n in given if gd.node_of(n) not in self.nodes]
            if missing:
                raise FrontendError(f"{self.source}: --output-nodes {', '.join(missing)}: no "
                                    "such node in the graph")
            return [gd.tensor_name(n) for n in given]
        consumed = {gd.node_of(i) for n in self.graph.node for i in n.input
                    if not i.startswith("^")}
        found = [f"{n.name}:0" for n in self.graph.node
                 if n.name not in consumed and n.op not in NOT_OUTPUTS]
        if not found:
            raise FrontendError(f"{self.source}: no output found (every node's result is "
                                "consumed); name them with --output-nodes NAME[,NAME]")
        return found

    def _needed(self) -> list[gd.NodeDef]:
        """The nodes the outputs depend on (stopping at the inputs), in graph order;
        unfrozen variables and unsupported ops raise one error listing them all."""
        needed: set[str] = set()
        stack = [gd.node_of(o) for o in self.output_names]
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            if name in self.input_names:
                continue
            stack.extend(gd.node_of(i) for i in self.nodes[name].input if not i.startswith("^"))
        order = [n for n in self.graph.node if n.name in needed]
        variables = [n.name for n in order if n.op in VARIABLE_OPS or (
            n.op == "Placeholder" and n.attr["dtype"].type == gd.DT.DT_RESOURCE)]
        if variables:
            raise FrontendError(
                f"{self.source}: the graph has unfrozen variables ({', '.join(variables[:5])}"
                f"{', ...' if len(variables) > 5 else ''}); {FREEZE_HINT}")
        unsupported: dict[str, list[str]] = {}
        for n in order:
            if n.name not in self.input_names and n.op not in translations():
                unsupported.setdefault(n.op, []).append(n.name)
        if unsupported:
            lines = [f"  {op}: {', '.join(names)}" for op, names in sorted(unsupported.items())]
            raise FrontendError(
                f"{self.source}: {len(unsupported)} unsupported TensorFlow op type"
                f"{'s' if len(unsupported) > 1 else ''} (op: nodes):\n" + "\n".join(lines))
        if not any(n.name in self.input_names for n in order):
            raise FrontendError(f"{self.source}: the outputs depend on no input (Placeholder);"
                                " name the inputs with --input-nodes NAME[,NAME]")
        return order

    # -- symbolic dims

    def declared_shapes(self) -> dict[str, list[int]]:
        """Input name -> its dims (-1 where unknown), given or from the graph; inputs of
        unknown rank are left out."""
        out: dict[str, list[int]] = {}
        for name in self.input_names:
            node = self.nodes[name]
            given = self.input_shapes.get(name)
            dims = gd.shape_dims(node.attr["shape"].shape) if "shape" in node.attr else None
            if given is not None and (dims is None or len(dims) == len(given)):
                dims = [int(d) for d in given]
            if dims is not None:
                out[name] = [int(d) for d in dims]
        return out

    def symbolic_dims(self) -> dict[Symbol, str]:
        """(input, axis) -> dim name of the dims of -1; dim 0 is "batch"."""
        return {(name, a): "batch" if a == 0 else ""
                for name, dims in self.declared_shapes().items()
                for a, d in enumerate(dims) if d < 0}

    def probe_shapes(self, symbols: Mapping[Symbol, str], probe: Mapping[str, int]
                     ) -> dict[str, tuple[int, ...]]:
        shapes = {k: tuple(v) for k, v in self.input_shapes.items()}
        for name, dims in self.declared_shapes().items():
            if any(inp == name for inp, _ in symbols):
                shapes[name] = tuple(probe_size(probe, symbols, name, a)
                                     if (name, a) in symbols else d
                                     for a, d in enumerate(dims))
        return shapes

    # -- run

    def run(self) -> ModuleOp:

        unknown = sorted(set(self.input_shapes) - set(self.input_names))
        if unknown:
            raise FrontendError(
                f"{self.source}: input_shapes names {', '.join(unknown)}, but the graph's "
                f"inputs are {', '.join(self.input_names) or '(none)'}")
        for node in self.order:
            if node.name in self.input_names:
                self._input(node)
                continue
            label = f"{self.source}: node '{node.name}' ({node.op})"
            try:
                results = translations()[node.op](Node(self, node))
            except FrontendError as e:
                msg = str(e)
                raise FrontendError(msg if msg.startswith(self.source) else f"{label}: {msg}"
                                    ) from None
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise FrontendError(f"{label}: {e}") from None
            if not isinstance(results, list):
                results = [results]
            for i, r in enumerate(results):
                if r is not None:
                    self.tensors[f"{node.name}:{i}"] = r
        outputs: dict[str, SSAValue] = {}
        for name in self.output_names:
            if name not in self.tensors:
                raise FrontendError(f"{self.source}: output '{name}' is not computed")
            ssa = self.onnx._as_ssa(self.tf_layout(name))
            outputs[name[:-2] if name.endswith(":0") else name] = ssa
        module = self.onnx.graph.finish(outputs)
        module.attributes["qcc.framework"] = StringAttr("tensorflow")
        self._mark_layers(module)
        return module

    def _input(self, node: gd.NodeDef) -> None:
        name = node.name
        dtype = gd.dtype_of(node.attr["dtype"].type, f"input '{name}'") \
            if "dtype" in node.attr else np.dtype(np.float32)
        dims = gd.shape_dims(node.attr["shape"].shape) if "shape" in node.attr else None
        given = self.input_shapes.get(name)
        if given is not None:
            if dims is not None and len(dims) != len(given):
                raise FrontendError(f"{self.source}: --input-shape {name} has rank {len(given)}"
                                    f", the graph's input has rank {len(dims)}")
            dims = [int(d) for d in given]
        if dims is None or any(d < 0 for d in dims):
            example = "1x224x224x3" if dims is None else "x".join(
                str(d) if d >= 0 else "1" for d in dims)
            shape = "unknown" if dims is None else " x ".join(
                str(d) if d >= 0 else "?" for d in dims)
            raise FrontendError(
                f"{self.source}: input '{name}' has a dynamic shape ({shape}); qcc needs "
                f"static shapes: pass --input-shape {name}={example} (in Python: "
                f"input_shapes={{'{name}': ({example.replace('x', ', ')},)}}) with the "
                "dims you will run (in the model's layout)")
        self.onnx.values[name] = self.onnx.graph.input(name, tuple(dims), dtype)
        self.tensors[f"{name}:0"] = Tensor(name)

    def _mark_layers(self, module: ModuleOp) -> None:
        for op in module.walk():
            if not isinstance(op, qnn.LAYER_OPS):
                continue
            name = op.attributes.get("name")
            if not isinstance(name, StringAttr) or name.data not in self.layer_info:
                continue
            tf_op, flags = self.layer_info[name.data]
            op.attributes["source"] = StringAttr(f"tensorflow.{tf_op}")
            for flag, value in flags.items():
                if value:
                    op.attributes[flag] = BoolAttr.from_bool(True)

    # -- values and layout

    def fresh(self, base: str) -> str:
        self._counter += 1
        return f"{base}/qcc{self._counter}"

    def emit(self, op_type: str, inputs: Sequence[str], name: str, n_out: int = 1,
             **attrs: Any) -> list[str]:
        """Lower one ONNX node at once; return its output names."""
        outs = [name if i == 0 else f"{name}:{i}" for i in range(n_out)]
        if name in self.onnx.values:
            outs = [self.fresh(o) for o in outs]
        node = helper.make_node(op_type, list(inputs), outs, name=name, **attrs)
        try:
            self.onnx._lower(node)
        except FrontendError as e:  # drop the ONNX label: the TF node's is added
            prefix = f"{self.source}: node '{name}' ({op_type}): "
            msg = str(e)
            raise FrontendError(msg[len(prefix):] if msg.startswith(prefix) else msg) from None
        return outs

    def constant(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.onnx.values[name] = np.asarray(array)
        return name

    def value(self, tensor: str) -> Tensor | np.ndarray:
        if tensor not in self.tensors:
            raise FrontendError(f"input '{tensor}' is not computed by any node")
        return self.tensors[tensor]

    def is_constant(self, tensor: str) -> bool:
        v = self.value(tensor)
        return isinstance(v, np.ndarray) or isinstance(self.onnx.values[v.name], np.ndarray)

    def array(self, tensor: str) -> np.ndarray | None:
        v = self.value(tensor)
        if isinstance(v, np.ndarray):
            return v
        got = self.onnx.values[v.name]
        if not isinstance(got, np.ndarray):
            return None
        return got if v.perm is None else np.transpose(got, np.argsort(v.perm))

    def tf_layout(self, tensor: str) -> str:
        """The ONNX name of `tensor` in the model's layout."""
        v = self.value(tensor)
        if isinstance(v, np.ndarray):
            return self.constant(v, tensor)
        if v.perm is None:
            return v.name
        return self.permuted(v.name, tuple(int(i) for i in np.argsort(v.perm)), tensor)

    def channels_first(self, tensor: str, rank: int) -> str:
        """The ONNX name of `tensor` (channels-last, `rank`) transposed to NCHW."""
        v = self.value(tensor)
        perm = NCHW[rank]
        if isinstance(v, np.ndarray):
            return self.constant(np.transpose(v, perm), tensor)
        if v.perm == perm:
            return v.name
        return self.permuted(self.tf_layout(tensor), perm, tensor)

    def permuted(self, name: str, perm: tuple[int, ...], tensor: str) -> str:
        key = (name, perm)
        if key not in self.converted:
            self.converted[key] = self.emit("Transpose", [name], self.fresh(tensor),
                                            perm=list(perm))[0]
        return self.converted[key]

    def shape(self, onnx_name: str) -> tuple[int, ...]:
        return shape_of(self.onnx.values[onnx_name])


class _Everything(set):
    """Every ONNX output counts as consumed (the translations emit only outputs they use)."""

    def __contains__(self, item: object) -> bool:
        return True
