"""ONNX exporter: a qnn module (fp32 or fake-quant) as a standard ONNX model that
onnxruntime runs.

    model = export_onnx(module, "net_fake_quant.onnx", opset=17)

How a module is written:

1. `@main`'s arguments and results are the graph inputs and outputs, under the
   names `qcc.ir.io_names` gives. A result that is an argument, a constant or an
   output already written goes through an `Identity`.
2. Every `qnn.constant` an exported node reads is an initializer named after the
   constant's `name` attribute (made unique); constants nothing reads are dropped.
   Derived constants (a transposed dense weight, a reshaped scale) keep the
   name of the constant they come from; shapes, axes and pads are int64
   initializers named after the node.
3. Each op becomes one or a few standard ONNX nodes (`onnx_ops` for the qnn ops,
   `onnx_quant` for the quant ops). A node is named after the op's `name`
   attribute (else its `id`, else its kind and position), made unique; the extra
   nodes of an expansion add a suffix. The tensor an op computes is
   `<node>_output_<i>`.
4. Every op is tried before anything is reported: the ops without an export (or
   whose properties the chosen opset cannot express) are listed in one
   `ExportError`.
5. The model imports opset `opset` of the default domain (13 or newer, since
   Softmax, Split and the per-axis QDQ are written with their opset-13 meaning;
   element types newer than the opset, such as float8 before 19, are refused),
   has that opset's IR version, and passes `onnx.checker`. With `path` it is
   written atomically (a temporary file, then a rename); a model over protobuf's
   2 GB limit keeps its initializers in `<file>.data` next to it.

Fake quantization (the `<name>_fake_quant.onnx` of DESIGN.md): `quant.fake_quant`
becomes `QuantizeLinear` + `DequantizeLinear` with the scale (float32, scalar or
one per channel) and zero point (the storage type: int8 or uint8) as
initializers, `axis` when per-axis, and the exact type in the QuantizeLinear's
doc_string for qcc's frontend to read back; see `onnx_quant.emit_qdq` for storage
types ONNX lacks (4 bits before opset 21, narrow ranges).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, Operation, OpResult, SSAValue

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.exporters import onnx_dynamic, onnx_ops, onnx_quant  # noqa: F401 (they fill EXPORTS)
from qcc.exporters.onnx_base import (  # re-exported: the API of qcc.exporters.onnx
    _OPSET_FOR_TYPE,
    DEFAULT_OPSET,
    EXPORTS,
    MIN_OPSET,
    Export,
    ExportError,
    OpWriter,
    Unsupported,
    _attr_str,
    _Names,
    element_dtype,
    export,
    full_range,
    onnx_dtype,
    qdq_storage,
)
from qcc.fileio import check_output, write_file

_PROTOBUF_LIMIT = 2**31 - 2**24
"""A model larger than this (2 GB less some slack) keeps its weights outside."""

__all__ = ["export_onnx", "ExportError", "Unsupported", "OpWriter", "EXPORTS", "export",
           "MIN_OPSET", "qdq_storage", "full_range", "onnx_dtype", "save_atomic"]


def _exports() -> dict[type, Export]:
    return EXPORTS


# ---------------------------------------------------------------- exporter


class _Exporter:
    def __init__(self, module: ModuleOp, opset: int) -> None:
        self.opset = opset
        self.fn = ir.main_func(module)
        self.input_names, self.output_names = ir.io_names(self.fn)
        self.tensors = _Names()
        self.node_names = _Names()
        self.names: dict[SSAValue, str] = {}
        self.model = onnx.ModelProto()
        self.nodes: list[onnx.NodeProto] = []
        self.data_bytes = 0
        self._derived: dict[tuple[SSAValue, str], str] = {}
        self.dtypes: set[int] = set()

    # -- tensors

    def tensor(self, value: SSAValue) -> str:
        name = self.names.get(value)
        if name is not None:
            return name
        owner = value.owner
        if isinstance(owner, qnn.ConstantOp):
            name = self.initializer(ir.array_of(owner), _attr_str(owner, "name") or "const")
            self.names[value] = name
            return name
        raise AssertionError(f"{value} is used before it is computed")

    def result_name(self, value: SSAValue) -> str:
        name = self.names.get(value)
        if name is None:
            assert isinstance(value, OpResult)
            base = self.op_base.get(value.op, "value")
            name = self.tensors.unique(f"{base}_output_{value.index}")
            self.names[value] = name
        return name

    def initializer(self, array: np.ndarray, base: str) -> str:
        """Add an initializer (built in place: weights are copied once)."""
        name = self.tensors.unique(base)
        a = np.asarray(array)
        if not a.flags.c_contiguous:
            a = a.copy()  # (np.ascontiguousarray would make a 0-d array 1-d)
        dtype = onnx_dtype(a.dtype)
        self.dtypes.add(dtype)
        tensor = self.model.graph.initializer.add()
        if a.dtype.kind in "fiu" and a.dtype.isnative:  # (ml_dtypes' types are kind V)
            tensor.name, tensor.data_type = name, dtype
            tensor.dims.extend(a.shape)
            tensor.raw_data = a.tobytes()
        else:  # bool, ml_dtypes (int4 packs two a byte): onnx's own conversion
            tensor.CopyFrom(numpy_helper.from_array(a, name))
        self.data_bytes += a.nbytes
        return name

    def derived(self, value: SSAValue, key: str, make: Callable[[], np.ndarray],
                suffix: str = "") -> str:
        name = self._derived.get((value, key))
        if name is None:
            owner = value.owner
            assert isinstance(owner, qnn.ConstantOp)
            name = self.initializer(make(), (_attr_str(owner, "name") or "const") + suffix)
            self._derived[(value, key)] = name
        return name

    # -- the graph

    def run(self, model_name: str) -> onnx.ModelProto:
        block = self.fn.body.block
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        for name in [*self.input_names, *self.output_names]:
            if name in self.tensors.used:
                raise ExportError(f"the name '{name}' is given to two graph inputs/outputs")
            self.tensors.used.add(name)
        for arg, name in zip(block.args, self.input_names, strict=True):
            self.names[arg] = name
        identities: list[tuple[SSAValue, str]] = []
        for value, name in zip(ret.operands, self.output_names, strict=True):
            if (isinstance(value, OpResult) and value not in self.names
                    and not self._skips(value.op)):
                self.names[value] = name
            else:
                identities.append((value, name))
        self.op_base = self._op_names(block)
        problems: dict[str, list[str]] = {}
        failed: set[Operation] = set()
        for op in block.ops:
            if isinstance(op, func.ReturnOp) or self._skips(op):
                continue
            if self.quiet_after_failure and any(v.owner in failed for v in op.operands):
                failed.add(op)  # its input is already reported
                continue
            label = self.op_base[op]
            try:
                fn = self._export_of(op)
                if fn is None:
                    raise Unsupported("no ONNX export")
                self._check(op)
                fn(OpWriter(self, op, label))
            except Unsupported as e:
                problems.setdefault(f"{op.name}: {e}", []).append(label)
                failed.add(op)
        if problems:
            lines = [f"  {what} ({', '.join(names)})" for what, names in sorted(problems.items())]
            raise ExportError(f"{len(problems)} kind{'s' if len(problems) > 1 else ''} of op "
                              f"{self.what_fails} (op: why (ops)):\n" + "\n".join(lines))
        for value, name in identities:
            self.nodes.append(helper.make_node(
                "Identity", [self.tensor(value)], [name],
                name=self.node_names.unique(f"{name}/Identity")))
        return self._model(block, ret, model_name)

    # Hooks that the integer exporter changes.

    quiet_after_failure = False
    """Leave out of the error the ops whose input already failed."""

    @property
    def what_fails(self) -> str:
        return f"cannot be written as ONNX opset {self.opset}"

    def _skips(self, op: Operation) -> bool:
        """Ops that write no node of their own (constants become initializers)."""
        return isinstance(op, qnn.ConstantOp)

    def _export_of(self, op: Operation):
        return _exports().get(type(op))

    def _check(self, op: Operation) -> None:
        _check_quantized_operands(op)

    def _op_names(self, block) -> dict[Operation, str]:
        """Base name of every op's nodes: `name`, else `id`, else kind_index."""
        names: dict[Operation, str] = {}
        for i, op in enumerate(block.ops):
            names[op] = _attr_str(op, "name") or _attr_str(op, "id") or \
                f"{op.name.split('.')[-1]}_{i}"
        return names

    def _element_dtype(self, t: Attribute):
        """The numpy dtype a tensor of type `t` has in the exported graph."""
        return element_dtype(t, self.opset)

    def _value_info(self, name: str, t: Attribute,
                    dim_names: Sequence[str] = ()) -> onnx.ValueInfoProto:
        """A symbolic dim is written as its source name (`dim_names`), else unnamed."""
        try:
            dtype = onnx_dtype(self._element_dtype(t))
        except Unsupported as e:
            raise ExportError(f"tensor '{name}': {e}") from None
        self.dtypes.add(dtype)
        assert isinstance(t, TensorType)
        dims: list[int | str | None] = []
        for i, d in enumerate(t.get_shape()):
            if d != DYNAMIC_INDEX:
                dims.append(d)
            else:
                dims.append(dim_names[i] if i < len(dim_names) and dim_names[i] else None)
        return helper.make_tensor_value_info(name, dtype, dims)

    def _model(self, block, ret: func.ReturnOp, model_name: str) -> onnx.ModelProto:
        in_dims, out_dims = _dim_names(self.fn.arg_attrs), _dim_names(self.fn.res_attrs)
        inputs = [self._value_info(n, a.type, in_dims[i] if i < len(in_dims) else ())
                  for i, (a, n) in enumerate(zip(block.args, self.input_names, strict=True))]
        outputs = [self._value_info(n, v.type, out_dims[i] if i < len(out_dims) else ())
                   for i, (v, n) in enumerate(zip(ret.operands, self.output_names,
                                                  strict=True))]
        graph_io = set(self.input_names) | set(self.output_names)
        infos = []
        for op in block.ops:
            if isinstance(op, qnn.ConstantOp | func.ReturnOp):
                continue
            for r in op.results:
                name = self.names.get(r)
                if name is not None and name not in graph_io:
                    infos.append(self._value_info(name, r.type))
        model = self.model
        graph = model.graph
        graph.name = model_name
        graph.node.extend(self.nodes)
        graph.input.extend(inputs)
        graph.output.extend(outputs)
        graph.value_info.extend(infos)
        opsets = [helper.make_opsetid("", self.opset)]
        model.opset_import.extend(opsets)
        model.producer_name, model.producer_version = "qcc", _version()
        late = sorted({helper.tensor_dtype_to_string(t).split(".")[-1]: v
                       for t in self.dtypes if (v := _OPSET_FOR_TYPE.get(t, 0)) > self.opset
                       }.items())
        if late:
            listed = ", ".join(f"{name} (opset {v})" for name, v in late)
            raise ExportError(f"element types newer than opset {self.opset}: {listed}")
        # the opset's IR version covers its element types (newer ones are refused above)
        model.ir_version = helper.find_min_ir_version_for(opsets)
        return model


