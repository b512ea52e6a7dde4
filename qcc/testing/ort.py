"""onnxruntime as an oracle whose arithmetic is the same on every x86 CPU.

With its default graph optimizations onnxruntime rewrites a QDQ graph
(DequantizeLinear -> Conv -> QuantizeLinear) into QLinearConv and runs it on its
uint8 x int8 kernels. On CPUs with AVX2 but without AVX-512 VNNI (or AVX-VNNI) those
kernels add each pair of products with VPMADDUBSW, which saturates at int16
(255 * 127 * 2 > 32767), so the result depends on the CPU. `session()` turns graph
optimizations off: every node runs as written, QDQ as float arithmetic between
exact quantize / dequantize, the same everywhere.

Integer operators written in the graph itself (QLinearConv, ConvInteger,
MatMulInteger: qcc's integer and deployable exports) run the same kernels either
way; qcc writes their activations as int8, for which onnxruntime has no saturating
path. A graph with uint8 activations times int8 weights in such operators is exact on
AVX2 CPUs only with the level-2 rewrite `session.x64quantprecision=1` turns on
(`session(model, u8s8_exact=True)`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort


def session(model: onnx.ModelProto | str | os.PathLike[str] | bytes, *,
            u8s8_exact: bool = False) -> ort.InferenceSession:
    """A CPU session of `model` with graph optimizations off (or, with `u8s8_exact`,
    the extended level plus onnxruntime's exact uint8 x int8 mode)."""
    options = ort.SessionOptions()
    if u8s8_exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.add_session_config_entry("session.x64quantprecision", "1")
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(model: Any, feeds: dict[str, np.ndarray], **options: bool) -> dict[str, np.ndarray]:
    """Outputs of `model` on `feeds` by name, from `session(model)`."""
    sess = model if isinstance(model, ort.InferenceSession) else session(model, **options)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))
