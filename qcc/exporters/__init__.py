"""Exporters: qcc modules as files that other tools run.

- `qcc.exporters.onnx.export_onnx`: an fp32 or fake-quant (QDQ) ONNX model.
"""

from __future__ import annotations

__all__ = ["export_onnx"]


def __getattr__(name: str):
    if name == "export_onnx":  # imported on first use: it loads onnx
        from qcc.exporters.onnx import export_onnx

        return export_onnx
    raise AttributeError(name)