def _dim_names(attrs) -> list[list[str]]:
    """Per argument/result of `@main`, the source names of its dims (`qnn.dims`)."""
    out: list[list[str]] = []
    for d in attrs.data if attrs is not None else ():
        names = d.data.get("qnn.dims")
        out.append([n.data for n in names.data] if names is not None else [])
    return out


def _version() -> str:
    from qcc import __version__

    return __version__


_MOVES_DATA = (qnn.ReshapeOp, qnn.TransposeOp, qnn.BroadcastOp, qnn.ConcatOp, qnn.SplitOp,
               qnn.SliceOp, qnn.GatherOp, qnn.GatherElementsOp, qnn.GatherNdOp,
               qnn.IdentityOp, qnn.DropoutOp, qnn.DynamicBroadcastOp, qnn.DynamicReshapeOp,
               qnn.DynamicSliceOp)
"""qnn ops that only move elements, so a quantized tensor is its storage to them."""


def _check_quantized_operands(op: Operation) -> None:
    """Integer arithmetic on quantized types (qcc-realize-int8's output) has no
    standard-op form here: only the quant ops and data movement read them."""
    if isinstance(op, _MOVES_DATA) or op.name.startswith("quant."):
        return
    for v in [*op.operands, *op.results]:
        if quant.quantized_element(v.type) is not None:
            raise Unsupported("operates on quantized integers (export the fake-quant "
                              "module, before qcc-realize-int8)")


