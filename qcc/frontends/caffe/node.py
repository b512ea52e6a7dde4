"""One Caffe layer being lowered (`Layer`), and Caffe's pooling output size, shared
by the importer, the layer lowerings and the exporter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc.dialects import qnn
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.caffe.reader import blob_array, blob_shape, squeeze_legacy
from qcc.frontends.errors import FrontendError


def caffe_pool_size(size: int, k: int, s: int, pad: int, ceil: bool) -> int:
    """pooling_layer.cpp: ceil or floor, then drop a last window starting in the pad."""
    span = size + 2 * pad - k
    out = (-(-span // s) if ceil else span // s) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


class Layer:
    """A Caffe layer being lowered: its parameters, bottoms as qnn values, blobs as
    arrays, and `emit` that builds qnn ops carrying the layer's name."""

    def __init__(self, importer: Any, proto: pb.LayerParameter,
                 bottoms: list[SSAValue]) -> None:
        self.importer = importer
        self.proto = proto
        self.name = proto.name
        self.type = proto.type
        self.bottoms = bottoms

    def shape(self, i: int = 0) -> tuple[int, ...]:
        t = self.bottoms[i].type
        assert isinstance(t, TensorType)
        return tuple(t.get_shape())

    @property
    def num_tops(self) -> int:
        return len(self.proto.top)

    def blob(self, i: int, shape: Sequence[int] | None = None, what: str = "") -> np.ndarray:
        """Blob `i` (in `shape` when given; legacy 4-D blobs padded with leading 1s
        are accepted). A missing blob or another shape is an error naming both."""
        blobs = self.importer.blobs_of(self.proto)
        label = what or f"blob {i}"
        if i >= len(blobs):
            where = (f"the caffemodel {self.importer.weights_source}"
                     if self.importer.weights_source else "the prototxt (no caffemodel given)")
            raise FrontendError(f"has no {label} in {where}: {len(blobs)} blob(s) for this "
                                "layer; pass the caffemodel trained with this prototxt")
        array = blob_array(blobs[i], label)
        if shape is None:
            return array
        shape = tuple(int(d) for d in shape)
        fitted = squeeze_legacy(array, shape)
        if fitted is None:
            raise FrontendError(f"{label} has shape {list(array.shape)}, but the layer "
                                f"needs {list(shape)}")
        return fitted

    def blob_shape(self, i: int) -> tuple[int, ...]:
        return blob_shape(self.importer.blobs_of(self.proto)[i])

    def const(self, array: np.ndarray | np.floating | float, suffix: str) -> SSAValue:
        return self.importer.graph.const(np.asarray(array, np.float32), name=self.name + suffix)

    def emit_op(self, cls, *operands: SSAValue | Sequence[SSAValue] | None, suffix: str = "",
                **props) -> Operation:
        op = cls.make(*operands, name=self.name + suffix, **props)
        if isinstance(op, qnn.LAYER_OPS):
            op.attributes["source"] = StringAttr(f"caffe.{self.type}")
        self.importer.graph.add(op)
        return op

    def emit(self, cls, *operands: SSAValue | Sequence[SSAValue] | None, suffix: str = "",
             **props) -> SSAValue:
        return self.emit_op(cls, *operands, suffix=suffix, **props).results[0]


