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

Symbolic dims (the batch, `Dim.AUTO` by default) stay `?`: the program is lowered
twice with its symbols bound to two probe sizes and the modules are generalized
(`qcc.frontends.symbolic`); `qnn.dims` names the batch "batch", other dims by torch's
symbol. `input_shapes` binds them to sizes instead. `_dims` is the one place that turns a
torch shape into an IR shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import VerifyException

from qcc import ir
from qcc.frontends.errors import FrontendError
from qcc.frontends.pytorch.node import Node, _dims, _int, _op_name, location

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
        return _import(model, source or "<ExportedProgram>", None, input_shapes)
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
    defaulted = dynamic_shapes is None
    if defaulted:
        dynamic_shapes = batch_dynamic(model, example_inputs)
    try:
        program = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as e:  # the exporter's reasons come as many exception types
        raise FrontendError(f"{label}: torch.export cannot trace the module: "
                            f"{_first_lines(e)}\nWhat to do: {SUGGESTION}") from None
    return _import(program, label, model, input_shapes, fallback=defaulted)


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
    return _import(program, source, None, input_shapes)


def _import(program: Any, source: str, model: Any,
            input_shapes: Mapping[str, Sequence[int]] | None,
            fallback: bool = False) -> ModuleOp:
    """Lower `program`; its symbolic input dims (Dim.AUTO, Dim) not fixed by
    `input_shapes` stay `?`: the program is lowered at two probe sizes and the two
    modules generalized (`qcc.frontends.symbolic`). When they cannot stay symbolic,
    that is an error, or with `fallback` (the batch qcc chose, not the user) a warning
    and the example inputs' sizes."""
    from qcc.frontends.symbolic import probes_for

    first = _Importer(program, source, model, input_shapes)
    symbols, exprs = first.symbolic_dims()
    if not symbols:
        return first.run()
    probes = probes_for(source, symbols, "fix some with input_shapes=")
    modules = []
    for probe in probes:
        imp = _Importer(program, source, model, input_shapes, decomposed=first.program)
        imp.bindings.update({expr: probe[name] for name, expr in exprs.items()})
        modules.append(imp.run())
    try:
        return _generalizer(source, symbols, probes, first).run(*modules)
    except FrontendError as e:
        if not fallback:
            raise
        import warnings

        warnings.warn(f"{e}. The batch is fixed at the example inputs' sizes instead.",
                      stacklevel=3)
        return first.run()


def _generalizer(source: str, symbols: Any, probes: Any, first: _Importer) -> Any:
    from qcc.frontends.symbolic import Generalizer

    class _Generalizer(Generalizer):
        def fix(self) -> str:
            shapes = first.user_shapes()
            python = ", ".join(
                f"'{k}': ({', '.join('N' if (k, a) in symbols else str(d) for a, d in enumerate(v))}"
                f"{',' if len(v) == 1 else ''})"
                for k, v in shapes.items() if any(inp == k for inp, _ in symbols))
            return f"pass input_shapes={{{python}}} with the sizes you will run"

    return _Generalizer(source, symbols, probes)


def _first_lines(e: BaseException, n: int = 3) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[:n])


class _Importer:
    def __init__(self, program: Any, source: str, model: Any,
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 decomposed: Any = None) -> None:
        from qcc.frontends.pytorch import data_ops, ops

        del data_ops  # registers its lowerings
        self.ops = ops
        self.source = source
        self.model = model
        self.program = decomposed if decomposed is not None else ops.decompose(program)
        self.input_shapes = dict(input_shapes or {})
        self.bindings: dict[Any, int] = {}
        self.graph = ir.Graph()
        self.values: dict[str, Any] = {}
        # id(array) -> (array, name): the array is kept so that its id stays unique.
        self.names: dict[int, tuple[np.ndarray, str]] = {}
        self.materialized: dict[int, tuple[np.ndarray, SSAValue]] = {}
        self.used: set[str] = set()
        self.fold_cache: dict[str, bool] = {}
        from torch.export.graph_signature import InputKind

        self.constant_inputs = {s.arg.name for s in self.program.graph_signature.input_specs
                                if s.kind != InputKind.USER_INPUT}

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

    # -- symbolic dims

    def _user_inputs(self) -> list[tuple[str, Any]]:
        from torch.export.graph_signature import InputKind

        nodes = {n.name: n for n in self.program.graph_module.graph.nodes
                 if n.op == "placeholder"}
        out = []
        for spec in self.program.graph_signature.input_specs:
            val = nodes[spec.arg.name].meta.get("val")
            if spec.kind == InputKind.USER_INPUT and hasattr(val, "shape"):
                out.append((spec.arg.name, val))
        return out

    def user_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: _dims(val) for name, val in self._user_inputs()}

    def symbolic_dims(self) -> tuple[dict[tuple[str, int], str], dict[str, Any]]:
        """((input, axis) -> dim name, dim name -> torch symbol) of the inputs' dims
        that are a torch symbol not fixed by `input_shapes` (-1 there keeps it). The
        first symbol found at dim 0 is named "batch", the others keep torch's name."""
        symbols: dict[tuple[str, int], str] = {}
        exprs: dict[str, Any] = {}
        names: dict[Any, str] = {}
        for name, val in self._user_inputs():
            given = self.input_shapes.get(name)
            for axis, d in enumerate(val.shape):
                expr = getattr(getattr(d, "node", None), "expr", None)
                if expr is None or not expr.is_symbol:
                    continue
                if given is not None and axis < len(given) and given[axis] >= 0:
                    continue
                if expr not in names:
                    names[expr] = "batch" if axis == 0 and "batch" not in exprs \
                        else str(expr)
                    exprs[names[expr]] = expr
                symbols[(name, axis)] = names[expr]
        return symbols, exprs

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
            folds = self._folds_cached(node)  # in graph order: no deep recursion
            if name in self.ops.LOWERINGS or _is_python(node.target) or folds:
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
        return all(n.op == "placeholder" and n.name in self.constant_inputs
                   or (n.op == "call_function" and self._folds_cached(n))
                   for n in inputs if isinstance(n, torch.fx.Node))

    def _folds_cached(self, node: Any) -> bool:
        if node.name not in self.fold_cache:
            self.fold_cache[node.name] = self._folds(node)
        return self.fold_cache[node.name]

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
                if int(size) >= 0:  # -1 keeps the dim symbolic
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
