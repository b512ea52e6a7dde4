"""AMCT-style steps over qcc's passes, for users coming from Ascend's toolkit:

    cfg = create_quant_config("quant.json", "model.onnx", skip_layers=["fc"])
    module = quantize_model("quant.json", "model.onnx")     # observers inserted
    calibrate(module, "calib.npz")                           # observers -> fake_quant
    save_model(module, "out/model")                          # out/model_fake_quant.onnx, ...

Each step is the same code `qcc quantize` runs (`qcc.flow.quantize`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from qcc import passes, registry
from qcc.quant import config as qconfig
from qcc.quant import config_json

__all__ = ["create_quant_config", "quantize_model", "calibrate", "save_model"]


def _module(model: str | os.PathLike | ModuleOp, **load_options) -> ModuleOp:
    if isinstance(model, ModuleOp):
        return model
    from qcc import load

    module = load(model, **load_options)
    passes.run(module, "canonicalize")
    return module


def create_quant_config(config_file: str | os.PathLike, model: str | os.PathLike | ModuleOp,
                        skip_layers: Iterable[str] | None = None,
                        batch_num: int | None = None, activation_offset: bool = True,
                        config_defination: str | os.PathLike | None = None) -> dict:
    """Write the resolved per-layer config (AMCT's `create_quant_config`).
    `config_defination` (AMCT's spelling) is a simplified .cfg file."""
    module = _module(model)
    if config_defination is not None:
        simple = qconfig.load_simple_config(config_defination)
    else:
        simple = qconfig.SimpleConfig(batch_num=batch_num, activation_offset=activation_offset,
                                      skip_layers=tuple(skip_layers or ()))
    cfg = qconfig.resolve(module, simple, None if isinstance(model, ModuleOp) else str(model))
    config_json.dump_json(cfg, config_file)
    return cfg


def quantize_model(config_file: str | os.PathLike, model: str | os.PathLike | ModuleOp
                   ) -> ModuleOp:
    """Fuse (when the config allows) and insert observers (AMCT's `quantize_model`)."""
    from qcc.passes.insert_quant import insert_observers

    cfg = config_json.load_json(config_file)
    module = _module(model)
    if cfg.get("do_fusion", True) and "qcc-fuse-bn" in registry.all_passes():
        skip = ",".join(cfg.get("skip_fusion_layers", []))
        passes.run(module, f'qcc-fuse-bn{{skip_layers="{skip}"}}' if skip else "qcc-fuse-bn")
    config_json.validate_json(cfg, module, str(config_file))
    insert_observers(module, cfg)
    return module


def calibrate(module: ModuleOp, data: str | os.PathLike | Mapping[str, np.ndarray],
              batch_num: int | None = None) -> None:
    """Run the calibration data; observers become fake_quant."""
    from qcc.flow.quantize import load_npz
    from qcc.passes.calibrate import calibrate as run_calibration
    from qcc.quant.calib_data import model_batches

    arrays = load_npz(data, "calibration") if not isinstance(data, Mapping) else dict(data)
    run_calibration(module, model_batches(module, arrays, batch_num))


def save_model(module: ModuleOp, save_path: str | os.PathLike) -> dict[str, Path]:
    """Write `<save_path>_fake_quant.onnx`, `<save_path>_record.txt` and
    `<save_path>_encodings.json` (AMCT's `save_model`); returns the paths."""
    from qcc.exporters.onnx import export_onnx
    from qcc.quant import records

    prefix = Path(save_path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {"fake_quant": prefix.with_name(prefix.name + "_fake_quant.onnx"),
             "record": prefix.with_name(prefix.name + "_record.txt"),
             "encodings": prefix.with_name(prefix.name + "_encodings.json")}
    export_onnx(module, paths["fake_quant"])
    records.write_atomic(paths["record"], records.record_text(module))
    records.write_atomic(paths["encodings"],
                         json.dumps(records.encodings_json(module), indent=2))
    return paths
