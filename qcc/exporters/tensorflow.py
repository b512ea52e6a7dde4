"""TensorFlow exporter: a qnn module (fp32 or fake-quant) as a frozen GraphDef that
TensorFlow runs, written with qcc's GraphDef schema (no TensorFlow needed).

    graph = export_graphdef(module, "net_fake_quant.pb")

How a module is written:

1. `@main`'s arguments are Placeholders and its results `Identity` nodes, under the
   names `qcc.ir.io_names` gives; shapes and layouts are the module's (a model
   imported from TensorFlow keeps its NHWC inputs and outputs).
2. Layout: TensorFlow's CPU convolutions and pools are channels-last, qnn is
   channels-first. A value is held either as is or channels-last; convolutions and
   pools produce channels-last values, element-wise ops and per-tensor fake-quant
   keep the layout, and one Transpose is written only where an op needs the other
   (a `qnn.transpose` to NCHW of a channels-last model input costs nothing).
3. Weights are Const nodes in TensorFlow's filter layouts (HWIO, depthwise HWCM,
   Conv2DBackpropInput HWOI, MatMul KN).
4. `quant.fake_quant` becomes FakeQuantWithMinMaxVars (per tensor) or
   FakeQuantWithMinMaxVarsPerChannel (per axis; the quantized axis is put last, where
   TensorFlow's op wants it): min = (qmin - z) s, max = (qmax - z) s, num_bits, and
   narrow_range when the storage range drops its lowest value. TensorFlow nudges
   min/max so zero is exact and rounds half up; qcc rounds half to even: the two
   agree within one quantization step.
5. Every op is tried before anything is reported: the ops without an export are
   listed in one ExportError, and no file is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from xdsl.dialects.builtin import ModuleOp

from qcc.exporters import tensorflow_ops  # noqa: F401 (it fills HANDLERS)
from qcc.exporters.onnx import ExportError
from qcc.exporters.tensorflow_base import Writer
from qcc.frontends.tensorflow import graph_pb2 as pb

__all__ = ["export_graphdef", "ExportError"]


def export_graphdef(module: ModuleOp, path: str | os.PathLike | None = None) -> pb.GraphDef:
    """Write `module` as a GraphDef (atomically to `path` if given) and return it."""
    graph = Writer(module).run()
    if path is not None:
        out = Path(path)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(graph.SerializeToString())
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return graph
