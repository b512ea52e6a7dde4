"""Reading Caffe files with no Caffe installed: text `.prototxt` through protobuf's
text format, binary `.caffemodel` through `ParseFromString`, both into qcc's own
`caffe_pb2` (Caffe's field numbers, see caffe.proto).

- `read_net(path)`: a NetParameter from a text prototxt; a syntax error names the
  file, line and column.
- `read_weights(path)`: a NetParameter from a binary caffemodel; anything else is
  "not a Caffe NetParameter".
- `layers_of(net)`: the net's layers in the current `layer` form; the legacy V1
  `layers` are converted (their enum type becomes the type name).
- `blob_array(blob)`: a BlobProto as a float32 numpy array (shape, or the legacy
  num/channels/height/width; double data too).
"""

from __future__ import annotations

import os

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.errors import FrontendError

V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}
"""V1LayerParameter.LayerType enum name -> the layer type string of the `layer` form."""


def read_net(path: str | os.PathLike) -> pb.NetParameter:
    """The NetParameter of a text prototxt."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise FrontendError(f"{source}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise FrontendError(f"{source}: not a text prototxt (a binary .caffemodel goes "
                            "to --weights / weights=)") from None
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        where = f"{source}:{e.GetLine()}:{e.GetColumn()}" if e.GetLine() else source
        message = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise FrontendError(f"{where}: {message}") from None
    return net


def read_weights(path: str | os.PathLike) -> pb.NetParameter:
    """The NetParameter of a binary caffemodel."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FrontendError(f"{source}: cannot read ({e.strerror})") from None
    net = pb.NetParameter()
    try:
        net.ParseFromString(data)
        parsed = True
    except DecodeError:
        parsed = False
    if not parsed or not (net.layer or net.layers):
        raise FrontendError(f"{source}: not a Caffe NetParameter (a binary .caffemodel "
                            "with layers and their blobs)")
    return net


def layers_of(net: pb.NetParameter) -> list[pb.LayerParameter]:
    """The layers in the `layer` form (legacy V1 `layers` converted)."""
    if net.layer:
        return list(net.layer)
    return [_from_v1(v1) for v1 in net.layers]


def _from_v1(v1: pb.V1LayerParameter) -> pb.LayerParameter:
    layer = pb.LayerParameter(name=v1.name, bottom=v1.bottom, top=v1.top)
    enum = pb.V1LayerParameter.LayerType.Name(v1.type)
    layer.type = V1_TYPES.get(enum, enum)
    layer.blobs.extend(v1.blobs)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    for field, value in v1.ListFields():
        if field.name.endswith("_param") and field.name in pb.LayerParameter.DESCRIPTOR.fields_by_name:
            getattr(layer, field.name).CopyFrom(value)
    return layer


def blob_shape(blob: pb.BlobProto) -> tuple[int, ...]:
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return (len(blob.data) or len(blob.double_data),)


def blob_array(blob: pb.BlobProto, what: str) -> np.ndarray:
    """The blob's values in its shape; `what` names it in errors."""
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    shape = blob_shape(blob)
    if int(np.prod(shape)) != array.size:
        raise FrontendError(f"{what} has {array.size} values for shape {list(shape)}")
    return array.reshape(shape)


def squeeze_legacy(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`array` in `shape` if it is that shape padded with leading 1s (the legacy 4-D
    form of a vector or matrix), else None."""
    if array.shape == shape:
        return array
    lead = array.ndim - len(shape)
    if lead > 0 and array.shape[lead:] == shape and all(d == 1 for d in array.shape[:lead]):
        return array.reshape(shape)
    return None
