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
from typing import Any

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation, OpResult, SSAValue

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.quant import UniformQuantizedType, storage_range

MIN_OPSET = 13
"""Softmax, Split, Squeeze... and per-axis QuantizeLinear are written with their
opset-13 meaning; older opsets are refused."""

DEFAULT_OPSET = 17

_PROTOBUF_LIMIT = 2**31 - 2**24
"""A model larger than this (2 GB less some slack) keeps its weights outside."""

__all__ = ["export_onnx", "ExportError", "Unsupported", "OpWriter", "EXPORTS", "export",
           "MIN_OPSET", "qdq_storage", "full_range", "onnx_dtype", "save_atomic"]


class ExportError(Exception):
    """A module cannot be written as ONNX; the message lists every op that cannot."""


class Unsupported(Exception):
    """Raised by an op's export: why this op cannot be written (with this opset)."""


Export = Callable[["OpWriter"], None]
EXPORTS: dict[type, Export] = {}
"""op class -> function writing its nodes (filled by this file and `onnx_ops`)."""


def export(*op_types: type) -> Callable[[Export], Export]:
    def register(fn: Export) -> Export:
        for t in op_types:
            EXPORTS[t] = fn
        return fn

    return register


def _exports() -> dict[type, Export]:
    from qcc.exporters import onnx_ops, onnx_quant  # noqa: F401 (they register exports)

    return EXPORTS


# ------------------------------------------------------------------- dtypes

_OPSET_FOR_TYPE: dict[int, int] = {
    TensorProto.FLOAT8E4M3FN: 19, TensorProto.FLOAT8E4M3FNUZ: 19, TensorProto.FLOAT8E5M2: 19,
    TensorProto.FLOAT8E5M2FNUZ: 19, TensorProto.INT4: 21, TensorProto.UINT4: 21,
    TensorProto.FLOAT4E2M1: 23, TensorProto.FLOAT8E8M0: 24, TensorProto.INT2: 25,
    TensorProto.UINT2: 25,
}
"""Element types that the default domain's ops (Cast, Identity...) accept only
from some opset on (and the IR version of that opset)."""


def onnx_dtype(dtype: np.dtype | type) -> int:
    """The ONNX element type of a numpy dtype (ml_dtypes ones included)."""
    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (KeyError, TypeError, ValueError):
        raise Unsupported(f"ONNX has no element type for {np.dtype(dtype)}") from None


def qdq_storage(qtype: UniformQuantizedType, opset: int) -> np.dtype:
    """The numpy dtype QuantizeLinear writes for `qtype` at `opset`: int8/uint8;
    int4/uint4 and int16/uint16 from opset 21; 4-bit storage before opset 21
    is held in 8 bits (see `emit_qdq`)."""
    bits, signed = qtype.bits, qtype.signed
    if bits == 8 or (bits == 4 and opset < 21):
        return np.dtype(np.int8 if signed else np.uint8)
    if bits == 4:
        return np.dtype(ml_dtypes.int4 if signed else ml_dtypes.uint4)
    if bits == 16:
        if opset < 21:
            raise Unsupported("16-bit QuantizeLinear needs opset 21")
        return np.dtype(np.int16 if signed else np.uint16)
    raise Unsupported(f"ONNX has no QuantizeLinear to {bits}-bit integers")


def full_range(dtype: np.dtype) -> tuple[int, int]:
    if dtype in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)):
        return storage_range(4, dtype == np.dtype(ml_dtypes.int4))
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def element_dtype(t: Attribute, opset: int) -> np.dtype:
    """numpy dtype of the ONNX tensor holding values of type `t` (a quantized
    tensor is its storage)."""
    assert isinstance(t, TensorType), t
    et = t.element_type
    if isinstance(et, UniformQuantizedType):
        return qdq_storage(et, opset)
    try:
        return ir.numpy_dtype(et)
    except TypeError:
        raise Unsupported(f"no ONNX element type for {et}") from None


# ------------------------------------------------------------------- names


