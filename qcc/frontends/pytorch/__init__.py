"""PyTorch frontend: a `torch.nn.Module` (or a `torch.export` program) into qnn.

    module = load_pytorch(model, example_inputs=(x,))

How a module is read:

1. `torch.export.export(model.eval(), example_inputs, dynamic_shapes=...)`; a module
   the exporter cannot trace is one error with the exporter's reason and what to do.
2. `run_decompositions` lowers to core ATen, except the ops in `ops.PRESERVED`
   (linear, conv, layer_norm, scaled_dot_product_attention, hardswish...), which
   have direct qnn lowerings and keep the layer whole.
3. Scan every node before lowering any: an op with no lowering is listed with the
   `file.py:line` of the user's code that called it, all in one error.
4. Parameters and buffers become `qnn.constant`s named by their module path
   (`layer1.0.conv1.weight`); user inputs become the arguments of `func.func @main`
   under the forward's argument names. A node whose inputs are all constants is
   computed by torch itself at import (shape arithmetic, a transposed weight).
5. Layer ops (`qnn.conv`, `qnn.dense`...) are named after the module that owns them
   (`layer1.0.conv1`) and carry `source = "pytorch.Conv2d"`, so target rules and
   configs speak the user's names.

Shapes are fixed at the example inputs' shapes (symbolic dims resolve to their example
values): `_dims` is the one place that turns a torch shape into an IR shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import VerifyException

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError

__all__ = ["load_pytorch", "load_exported", "FrontendError"]

SUGGESTION = ("pass example_inputs= that the forward accepts, mark the dims that vary "
              "with dynamic_shapes= (torch.export.Dim), or export to ONNX "
              "(torch.onnx.export) and load the .onnx file")


def load_pytorch(model: Any, example_inputs: Sequence[Any] | None = None, *,
                 dynamic_shapes: Any = None, input_shapes: Mapping[str, Sequence[int]]
                 | None = None, source: str | None = None) -> ModuleOp:
    """Export `model` (a `torch.nn.Module` or `torch.export.ExportedProgram`) and
    lower it into `builtin.module { func.func @main }`.

    Without `dynamic_shapes` the first dim of every tensor input is exported as
    `Dim.AUTO` (dynamic where the model allows). `input_shapes` ({input name: shape})
    fixes the dynamic dims of the imported graph; by default they take the example
    inputs' sizes.
    """
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        return _Importer(model, source or "<ExportedProgram>", None, input_shapes).run()
    if not isinstance(model, torch.nn.Module):
        raise FrontendError(f"expected a torch.nn.Module, got {type(model).__name__}")
    label = source or type(model).__name__
    if example_inputs is None:
        raise FrontendError(f"{label}: a torch.nn.Module needs example_inputs=(x, ...) "
                            "to be traced by torch.export")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    model.eval()
    example_inputs = tuple(example_inputs)
    if dynamic_shapes is None:
        dynamic_shapes = batch_dynamic(model, example_inputs)
    try:
        program = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as e:  # the exporter's reasons come as many exception types
        raise FrontendError(f"{label}: torch.export cannot trace the module: "
                            f"{_first_lines(e)}\nWhat to do: {SUGGESTION}") from None
    return _Importer(program, label, model, input_shapes).run()


def batch_dynamic(model: Any, example_inputs: Sequence[Any]) -> dict[str, Any] | None:
    """dynamic_shapes marking dim 0 of each tensor input `Dim.AUTO`, keyed by the
    forward's parameter names (a `*args` parameter gets a tuple)."""
    import inspect

    import torch

    specs = [{0: torch.export.Dim.AUTO} if isinstance(x, torch.Tensor) and x.dim() else None
             for x in example_inputs]
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    out: dict[str, Any] = {}
    for i, p in enumerate(params):
        if p.kind == p.VAR_POSITIONAL:
            out[p.name] = tuple(specs[i:])
            return out
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or i >= len(specs):
            break
        out[p.name] = specs[i]
    return out


