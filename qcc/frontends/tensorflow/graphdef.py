"""Reading frozen TensorFlow GraphDefs with qcc's own schema (`graph.proto`, no
TensorFlow needed): the file, constant tensors, attribute values, tensor names.

TensorFlow's tensor names are `node` (output 0), `node:1`, and `^node` for a control
edge; `tensor_name` normalizes them to `node:i`.
"""

from __future__ import annotations

import os
from typing import Any

import ml_dtypes
import numpy as np

from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graph_pb2 as pb

GraphDef = pb.GraphDef
NodeDef = pb.NodeDef
DT = pb.DataType

DTYPES: dict[int, np.dtype] = {
    DT.DT_FLOAT: np.dtype(np.float32), DT.DT_DOUBLE: np.dtype(np.float64),
    DT.DT_HALF: np.dtype(np.float16), DT.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DT.DT_INT8: np.dtype(np.int8), DT.DT_UINT8: np.dtype(np.uint8),
    DT.DT_INT16: np.dtype(np.int16), DT.DT_UINT16: np.dtype(np.uint16),
    DT.DT_INT32: np.dtype(np.int32), DT.DT_UINT32: np.dtype(np.uint32),
    DT.DT_INT64: np.dtype(np.int64), DT.DT_UINT64: np.dtype(np.uint64),
    DT.DT_BOOL: np.dtype(np.bool_),
}
"""TensorFlow DataType -> numpy dtype (the types qcc can hold)."""

_FIELDS = {DT.DT_FLOAT: "float_val", DT.DT_DOUBLE: "double_val", DT.DT_INT32: "int_val",
           DT.DT_INT16: "int_val", DT.DT_INT8: "int_val", DT.DT_UINT8: "int_val",
           DT.DT_UINT16: "int_val", DT.DT_INT64: "int64_val", DT.DT_BOOL: "bool_val",
           DT.DT_HALF: "half_val", DT.DT_BFLOAT16: "half_val", DT.DT_UINT32: "uint32_val",
           DT.DT_UINT64: "uint64_val"}


def read_graphdef(path: str | os.PathLike) -> GraphDef:
    """Parse a binary GraphDef; anything else is one FrontendError."""
    source = os.fspath(path)
    if os.path.isdir(source):
        raise FrontendError(f"{source}: a directory (a SavedModel?) needs TensorFlow to be "
                            "frozen: qcc.load(dir) does it when tensorflow is installed")
    if not os.path.isfile(source):
        raise FrontendError(f"{source}: no such file")
    with open(source, "rb") as f:
        data = f.read()
    graph = GraphDef()
    try:
        graph.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise FrontendError(f"{source}: not a TensorFlow GraphDef (the parser says: {e}); "
                            "qcc reads frozen binary GraphDefs (.pb)") from None
    if not graph.node or any(not n.op for n in graph.node):
        raise FrontendError(f"{source}: not a TensorFlow GraphDef (no nodes with an op); "
                            "qcc reads frozen binary GraphDefs (.pb)")
    return graph


def dtype_of(dt: int, what: str) -> np.dtype:
    if dt not in DTYPES:
        raise FrontendError(f"{what} has type {DT.Name(dt) if dt in DT.values() else dt}, "
                            "which qcc does not support")
    return DTYPES[dt]


def tensor_to_array(t: pb.TensorProto, what: str) -> np.ndarray:
    """A TensorProto as a numpy array (raw content, or typed values where the last
    value repeats to fill the shape, as TensorFlow reads them)."""
    dtype = dtype_of(t.dtype, what)
    shape = tuple(int(d.size) for d in t.tensor_shape.dim)
    size = int(np.prod(shape)) if shape else 1
    if t.tensor_content:
        flat = np.frombuffer(t.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        values = list(getattr(t, _FIELDS[t.dtype]))
        if t.dtype in (DT.DT_HALF, DT.DT_BFLOAT16):
            flat = np.asarray(values, np.uint16).view(dtype)
        else:
            flat = np.asarray(values, dtype)
        if flat.size == 0:
            flat = np.zeros(size, dtype)
        elif flat.size < size:
            flat = np.concatenate([flat, np.full(size - flat.size, flat[-1], dtype)])
    if flat.size != size:
        raise FrontendError(f"{what}: {flat.size} values for shape {list(shape)}")
    return flat.reshape(shape).copy()


def array_to_tensor(array: np.ndarray) -> pb.TensorProto:
    """A numpy array as a TensorProto with raw little-endian content."""
    a = np.asarray(array)
    t = pb.TensorProto()
    t.dtype = datatype_of(a.dtype)  # type: ignore[assignment]
    t.tensor_shape.dim.extend(pb.TensorShapeProto.Dim(size=int(d)) for d in a.shape)
    t.tensor_content = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return t


def datatype_of(dtype: np.dtype) -> int:
    for dt, d in DTYPES.items():
        if d == dtype:
            return dt
    raise FrontendError(f"no TensorFlow type for numpy dtype {dtype}")


def attr_value(v: pb.AttrValue, what: str) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "s":
        return v.s.decode(errors="replace")
    if kind in ("i", "f", "b", "type", "placeholder"):
        return getattr(v, kind)
    if kind == "shape":
        return shape_dims(v.shape)
    if kind == "tensor":
        return tensor_to_array(v.tensor, what)
    if kind == "list":
        lv = v.list
        for field in ("s", "i", "f", "b", "type", "shape", "tensor"):
            items = list(getattr(lv, field))
            if items:
                if field == "s":
                    return [s.decode(errors="replace") for s in items]
                if field == "shape":
                    return [shape_dims(s) for s in items]
                if field == "tensor":
                    return [tensor_to_array(s, what) for s in items]
                return items
        return []
    return None


def shape_dims(s: pb.TensorShapeProto) -> list[int] | None:
    """Dims of a shape (-1 unknown); None when the rank is unknown."""
    if s.unknown_rank:
        return None
    return [int(d.size) for d in s.dim]


def tensor_name(name: str) -> str:
    """`node` -> `node:0`; `node:i` stays; control inputs (`^node`) are not tensors."""
    node, sep, index = name.rpartition(":")
    if sep and index.isdigit():
        return name
    return f"{name}:0"


def node_of(name: str) -> str:
    return tensor_name(name.lstrip("^")).rpartition(":")[0]
