"""Building, printing and parsing qcc IR.

- `Graph`: a builder for `builtin.module { func.func @main(...) { qnn.* } }`.
- `constant(array)` / `array_of(value)`: numpy arrays in and out of `qnn.constant`.
  The bytes live in a `DenseIntOrFPElementsAttr`; `array_of` is a zero-copy view.
- `print_module` / `parse_module`: textual IR. Constants with more than
  `INLINE_LIMIT` elements print as `dense_resource<key>`; their bytes go to a
  sidecar file `<stem>.weights` next to the `.mlir` (named by the module attribute
  `qcc.weights`), or, when there is no file (stdout), to MLIR's
  `{-# dialect_resources #-}` section as hex, which stays parseable by mlir-opt.
"""

from __future__ import annotations

import contextvars
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    BytesAttr,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    DictionaryAttr,
    Float4E2M1FNType,
    Float8E4M3FNType,
    Float8E4M3FNUZType,
    Float8E5M2FNUZType,
    Float8E5M2Type,
    Float8E8M0FNUType,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    MemRefType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    VectorType,
    bf16,
    f16,
    f32,
    f64,
    i1,
    i8,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError

from qcc.dialects import qnn

INLINE_LIMIT = 64
"""Constants with more elements than this print as `dense_resource`."""

WEIGHTS_ATTR = "qcc.weights"
_MAGIC = b"QCCWEIGHTS\x00\x01"
_ALIGN = 64

# ---------------------------------------------------------------- dtypes

u8 = IntegerType(8, Signedness.UNSIGNED)

_TO_NUMPY: list[tuple[Attribute, np.dtype]] = [
    (f32, np.dtype(np.float32)),
    (f64, np.dtype(np.float64)),
    (f16, np.dtype(np.float16)),
    (i64, np.dtype(np.int64)),
    (i32, np.dtype(np.int32)),
    (i8, np.dtype(np.int8)),
    (u8, np.dtype(np.uint8)),
    (i1, np.dtype(np.bool_)),
    (IntegerType(16), np.dtype(np.int16)),
    (IntegerType(16, Signedness.UNSIGNED), np.dtype(np.uint16)),
    (IntegerType(32, Signedness.UNSIGNED), np.dtype(np.uint32)),
    (IntegerType(64, Signedness.UNSIGNED), np.dtype(np.uint64)),
    # Narrow types through ml_dtypes (one element a byte, as numpy holds them).
    (bf16, np.dtype(ml_dtypes.bfloat16)),
    (Float8E4M3FNType(), np.dtype(ml_dtypes.float8_e4m3fn)),
    (Float8E4M3FNUZType(), np.dtype(ml_dtypes.float8_e4m3fnuz)),
    (Float8E5M2Type(), np.dtype(ml_dtypes.float8_e5m2)),
    (Float8E5M2FNUZType(), np.dtype(ml_dtypes.float8_e5m2fnuz)),
    (Float4E2M1FNType(), np.dtype(ml_dtypes.float4_e2m1fn)),
    (Float8E8M0FNUType(), np.dtype(ml_dtypes.float8_e8m0fnu)),
    (IntegerType(4), np.dtype(ml_dtypes.int4)),
    (IntegerType(4, Signedness.UNSIGNED), np.dtype(ml_dtypes.uint4)),
    (IntegerType(2), np.dtype(ml_dtypes.int2)),
    (IntegerType(2, Signedness.UNSIGNED), np.dtype(ml_dtypes.uint2)),
]


def numpy_dtype(element_type: Attribute) -> np.dtype:
    for t, d in _TO_NUMPY:
        if t == element_type:
            return d
    if isinstance(element_type, Float32Type | Float64Type | Float16Type):
        return np.dtype(f"f{element_type.bitwidth // 8}")
    raise TypeError(f"no numpy dtype for element type {element_type}")


def element_type(dtype: np.dtype | type) -> Attribute:
    dtype = np.dtype(dtype)
    for t, d in _TO_NUMPY:
        if d == dtype:
            return t
    raise TypeError(f"unsupported array dtype {dtype}")


def tensor_type(shape: Sequence[int | None], dtype: np.dtype | type | Attribute = np.float32):
    """A tensor type; a dim that is None or negative is symbolic (`?`)."""
    et = dtype if isinstance(dtype, Attribute) else element_type(dtype)
    return TensorType(et, [DYNAMIC_INDEX if d is None or d < 0 else int(d) for d in shape])


# ------------------------------------------------------------- constants


