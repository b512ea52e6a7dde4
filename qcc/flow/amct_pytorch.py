"""AMCT's PyTorch vocabulary over qcc's passes, for users of `amct_pytorch`:

    amct.create_quant_config("quant.json", model, (x,), skip_layers=["fc"])
    calib_model = amct.quantize_model("quant.json", "modified.onnx", "record.txt", model, (x,))
    for batch in loader:                      # calibration: forward the batches
        calib_model(batch)
    amct.save_model(calib_model, "record.txt", "out/model")
    # out/model_fake_quant.onnx, out/model_deploy.onnx, out/model_encodings.json

`model` is a `torch.nn.Module` and `input_data` its example inputs, as in AMCT; the
module is imported once through `torch.export` (`qcc.frontends.pytorch`). Where AMCT
passes `modified_onnx_file` to `save_model`, pass the model `quantize_model` returned
(qcc keeps the graph in memory; `modified_onnx_file` receives the fused float graph).
`quantize_preprocess` is activation balance (`qcc-balance`, AMCT's DMQ balancer): it
returns a preprocess model to forward the calibration batches through, whose balanced
graph `quantize_model` then takes in place of the module.

The steps are the ONNX flow's (`qcc.flow.amct`, `qcc.flow.quantize`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from qcc import passes
from qcc.flow import amct

__all__ = ["create_quant_config", "quantize_model", "save_model", "quantize_preprocess",
           "CalibrationModel"]


def _as_tuple(input_data: Any) -> tuple:
    return tuple(input_data) if isinstance(input_data, list | tuple) else (input_data,)


def _import(model: Any, input_data: Any) -> ModuleOp:
    if isinstance(model, CalibrationModel):
        return model.module.clone()
    if isinstance(model, ModuleOp):
        return model.clone()
    from qcc.frontends.pytorch import load_pytorch

    module = load_pytorch(model, _as_tuple(input_data))
    passes.run(module, "canonicalize")
    return module


class CalibrationModel:
    """A graph being calibrated: call it on batches (torch tensors or numpy arrays,
    in the forward's order); `save_model` (or `quantize_model`, for a preprocess
    model) runs them through the observers."""

    def __init__(self, module: ModuleOp, alpha: float | None = None,
                 batch_num: int | None = None) -> None:
        from qcc import ir

        self.module = module
        self.batch_num = batch_num  # the config's: how many batches calibrate
        self.alpha = alpha  # set on a preprocess (balance) model
        self.input_names = ir.io_names(ir.main_func(module))[0]
        self.batches: list[dict[str, np.ndarray]] = []

    def __call__(self, *inputs: Any) -> dict[str, np.ndarray]:
        from qcc import runtime

        batch = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
                 for k, v in zip(self.input_names, inputs, strict=True)}
        self.batches.append(batch)
        return runtime.run(self.module, batch)


def create_quant_config(config_file: str | os.PathLike, model: Any, input_data: Any,
                        skip_layers: Iterable[str] | None = None, batch_num: int = 1,
                        activation_offset: bool = True,
                        config_defination: str | os.PathLike | None = None) -> dict:
    """Write the resolved per-layer config for `model` traced on `input_data`."""
    return amct.create_quant_config(config_file, _import(model, input_data),
                                    skip_layers=skip_layers, batch_num=batch_num,
                                    activation_offset=activation_offset,
                                    config_defination=config_defination)


def quantize_model(config_file: str | os.PathLike, modified_onnx_file: str | os.PathLike,
                   record_file: str | os.PathLike, model: Any, input_data: Any,
                   input_names: Sequence[str] | None = None,
                   output_names: Sequence[str] | None = None,
                   dynamic_axes: Any = None) -> CalibrationModel:
    """Fuse and insert observers; returns the model to forward calibration batches
    through. `modified_onnx_file` receives the fused float graph. `input_names`,
    `output_names` and `dynamic_axes` are accepted for AMCT's signature; qcc names
    inputs after the forward's parameters."""
    from qcc.exporters.onnx import export_onnx

    del input_names, output_names, dynamic_axes, record_file
    module = _import(model, input_data)
    if isinstance(model, CalibrationModel) and model.alpha is not None:
        if not model.batches:
            from qcc.passes.calibrate import CalibrationError

            raise CalibrationError("quantize_model: the preprocess model was never called; "
                                   "forward the calibration batches through it first")
        from qcc.passes.balance import balance

        balance(module, model.batches, alpha=model.alpha)
    quantized = amct.quantize_model(config_file, module.clone())
    fused = _fused(config_file, module)
    export_onnx(fused, modified_onnx_file)
    from qcc.quant import config_json

    return CalibrationModel(quantized, batch_num=config_json.load_json(config_file).get("batch_num"))


def _fused(config_file: str | os.PathLike, module: ModuleOp) -> ModuleOp:
    """The float graph after the config's fusion (AMCT's modified model)."""
    from qcc.quant import config_json

    cfg = config_json.load_json(config_file)
    if cfg.get("do_fusion", True):
        skip = ",".join(cfg.get("skip_fusion_layers", []))
        passes.run(module, f'qcc-fuse-bn{{skip_layers="{skip}"}}' if skip else "qcc-fuse-bn")
    return module


def save_model(calibration_model: CalibrationModel, record_file: str | os.PathLike,
               save_path: str | os.PathLike) -> dict[str, Path]:
    """Calibrate on the batches the model was called with, then write
    `<save_path>_fake_quant.onnx`, `<save_path>_deploy.onnx`,
    `<save_path>_encodings.json` and the record to `record_file`."""
    from qcc.passes.calibrate import CalibrationError

    if not isinstance(calibration_model, CalibrationModel):
        raise CalibrationError("save_model takes the model quantize_model returned "
                               "(qcc keeps the graph in memory, not in modified_onnx_file)")
    if not calibration_model.batches:
        raise CalibrationError("save_model: the calibration model was never called; "
                               "forward the calibration batches through it first")
    module = calibration_model.module
    amct.calibrate(module, {k: np.concatenate([b[k] for b in calibration_model.batches])
                            for k in calibration_model.input_names},
                   calibration_model.batch_num)
    paths = amct.save_model(module, save_path)
    shutil.copyfile(paths["record"], record_file)
    paths["record"] = Path(record_file)
    paths["deploy"] = _write_deploy(module, Path(save_path))
    return paths


def _write_deploy(module: ModuleOp, prefix: Path) -> Path:
    from qcc.exporters.deploy import export_deploy

    lowered = module.clone()
    passes.run(lowered, "qcc-realize-int8,qcc-lower-ascend")
    path = prefix.with_name(prefix.name + "_deploy.onnx")
    export_deploy(lowered, path)
    return path


def quantize_preprocess(config_file: str | os.PathLike, record_file: str | os.PathLike,
                        model: Any, input_data: Any, alpha: float = 0.5) -> CalibrationModel:
    """Activation balance (AMCT's DMQ balancer): returns a model to forward the
    calibration batches through; `quantize_model` given this model balances with
    `alpha` (the config's `dmq_balancer_param.migration_strength` when set)."""
    from qcc.quant import config_json

    del record_file
    cfg = config_json.load_json(config_file)
    strength = (cfg.get("balance") or {}).get("alpha")
    return CalibrationModel(_import(model, input_data),
                            alpha=float(strength if strength is not None else alpha))