class _Names:
    """Unique names in one namespace: `base`, then `base_1`, `base_2`..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def unique(self, base: str) -> str:
        name, n = base, 0
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name


def _attr_str(op: Operation, key: str) -> str | None:
    """A string attribute (or property, as `quant.observe`'s `id`) of `op`."""
    value = op.attributes.get(key) or op.properties.get(key)
    return value.data if isinstance(value, StringAttr) and value.data else None


# --------------------------------------------------------------- one op


class OpWriter:
    """Writes the nodes of one op: its operands as tensor names, new initializers,
    nodes named after the op."""

    def __init__(self, exporter: _Exporter, op: Operation, base: str) -> None:
        self.exporter = exporter
        self.op = op
        self.base = base
        self.opset = exporter.opset
        self._named = False

    # -- operands and results

    def input(self, i: int) -> str:
        return self.tensor(self.op.operands[i])

    def tensor(self, value: SSAValue | None) -> str:
        """Tensor name of `value` ("" for an absent optional operand)."""
        return "" if value is None else self.exporter.tensor(value)

    def out(self, i: int = 0) -> str:
        return self.exporter.result_name(self.op.results[i])

    def array(self, value: SSAValue | None) -> np.ndarray | None:
        """The array of a `qnn.constant` operand, else None."""
        if value is None or not isinstance(value.owner, qnn.ConstantOp):
            return None
        return ir.array_of(value.owner)

    def shape(self, value: SSAValue) -> tuple[int, ...]:
        assert isinstance(value.type, TensorType)
        return tuple(value.type.get_shape())

    def dtype(self, value: SSAValue) -> np.dtype:
        return element_dtype(value.type, self.opset)

    def prop(self, key: str) -> Attribute | None:
        return self.op.properties.get(key)

    # -- new tensors

    def tmp(self, tag: str) -> str:
        """A fresh intermediate tensor name."""
        return self.exporter.tensors.unique(f"{self.base}_{tag}")

    def const(self, array: np.ndarray | np.generic | Sequence[int] | float, tag: str,
              dtype: np.dtype | type | None = None) -> str:
        """A new initializer `<node>_<tag>` (an int sequence is int64)."""
        a = np.asarray(array, dtype=dtype if dtype is not None else (
            np.int64 if isinstance(array, list | tuple) else None))
        return self.exporter.initializer(a, f"{self.base}_{tag}")

    def ints(self, values: Sequence[int], tag: str) -> str:
        return self.const(np.asarray([int(v) for v in values], np.int64), tag)

    def scalar(self, value: float | int, like: SSAValue | np.dtype, tag: str) -> str:
        """A 0-d initializer of `like`'s element type."""
        dtype = like if isinstance(like, np.dtype) else self.dtype(like)
        return self.const(np.asarray(value).astype(dtype), tag)

    def derived(self, value: SSAValue, key: str, fn: Callable[[np.ndarray], np.ndarray],
                ) -> str | None:
        """`fn` of a constant operand as an initializer named after the constant
        (made once per constant and `key`), or None when `value` is not constant."""
        array = self.array(value)
        if array is None:
            return None
        return self.exporter.derived(value, key, lambda: fn(array))

    # -- nodes

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             suffix: str | None = None, doc_string: str | None = None, **attrs: Any) -> None:
        """Append a node. The first node without `suffix` takes the op's name; the
        others are `<name>/<suffix>` (or `<name>/<op_type>`)."""
        if suffix is None and not self._named:
            self._named = True
            name = self.base
        else:
            name = f"{self.base}/{suffix or op_type}"
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, list(inputs), list(outputs),
                                name=self.exporter.node_names.unique(name),
                                doc_string=doc_string, **attrs)
        self.exporter.nodes.append(node)


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

    def _value_info(self, name: str, t: Attribute) -> onnx.ValueInfoProto:
        try:
            dtype = onnx_dtype(self._element_dtype(t))
        except Unsupported as e:
            raise ExportError(f"tensor '{name}': {e}") from None
        self.dtypes.add(dtype)
        assert isinstance(t, TensorType)
        return helper.make_tensor_value_info(name, dtype, list(t.get_shape()))

    def _model(self, block, ret: func.ReturnOp, model_name: str) -> onnx.ModelProto:
        inputs = [self._value_info(n, a.type) for a, n in
                  zip(block.args, self.input_names, strict=True)]
        outputs = [self._value_info(n, v.type) for v, n in
                   zip(ret.operands, self.output_names, strict=True)]
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


def _version() -> str:
    from qcc import __version__

    return __version__


_MOVES_DATA = (qnn.ReshapeOp, qnn.TransposeOp, qnn.BroadcastOp, qnn.ConcatOp, qnn.SplitOp,
               qnn.SliceOp, qnn.GatherOp, qnn.GatherElementsOp, qnn.GatherNdOp,
               qnn.IdentityOp, qnn.DropoutOp)
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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=directory))
    try:
        onnx.save_model(model, tmpdir / path.name, save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name)
        os.replace(tmpdir / data_name, directory / data_name)
        os.replace(tmpdir / path.name, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
