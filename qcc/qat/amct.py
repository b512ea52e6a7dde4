"""AMCT's retrain vocabulary over `qcc.qat`:

    create_quant_retrain_config("retrain.json", "model.onnx", weight_bits=4)
    qmodel = create_quant_retrain_model("retrain.json", "model.onnx", "calib.npz")
    ... train qmodel ...
    save_quant_retrain_model("retrain.json", qmodel, "out/model")   # _fake_quant.onnx, ...

`ulq_quantize` (activations) and `arq_retrain` (weights) name AMCT's retrain
algorithms: range learning and learned weights on an ARQ-initialised grid. Any
path `qcc.load` reads (or a ModuleOp / torch.nn.Module) is accepted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from qcc.qat.config import QatConfig, QatError


def create_quant_retrain_config(config_file: str | os.PathLike, model=None,
                                **config) -> dict:
    """Write the retrain config (QatConfig fields; `model` is only named, AMCT style)."""
    cfg = QatConfig.of(config)
    text = {"version": 1, "retrain_data_quant_config": {"algo": "ulq_quantize",
                                                        "bits": cfg.act_bits},
            "retrain_weight_quant_config": {"algo": "arq_retrain", "bits": cfg.weight_bits},
            "qat": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    Path(config_file).write_text(json.dumps(text, indent=2))
    return text


def _config(config_file: str | os.PathLike) -> QatConfig:
    try:
        text = json.loads(Path(config_file).read_text())
        fields = text["qat"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QatError(f"{config_file}: not a retrain config written by "
                       f"create_quant_retrain_config ({e})") from None
    return QatConfig.of({k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def create_quant_retrain_model(config_file: str | os.PathLike, model, calib,
                               example_inputs=None):
    """The trainable fake-quant module (`qcc.qat.prepare` with the saved config)."""
    from qcc import load
    from qcc.qat import prepare

    if isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() not in (
            ".onnx", ".mlir"):
        model = load(model)
    return prepare(model, calib, _config(config_file), example_inputs)


def restore_quant_retrain_model(config_file: str | os.PathLike, model, calib,
                                record_file: str | os.PathLike, example_inputs=None):
    """A retrain module with the weights and ranges of a saved state dict."""
    import torch

    qmodel = create_quant_retrain_model(config_file, model, calib, example_inputs)
    qmodel.load_state_dict(torch.load(record_file))
    return qmodel


def save_quant_retrain_model(config_file: str | os.PathLike, qmodel,
                             save_path: str | os.PathLike) -> dict[str, Path]:
    """convert, then AMCT's files: `<save_path>_fake_quant.onnx`, `_record.txt`,
    `_encodings.json`, plus `_retrain.pt` (the state dict restore reads)."""
    import torch

    from qcc.flow.amct import save_model
    from qcc.qat import convert

    _config(config_file)
    paths = save_model(convert(qmodel), save_path)
    prefix = Path(save_path)
    paths["state"] = prefix.with_name(prefix.name + "_retrain.pt")
    inner = getattr(qmodel, "module", qmodel)
    torch.save(inner.state_dict(), paths["state"])
    return paths