def load_exported(path: str | os.PathLike,
                  input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModuleOp:
    """A `.pt2` file written by `torch.export.save`. A plain `.pt`/`.pth` pickle is
    refused: unpickling runs arbitrary code."""
    import torch

    source = os.fspath(path)
    ext = os.path.splitext(source)[1].lower()
    if ext in (".pt", ".pth"):
        raise FrontendError(
            f"{source}: qcc does not load {ext} pickles (unpickling runs arbitrary code, "
            "and a pickle of weights has no graph). Export the model instead: "
            "torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2'), "
            "or in Python pass the module: qcc.load(model, example_inputs=(x,))")
    if not os.path.isfile(source):
        raise FrontendError(f"{source}: no such file")
    try:
        program = torch.export.load(source)
    except Exception as e:
        raise FrontendError(f"{source}: not a torch.export program (torch.export.load "
                            f"says: {_first_lines(e)})") from None
    return _Importer(program, source, None, input_shapes).run()


def _first_lines(e: BaseException, n: int = 3) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[:n])


def _dims(val: Any, bindings: Mapping[Any, int] | None = None) -> tuple[int, ...]:
    """IR shape of a traced tensor: symbolic dims take their bound values (from
    `input_shapes`), else their example values."""
    return tuple(_int(d, bindings) for d in val.shape)


def _int(d: Any, bindings: Mapping[Any, int] | None = None) -> int:
    if isinstance(d, int):
        return d
    node = getattr(d, "node", None)
    if node is not None and bindings:
        expr = node.expr
        value = expr.xreplace(bindings) if hasattr(expr, "xreplace") else expr
        if getattr(value, "is_number", True):
            return int(value)
    hint = getattr(node, "hint", None)
    if hint is None:
        raise FrontendError(f"dimension {d} has no example value")
    return int(hint)


def location(node: Any) -> str:
    """`file.py:line` of the user's code that made `node` (the last frame outside
    torch), else the node's name."""
    trace = node.meta.get("stack_trace") or ""
    best = None
    for line in trace.splitlines():
        line = line.strip()
        if not line.startswith('File "'):
            continue
        path, _, rest = line[6:].partition('", line ')
        lineno = rest.split(",")[0]
        if f"{os.sep}torch{os.sep}" in path:
            continue
        best = f"{os.path.basename(path)}:{lineno}"
    return best or node.name


def module_path(node: Any) -> tuple[str, str] | None:
    """(path, class name) of the innermost module that made `node`."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return path, cls_name.rsplit(".", 1)[-1]


class Node:
    """One fx node being lowered: its arguments as qnn values, constants or Python
    values, and an `emit` that builds qnn ops named after the node."""

    def __init__(self, importer: _Importer, fx: Any) -> None:
        self.importer = importer
        self.fx = fx
        self.op = _op_name(fx.target)
        self.args = [importer.resolve(a) for a in fx.args]
        self.kwargs = {k: importer.resolve(v) for k, v in fx.kwargs.items()}
        self.name = fx.name

    def arg(self, i: int, key: str | None = None, default: Any = None) -> Any:
        if i < len(self.args):
            return self.args[i]
        if key is not None and key in self.kwargs:
            return self.kwargs[key]
        return default

    def value(self, v: Any, like: Any = None) -> SSAValue:
        """`v` as a graph value; numbers take the dtype of `like` (f32 by default)."""
        if isinstance(v, SSAValue):
            return v
        if isinstance(v, np.ndarray):
            return self.importer.constant(v, self.importer.const_name(v, self.name))
        dtype = np.float32 if like is None else dtype_of(like)
        return self.importer.constant(np.array(v, dtype), f"{self.name}.const")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape torch traced for this node's (first) result."""
        val = self.fx.meta.get("val")
        if isinstance(val, list | tuple):
            val = val[0]
        return _dims(val, self.importer.bindings)

    @property
    def dtype(self) -> np.dtype:
        import torch

        val = self.fx.meta.get("val")
        if isinstance(val, list | tuple):
            val = val[0]
        return torch.empty((), dtype=val.dtype).numpy().dtype

    def layer_name(self) -> str:
        owner = module_path(self.fx)
        return owner[0] if owner and owner[0] else self.name

    def emit_op(self, cls: Any, *operands: Any, suffix: str = "", source: str | None = None,
                **props: Any) -> Operation:
        base = self.layer_name() if isinstance_layer(cls) else self.name
        op = cls.make(*operands, name=self.importer.unique(base + suffix), **props)
        if isinstance(op, qnn.LAYER_OPS):
            op.attributes["source"] = StringAttr(f"pytorch.{source or self.source_op(cls)}")
        self.importer.graph.add(op)
        return op

    def emit(self, cls: Any, *operands: Any, suffix: str = "", **props: Any) -> SSAValue:
        return self.emit_op(cls, *operands, suffix=suffix, **props).results[0]

    def source_op(self, cls: Any) -> str:
        """The torch.nn class a layer came from: the owning module's class when it is
        a layer class, else derived from the ATen op (functional calls)."""
        owner = module_path(self.fx)
        if owner and owner[1] in LAYER_CLASSES:
            return owner[1]
        return {"qnn.matmul": "matmul", "qnn.dense": "Linear"}.get(cls.name, self.op)