def dense(array: np.ndarray | float | int) -> DenseIntOrFPElementsAttr:
    """A dense attribute holding a copy of `array`'s bytes."""
    a = np.asarray(array)
    if a.dtype == np.float64 and not isinstance(array, np.ndarray):
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a).reshape(a.shape)  # keeps 0-d arrays 0-d
    t = tensor_type(a.shape, a.dtype)
    return DenseIntOrFPElementsAttr(t, BytesAttr(a.tobytes()))


def constant(array: np.ndarray | float | int, name: str | None = None) -> qnn.ConstantOp:
    return qnn.ConstantOp(dense(array), name=name)


def array_of(value: SSAValue | Operation | Attribute) -> np.ndarray:
    """The numpy array of a constant (read-only view of its bytes)."""
    attr = value
    if isinstance(value, SSAValue):
        attr = value.owner  # type: ignore[assignment]
    if isinstance(attr, qnn.ConstantOp):
        attr = attr.value
    if isinstance(attr, DenseResourceAttr):
        raise ValueError(f"dense_resource<{attr.resource_handle.data}> was never resolved")
    if not isinstance(attr, DenseIntOrFPElementsAttr):
        raise TypeError(f"not a constant: {value}")
    t = attr.type
    dtype = numpy_dtype(t.element_type)
    flat = np.frombuffer(attr.data.data, dtype=dtype)
    shape = tuple(t.get_shape())
    if flat.size == 1 and int(np.prod(shape)) != 1:
        return np.broadcast_to(flat[0], shape)  # splat
    return flat.reshape(shape)


def constant_value(value: SSAValue) -> np.ndarray | None:
    """The array if `value` is produced by a `qnn.constant`, else None."""
    if isinstance(value.owner, qnn.ConstantOp):
        return array_of(value.owner)
    return None


# ----------------------------------------------------------------- graph