# ------------------------------------------------------------------ entry


def export_onnx(module: ModuleOp, path: str | os.PathLike | None = None, *,
                opset: int = DEFAULT_OPSET, model_name: str | None = None,
                ) -> onnx.ModelProto:
    """Write `module`'s `@main` as an ONNX model of the default domain's `opset`
    (13 or newer); with `path`, also save it (atomically). Returns the model.

    Raises `ExportError` listing every op that has no export (or none at this
    opset)."""
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is not supported: qcc writes opsets "
                         f"{MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    name = model_name or (Path(path).stem if path is not None else "main")
    exporter = _Exporter(module, opset)
    model = exporter.run(name)
    if exporter.data_bytes < _PROTOBUF_LIMIT:
        data = model.SerializeToString()
        onnx.checker.check_model(data)
        if path is not None:
            _write_atomic(Path(path), data)
    elif path is not None:
        save_atomic(model, Path(path))
        onnx.checker.check_model(str(path))
    return model


def _write_atomic(path: Path, data: bytes) -> None:
    write_file(path, data)


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """Write `model` to `path` through a temporary file and a rename. Past the
    protobuf limit the initializers go to `<file>.data` (renamed first), and
    `model`'s initializers then refer to that file (`onnx.save_model` moves them)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if sum(len(t.raw_data) for t in model.graph.initializer) < _PROTOBUF_LIMIT:
        _write_atomic(path, model.SerializeToString())
        return
    data_name = f"{path.name}.data"
    check_output(path)
    check_output(directory / data_name)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=directory))
    try:
        onnx.save_model(model, tmpdir / path.name, save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name)
        write_file(directory / data_name, lambda tmp: os.replace(tmpdir / data_name, tmp))
        write_file(path, lambda tmp: os.replace(tmpdir / path.name, tmp))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
