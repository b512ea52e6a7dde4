"""Exporters: qcc modules as files that other tools run.

- `qcc.exporters.onnx.export_onnx`: an fp32 or fake-quant (QDQ) ONNX model.
"""

from __future__ import annotations


def export_onnx(*args, **kwargs):
    """See `qcc.exporters.onnx.export_onnx` (imported on first use: it needs onnx)."""
    from qcc.exporters.onnx import export_onnx as _export_onnx

    return _export_onnx(*args, **kwargs)


__all__ = ["export_onnx"]