LAYER_CLASSES = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                 "ConvTranspose3d", "Linear", "AvgPool1d", "AvgPool2d", "AvgPool3d",
                 "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
                 "MultiheadAttention"}


def isinstance_layer(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, qnn.LAYER_OPS)


def dtype_of(v: Any) -> np.dtype:
    if isinstance(v, np.ndarray):
        return v.dtype
    if isinstance(v, SSAValue):
        assert isinstance(v.type, TensorType)
        return ir.numpy_dtype(v.type.element_type)
    return np.dtype(np.float32 if isinstance(v, float) else np.int64)


def shape_of(v: Any) -> tuple[int, ...]:
    if isinstance(v, np.ndarray):
        return tuple(v.shape)
    assert isinstance(v, SSAValue) and isinstance(v.type, TensorType)
    return tuple(v.type.get_shape())


def _op_name(target: Any) -> str:
    """`conv2d` for aten.conv2d.default, `getitem` for operator.getitem."""
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


class _Importer:
    def __init__(self, program: Any, source: str, model: Any,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        from qcc.frontends.pytorch import ops

        self.ops = ops
        self.source = source
        self.model = model
        self.program = ops.decompose(program)
        self.input_shapes = dict(input_shapes or {})
        self.bindings: dict[Any, int] = {}
        self.graph = ir.Graph()
        self.values: dict[str, Any] = {}
        # id(array) -> (array, name): the array is kept so that its id stays unique.
        self.names: dict[int, tuple[np.ndarray, str]] = {}
        self.materialized: dict[int, tuple[np.ndarray, SSAValue]] = {}
        self.used: set[str] = set()

    # -- values

    def resolve(self, a: Any) -> Any:
        import torch.fx

        if isinstance(a, torch.fx.Node):
            return self.values[a.name]
        if isinstance(a, list | tuple):
            return type(a)(self.resolve(x) for x in a)
        return a

    def constant(self, array: np.ndarray, name: str) -> SSAValue:
        key = id(array)
        if key in self.materialized:
            return self.materialized[key][1]
        try:
            ir.element_type(array.dtype)
        except TypeError:
            raise FrontendError(f"constant '{name}' has dtype {array.dtype}, which qnn has "
                                "no element type for") from None
        value = self.graph.const(array, name=self.unique(name))
        self.materialized[key] = (array, value)
        return value

    def const_name(self, array: np.ndarray, fallback: str) -> str:
        entry = self.names.get(id(array))
        return entry[1] if entry is not None else fallback

    def name_constant(self, array: np.ndarray, name: str) -> None:
        self.names[id(array)] = (array, name)

    def unique(self, name: str) -> str:
        base, i = name, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    # -- the walk

    def run(self) -> ModuleOp:
        gm = self.program.graph_module
        self._scan(gm.graph)
        self._inputs()
        outputs: dict[str, SSAValue] = {}
        for node in gm.graph.nodes:
            if node.op == "call_function":
                self._lower(node)
            elif node.op == "output":
                outputs = self._outputs(node)
        module = self.graph.finish(outputs)
        module.attributes["qcc.framework"] = StringAttr("pytorch")
        return module

    def _scan(self, graph: Any) -> None:
        unsupported: dict[str, list[str]] = {}
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            name = _op_name(node.target)
            if name in self.ops.LOWERINGS or _is_python(node.target) or self._folds(node):
                continue
            unsupported.setdefault(f"aten.{name}" if hasattr(node.target, "overloadpacket")
                                   else name, []).append(location(node))
        if not unsupported:
            return
        lines = [f"  {op}: {', '.join(dict.fromkeys(locs))}"
                 for op, locs in sorted(unsupported.items())]
        raise FrontendError(
            f"{self.source}: {len(unsupported)} unsupported ATen op"
            f"{'s' if len(unsupported) > 1 else ''} (op: where):\n" + "\n".join(lines)
            + "\nWhat to do: rewrite those lines with supported ops (README, PyTorch "
            "section), or export to ONNX (torch.onnx.export) and load the .onnx file")

    def _folds(self, node: Any) -> bool:
        """No graph input reaches `node`: torch computes it at import."""
        import torch.fx

        if self.ops.is_random(node.target):
            return False
        inputs = node.all_input_nodes
        return all(n.op == "placeholder" and n.name in self._constant_placeholders()
                   or (n.op == "call_function" and self._folds_cached(n))
                   for n in inputs if isinstance(n, torch.fx.Node))

    def _folds_cached(self, node: Any) -> bool:
        cache = self.__dict__.setdefault("_fold_cache", {})
        if node.name not in cache:
            cache[node.name] = self._folds(node)
        return cache[node.name]

    def _constant_placeholders(self) -> set[str]:
        if "_consts" not in self.__dict__:
            from torch.export.graph_signature import InputKind

            self._consts = {s.arg.name for s in self.program.graph_signature.input_specs
                            if s.kind != InputKind.USER_INPUT}
        return self._consts

    def _inputs(self) -> None:
        from torch.export.graph_signature import InputKind

        program = self.program
        state = program.state_dict
        nodes = {n.name: n for n in program.graph_module.graph.nodes if n.op == "placeholder"}
        for spec in program.graph_signature.input_specs:
            node = nodes[spec.arg.name]
            if spec.kind == InputKind.USER_INPUT:
                val = node.meta.get("val")
                if not hasattr(val, "shape"):
                    raise FrontendError(f"{self.source}: input '{node.name}' is not a tensor "
                                        f"({type(val).__name__}); pass tensors only")
                dtype = self._np_dtype(val.dtype, node.name)
                self._bind(node.name, val)
                self.values[node.name] = self.graph.input(node.name,
                                                          _dims(val, self.bindings), dtype)
                continue
            tensor = state.get(spec.target) if spec.target in state else \
                program.constants.get(spec.target)
            if tensor is None:
                raise FrontendError(f"{self.source}: no value for {spec.kind.name.lower()} "
                                    f"'{spec.target}'")
            array = _numpy(tensor)
            self.values[node.name] = array
            self.name_constant(array, spec.target)

    def _bind(self, name: str, val: Any) -> None:
        """Bind the symbols of input `name`'s dims to the sizes `input_shapes` gives."""
        given = self.input_shapes.get(name)
        if given is None:
            return
        if len(given) != len(val.shape):
            raise FrontendError(f"{self.source}: input_shapes gives {name} rank {len(given)}, "
                                f"the program's input has rank {len(val.shape)}")
        for d, size in zip(val.shape, given, strict=True):
            expr = getattr(getattr(d, "node", None), "expr", None)
            if expr is not None and expr.is_symbol:
                self.bindings[expr] = int(size)
            elif _int(d) != int(size):
                raise FrontendError(
                    f"{self.source}: input_shapes gives {name} the shape {tuple(given)}, but "
                    f"the program was exported with {_dims(val)} and only dynamic dims "
                    "can change (mark them with dynamic_shapes=)")

    def _np_dtype(self, dtype: Any, name: str) -> np.dtype:
        import torch

        try:
            np_dtype = torch.empty((), dtype=dtype).numpy().dtype
            ir.element_type(np_dtype)
        except (TypeError, RuntimeError):
            raise FrontendError(f"{self.source}: input '{name}' has dtype {dtype}, which "
                                "qnn does not support") from None
        return np_dtype

    def _outputs(self, node: Any) -> dict[str, SSAValue]:
        results = node.args[0]
        results = list(results) if isinstance(results, list | tuple) else [results]
        names = [o.name for o in results]
        keys = ["output"] if len(results) == 1 else [f"output{i}" for i in range(len(results))]
        out: dict[str, SSAValue] = {}
        for key, name in zip(keys, names, strict=True):
            value = self.values[name]
            out[key] = value if isinstance(value, SSAValue) else self.constant(
                np.asarray(value), name)
        return out

    def _lower(self, fx: Any) -> None:
        label = f"{self.source}: {location(fx)} ({_op_name(fx.target)}, node '{fx.name}')"
        try:
            if _is_python(fx.target):  # getitem of a tuple, SymInt arithmetic
                result = fx.target(*(self.resolve(a) for a in fx.args))
            elif self._folds_cached(fx):
                result = self._fold(fx)
            else:
                node = Node(self, fx)
                result = self.ops.LOWERINGS[node.op](node)
        except FrontendError as e:
            raise FrontendError(f"{label}: {e}") from None
        except (VerifyException, ValueError, TypeError) as e:
            raise FrontendError(f"{label}: {e}") from None
        self.values[fx.name] = result

    def _fold(self, fx: Any) -> Any:
        """Run the op in torch on constant arguments."""
        import torch

        def to_torch(a: Any) -> Any:
            if isinstance(a, np.ndarray):
                return torch.from_numpy(np.array(a))
            if isinstance(a, list | tuple):
                return type(a)(to_torch(x) for x in a)
            return a

        args = [to_torch(self.resolve(a)) for a in fx.args]
        kwargs = {k: to_torch(self.resolve(v)) for k, v in fx.kwargs.items()}
        with torch.no_grad():
            out = fx.target(*args, **kwargs)
        first = next((a for a in fx.all_input_nodes if a.name in self.values), None)
        name = None
        if first is not None:
            src = self.values[first.name]
            name = self.const_name(src, "") if isinstance(src, np.ndarray) else None

        def to_np(o: Any) -> Any:
            if isinstance(o, torch.Tensor):
                array = _numpy(o)
                self.name_constant(array, name or fx.name)
                return array
            if isinstance(o, list | tuple):
                return type(o)(to_np(x) for x in o)
            return o

        return to_np(out)


def _is_python(target: Any) -> bool:
    return getattr(target, "__module__", None) in ("_operator", "operator", "math") or \
        getattr(target, "__name__", "").startswith("sym_") and \
        getattr(target, "overloadpacket", None) is None


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ir.numpy_dtype(ir.element_type(np.float32)))
    return np.array(t.numpy())


def input_names(module: ModuleOp) -> list[str]:
    return ir.io_names(ir.main_func(module))[0]


def example_feed(module: ModuleOp, example_inputs: Sequence[Any]) -> Mapping[str, np.ndarray]:
    """The example inputs keyed by the imported module's input names."""
    return {k: _numpy(v) for k, v in zip(input_names(module), example_inputs, strict=False)}