class Graph:
    """Builds `func.func @main` with named inputs and outputs.

        g = Graph()
        x = g.input("x", (1, 3, 8, 8))
        w = g.const(np.ones((4, 3, 3, 3), np.float32))
        y = g.add(qnn.ConvOp.make(x, w, pads=(1, 1, 1, 1)))
        module = g.finish({"y": y})
    """

    def __init__(self) -> None:
        self.block = Block()
        self.input_names: list[str] = []

    def input(self, name: str, shape: Sequence[int | None], dtype=np.float32) -> SSAValue:
        """A graph input; a None (or negative) dim is symbolic."""
        arg = self.block.insert_arg(tensor_type(shape, dtype), len(self.block.args))
        arg.name_hint = _ssa_name(name)
        self.input_names.append(name)
        return arg

    def add(self, op: Operation) -> SSAValue:
        """Append `op` and return its first result."""
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def op(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    def const(self, array: np.ndarray | float | int, name: str | None = None) -> SSAValue:
        return self.add(constant(array, name))

    def finish(self, outputs: dict[str, SSAValue] | Sequence[SSAValue]) -> ModuleOp:
        if not isinstance(outputs, dict):
            outputs = {f"output{i}": v for i, v in enumerate(outputs)}
        values = list(outputs.values())
        self.block.add_op(func.ReturnOp(*values))
        ftype = func.FunctionType.from_lists(
            [a.type for a in self.block.args], [v.type for v in values])
        fn = func.FuncOp("main", ftype, Region(self.block))
        fn.arg_attrs = _name_attrs(self.input_names)
        fn.res_attrs = _name_attrs(list(outputs))
        return ModuleOp([fn])


def _name_attrs(names: Iterable[str]):
    from xdsl.dialects.builtin import ArrayAttr

    return ArrayAttr([DictionaryAttr({"qnn.name": StringAttr(n)}) for n in names])


def _ssa_name(name: str) -> str | None:
    s = re.sub(r"[^A-Za-z0-9_$.]", "_", name)
    if not s or s[0].isdigit():
        s = "v" + s
    return s


def main_func(module: ModuleOp) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            return op
    raise ValueError("module has no func.func @main")


def io_names(fn: func.FuncOp) -> tuple[list[str], list[str]]:
    """Input and output names of `@main` (from `qnn.name`, else arg index)."""

    def names(attrs, n: int, prefix: str) -> list[str]:
        out = []
        for i in range(n):
            name = None
            if attrs is not None and i < len(attrs.data):
                v = attrs.data[i].data.get("qnn.name")
                name = v.data if isinstance(v, StringAttr) else None
            out.append(name or f"{prefix}{i}")
        return out

    ft = fn.function_type
    return (names(fn.arg_attrs, len(ft.inputs.data), "input"),
            names(fn.res_attrs, len(ft.outputs.data), "output"))


# ------------------------------------------------------------- printing

_SINK: contextvars.ContextVar[_ResourceSink | None] = contextvars.ContextVar(
    "qcc_resource_sink", default=None)


class _ResourceSink:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.arrays: dict[str, DenseIntOrFPElementsAttr] = {}
        self._by_id: dict[int, str] = {}
        self.hints: dict[int, str] = {}

    def key_for(self, attr: DenseIntOrFPElementsAttr, hint: str) -> str:
        existing = self._by_id.get(id(attr))
        if existing is not None:
            return existing
        base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "cst"
        if base[0].isdigit():
            base = "w" + base
        key, n = base, 0
        while key in self.arrays:
            n += 1
            key = f"{base}_{n}"
        self.arrays[key] = attr
        self._by_id[id(attr)] = key
        return key


def print_constant_value(printer: Printer, value: Attribute) -> None:
    """Called by `qnn.constant`'s printer: inline, resource or hex."""
    sink = _SINK.get()
    if isinstance(value, DenseIntOrFPElementsAttr) and _is_large(value):
        if sink is not None:
            key = sink.key_for(value, sink.hints.get(id(value), "cst"))
            printer.print_string(f"dense_resource<{key}> : ")
            printer.print_attribute(value.type)
            return
        printer.print_string(f'dense<"0x{value.data.data.hex().upper()}"> : ')
        printer.print_attribute(value.type)
        return
    if isinstance(value, DenseIntOrFPElementsAttr) and not _all_finite(value):
        # xDSL prints inf/nan as bit patterns that its parser reads back as integers;
        # the hex-string form carries the exact bytes (a splat is written out in full).
        data = np.broadcast_to(array_of(value), value.type.get_shape()).tobytes()
        printer.print_string(f'dense<"0x{data.hex().upper()}"> : ')
        printer.print_attribute(value.type)
        return
    printer.print_attribute(value)


def _all_finite(value: DenseIntOrFPElementsAttr) -> bool:
    dtype = numpy_dtype(value.type.element_type)
    if dtype.kind in "biu":
        return True
    flat = np.frombuffer(value.data.data, dtype)
    return bool(np.isfinite(flat.astype(np.float32, copy=False)).all())


def _is_large(value: DenseIntOrFPElementsAttr) -> bool:
    """More than INLINE_LIMIT elements and not a splat (splats print as `dense<v>`)."""
    if len(value) <= INLINE_LIMIT:
        return False
    flat = np.frombuffer(value.data.data, numpy_dtype(value.type.element_type))
    return not bool((flat.view(np.uint8).reshape(len(flat), -1) == flat[:1].view(
        np.uint8)).all())


def print_module(module: ModuleOp, path: str | os.PathLike | None = None,
                 stream: io.TextIOBase | None = None, *, generic: bool = False) -> str:
    """Print `module`. With `path`, write `path` and its sidecar `<stem>.weights`
    (both atomically); otherwise return the text with large constants as a
    `{-# dialect_resources #-}` section."""
    sink = _ResourceSink(INLINE_LIMIT)
    for op in module.walk():
        if isinstance(op, qnn.ConstantOp) and isinstance(op.value, DenseIntOrFPElementsAttr):
            if _is_large(op.value):
                name = op.attributes.get("name")
                sink.hints[id(op.value)] = name.data if isinstance(name, StringAttr) else "cst"
    weights_file = None
    if path is not None and sink.hints:
        weights_file = Path(path).with_suffix(".weights")
        module.attributes[WEIGHTS_ATTR] = StringAttr(weights_file.name)
    token = _SINK.set(sink)
    try:
        out = io.StringIO()
        printer = Printer(stream=out, print_generic_format=generic)
        printer.print_op(module)
        out.write("\n")
    finally:
        _SINK.reset(token)
        if weights_file is not None:
            del module.attributes[WEIGHTS_ATTR]
    text = out.getvalue()
    if path is None:
        text = text.rstrip("\n") + _resource_section(sink.arrays) + "\n"
        if stream is not None:
            stream.write(text)
        return text
    if weights_file is not None:
        _write_weights(weights_file, sink.arrays)
    _atomic_write(Path(path), text.encode())
    return text


def _resource_section(arrays: dict[str, DenseIntOrFPElementsAttr]) -> str:
    if not arrays:
        return ""
    lines = ["", "", "{-#", "  dialect_resources: {", "    builtin: {"]
    items = sorted(arrays.items())
    for i, (key, attr) in enumerate(items):
        blob = (4).to_bytes(4, "little").hex().upper() + attr.data.data.hex().upper()
        comma = "," if i < len(items) - 1 else ""
        lines.append(f'      {key}: "0x{blob}"{comma}')
    lines += ["    }", "  }", "#-}"]
    return "\n".join(lines)


def _atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            for chunk in data:
                f.write(chunk)
    os.replace(tmp, path)


def _write_weights(path: Path, arrays: dict[str, DenseIntOrFPElementsAttr]) -> None:
    """Sidecar layout: magic, u64 header length, JSON header, 64-byte aligned blobs."""
    index, offset = {}, 0
    for key, attr in arrays.items():
        n = len(attr.data.data)
        index[key] = {"offset": offset, "nbytes": n}
        offset += -(-n // _ALIGN) * _ALIGN
    header = json.dumps(index).encode()
    start = -(-(len(_MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    head = _MAGIC + len(header).to_bytes(8, "little") + header
    head += b"\0" * (start - len(head))

    def chunks():
        yield head
        for attr in arrays.values():
            data = attr.data.data
            yield data
            yield b"\0" * ((-len(data)) % _ALIGN)

    _atomic_write(path, chunks())


def read_weights(path: Path) -> dict[str, bytes]:
    raw = path.read_bytes()
    if not raw.startswith(_MAGIC):
        raise ValueError(f"{path}: not a qcc weights file")
    hlen = int.from_bytes(raw[len(_MAGIC):len(_MAGIC) + 8], "little")
    hstart = len(_MAGIC) + 8
    index = json.loads(raw[hstart:hstart + hlen])
    base = -(-(hstart + hlen) // _ALIGN) * _ALIGN
    view = memoryview(raw)
    return {k: bytes(view[base + v["offset"]: base + v["offset"] + v["nbytes"]])
            for k, v in index.items()}


# --------------------------------------------------------------- parsing


class IRError(Exception):
    """A user-facing error about an IR file: the message names the file."""


def parse_module(text: str | bytes, path: str | os.PathLike | None = None,
                 ctx=None) -> ModuleOp:
    """Parse textual IR and resolve `dense_resource` constants from the sidecar
    file (or the `{-# dialect_resources #-}` section)."""
    from qcc.registry import make_context

    ctx = ctx or make_context()
    name = str(path) if path is not None else "<string>"
    if isinstance(text, bytes):
        text = text.decode()
    _blob_storage(ctx).clear()  # xDSL keeps resource blobs on the shared dialect object
    try:
        module = Parser(ctx, text, name).parse_module()
        resolve_resources(module, ctx, Path(path).parent if path is not None else None, name)
    finally:
        _blob_storage(ctx).clear()
    return module


def _blob_storage(ctx) -> dict[str, str]:
    interface = ctx.get_dialect("builtin").get_interface(OpAsmDialectInterface)
    return interface._blob_storage if interface is not None else {}


def load_module(path: str | os.PathLike, ctx=None) -> ModuleOp:
    return parse_module(Path(path).read_text(), path, ctx)


def resolve_resources(module: ModuleOp, ctx, base_dir: Path | None, name: str) -> None:
    pending = [(op, op.value) for op in module.walk()
               if isinstance(op, qnn.ConstantOp) and isinstance(op.value, DenseResourceAttr)]
    if not pending:
        return
    blobs: dict[str, bytes] = {}
    sidecar = module.attributes.get(WEIGHTS_ATTR)
    if isinstance(sidecar, StringAttr):
        wpath = (base_dir or Path(".")) / sidecar.data
        if not wpath.exists():
            raise IRError(f"{name}: weights file '{wpath}' named by {WEIGHTS_ATTR} "
                          "does not exist; keep it next to the .mlir file")
        blobs.update(read_weights(wpath))
    storage = _blob_storage(ctx)
    for key, hexstr in storage.items():
        if hexstr:
            blobs.setdefault(key, bytes.fromhex(hexstr[2 + 8:]))
    storage.clear()
    missing = sorted({attr.resource_handle.data for _, attr in pending
                      if attr.resource_handle.data not in blobs})
    if missing:
        raise IRError(f"{name}: no data for dense_resource<{', '.join(missing)}> "
                      f"(no sidecar weights file and no dialect_resources entry)")
    for op, attr in pending:
        t = attr.type
        assert isinstance(t, TensorType | VectorType | MemRefType)  # every builtin ShapedType
        data = blobs[attr.resource_handle.data]
        expected = int(np.prod(t.get_shape())) * numpy_dtype(t.element_type).itemsize
        if len(data) != expected:
            raise IRError(f"{name}: dense_resource<{attr.resource_handle.data}> has "
                          f"{len(data)} bytes, {t} needs {expected}")
        op.properties["value"] = DenseIntOrFPElementsAttr(t, BytesAttr(data))
    if WEIGHTS_ATTR in module.attributes:
        del module.attributes[WEIGHTS_ATTR]


__all__ = [
    "Graph", "constant", "dense", "array_of", "constant_value", "print_module",
    "parse_module", "load_module", "main_func", "io_names", "tensor_type",
    "numpy_dtype", "element_type", "IRError", "ParseError", "INLINE_LIMIT",
]
