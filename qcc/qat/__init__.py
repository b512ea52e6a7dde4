"""Quantization-aware training: the fake-quant IR as a trainable torch module.

    qmodel = qcc.qat.prepare("model.onnx", "calib.npz", {"weight_bits": 4, "act_bits": 4})
    ... train qmodel with your own loop (DistributedDataParallel included) ...
    module = qcc.qat.convert(qmodel)          # quant.fake_quant with the learned ranges

torch is imported only when `prepare`/`convert` are called.
"""

from __future__ import annotations

from qcc.qat.config import QatConfig, QatError


def prepare(model, calib, config=None, example_inputs=None, weights=None):
    """See `qcc.qat.build.prepare`."""
    from qcc.qat.build import prepare as run

    return run(model, calib, config, example_inputs, weights)


def convert(qmodel):
    """See `qcc.qat.build.convert`."""
    from qcc.qat.build import convert as run

    return run(qmodel)


__all__ = ["QatConfig", "QatError", "convert", "prepare"]
