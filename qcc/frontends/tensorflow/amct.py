"""AMCT's TensorFlow vocabulary over a graph, on qcc's passes (the same code as
`qcc quantize` and `qcc.flow.amct`):

    from qcc.frontends.tensorflow import amct
    amct.create_quant_config("quant.json", graph, skip_layers=["conv1/Conv2D"])
    calib = amct.quantize_model(graph, "quant.json", "record.txt")  # observers inserted
    amct.calibrate(calib, {"x": batches})          # AMCT: session.run over batch_num batches
    amct.save_model(calib, ["Identity"], "record.txt", "out/model")
    # -> out/model_quantized.pb (FakeQuantWithMinMaxVars; TensorFlow runs it),
    #    out/model_fake_quant.onnx, and record.txt

`graph` is anything `qcc.load` reads for TensorFlow: a frozen `.pb`, a `tf.Graph`,
a GraphDef message, a SavedModel directory or a Keras model. AMCT modifies the user's
tf.Graph in place; here `quantize_model` returns the calibration graph as a qcc
module, and `save_model` writes it (`pb_model` may also be that module).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr

from qcc import ir
from qcc.exporters.onnx import ExportError
from qcc.flow import amct as _amct
from qcc.quant import records

RECORD_ATTR = "qcc.record_file"


def _graph(graph: Any, **load_options: Any) -> ModuleOp:
    if isinstance(graph, ModuleOp):
        return graph
    from qcc.frontends.tensorflow import load_tensorflow
    from qcc.passes import run

    module = load_tensorflow(graph, **load_options)
    run(module, "canonicalize")
    return module


def create_quant_config(config_file: str | os.PathLike, graph: Any,
                        skip_layers: Iterable[str] | None = None, batch_num: int | None = None,
                        activation_offset: bool = True,
                        config_defination: str | os.PathLike | None = None) -> dict:
    """Write the resolved per-layer config of `graph` (layers are named after their
    TensorFlow nodes, e.g. "model/conv2d/Conv2D")."""
    return _amct.create_quant_config(config_file, _graph(graph), skip_layers, batch_num,
                                     activation_offset, config_defination)


def quantize_model(graph: Any, config_file: str | os.PathLike,
                   record_file: str | os.PathLike) -> ModuleOp:
    """The calibration graph: BatchNorm fused, observers inserted per the config. The
    record file is written by `calibrate`."""
    module = _amct.quantize_model(config_file, _graph(graph))
    module.attributes[RECORD_ATTR] = StringAttr(os.fspath(record_file))
    return module


def calibrate(module: ModuleOp, data: str | os.PathLike | Mapping[str, np.ndarray],
              batch_num: int | None = None) -> None:
    """Run the calibration data through the graph (AMCT: the user's session.run
    loop); observers become fake-quant and the record file is written."""
    _amct.calibrate(module, data, batch_num)
    record = module.attributes.get(RECORD_ATTR)
    if isinstance(record, StringAttr):
        records.write_atomic(record.data, records.record_text(module))


def save_model(pb_model: ModuleOp, outputs: Sequence[str], record_file: str | os.PathLike,
               save_path: str | os.PathLike) -> dict[str, Path]:
    """Write `<save_path>_quantized.pb` (a GraphDef with FakeQuantWithMinMaxVars that
    TensorFlow runs), `<save_path>_fake_quant.onnx`, the record and encodings.
    `outputs` must name outputs of the graph."""
    from qcc.exporters.tensorflow import export_graphdef

    if not isinstance(pb_model, ModuleOp) or not any(
            op.name == "quant.fake_quant" for op in pb_model.walk()):
        raise ExportError("save_model needs the calibrated graph (quantize_model, then "
                          "calibrate)")
    names = ir.io_names(ir.main_func(pb_model))[1]
    unknown = [o for o in outputs if o.split(":")[0] not in names]
    if unknown:
        raise ExportError(f"save_model: outputs {', '.join(unknown)} are not outputs of the "
                          f"graph ({', '.join(names)})")
    paths = _amct.save_model(pb_model, save_path)
    prefix = Path(save_path)
    paths["quantized"] = prefix.with_name(prefix.name + "_quantized.pb")
    export_graphdef(pb_model, paths["quantized"])
    record = Path(record_file)
    if not record.exists():
        records.write_atomic(record, records.record_text(pb_model))
    paths["record_file"] = record
    return paths
