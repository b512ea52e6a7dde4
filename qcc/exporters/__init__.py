"""Exporters: qcc modules as files that other tools run.

- `export_onnx` (`qcc.exporters.onnx`): an fp32 or fake-quant (QDQ) ONNX model.
- `export_onnx_int` (`qcc.exporters.onnx_int`): an integer ONNX model with standard
  operators (QLinearConv, ConvInteger, MatMulInteger) that onnxruntime runs.
- `export_deploy` (`qcc.exporters.deploy`): the Ascend deployable model
  (AscendQuant / AscendDequant, int8 weights, int32 biases).
"""

from __future__ import annotations

__all__ = ["export_onnx", "export_onnx_int", "export_deploy"]

_WHERE = {"export_onnx": "qcc.exporters.onnx", "export_onnx_int": "qcc.exporters.onnx_int",
          "export_deploy": "qcc.exporters.deploy"}


def __getattr__(name: str):
    if name in _WHERE:  # imported on first use: they load onnx
        from importlib import import_module

        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(name)
