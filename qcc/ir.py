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

import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    BytesAttr,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    DictionaryAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    VectorType,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError

from qcc.dialects import qnn
from qcc.dialects.constants import (  # noqa: F401 (re-exported: qcc.ir is the API)
    INLINE_LIMIT,
    _is_large,
    array_of,
    dense,
    element_type,
    numpy_dtype,
    print_constant_value,
    tensor_type,
    u8,
)
from qcc.dialects.constants import SINK as _SINK
from qcc.dialects.constants import ResourceSink as _ResourceSink
from qcc.errors import QccError

WEIGHTS_ATTR = "qcc.weights"
_MAGIC = b"QCCWEIGHTS\x00\x01"
_ALIGN = 64

# ------------------------------------------------------------- constants

def constant(array: np.ndarray | float | int, name: str | None = None) -> qnn.ConstantOp:
    return qnn.ConstantOp(dense(array), name=name)


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

    def input(self, name: str, shape: Sequence[int], dtype=np.float32) -> SSAValue:
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


class IRError(QccError):
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
