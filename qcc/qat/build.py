"""prepare: import -> canonicalize -> fuse -> insert quantizers -> calibrate (the
passes `qcc quantize` runs) -> emit the fake-quant IR as a trainable torch module.
convert: the trained weights and ranges back into the IR as fixed `quant.fake_quant`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from xdsl.dialects.builtin import FloatAttr, ModuleOp, f64
from xdsl.ir import Operation
from xdsl.rewriter import InsertPoint, Rewriter

from qcc import ir, passes
from qcc.dialects import qnn, quant
from qcc.dialects.base import get_float, get_str
from qcc.qat.config import QatConfig, QatError
from qcc.qat.emit import TARGET, conv_kwargs, emit
from qcc.qat.modules import ConvBnFold, FakeQuantize

_BN_MOMENTUM = 0.1


def _import(model, example_inputs, weights=None) -> tuple[ModuleOp, str]:
    if weights is not None and not (isinstance(model, (str, os.PathLike))
                                    and Path(model).suffix.lower() == ".prototxt"):
        raise QatError(f"QAT: weights= goes with a Caffe .prototxt, not {model!r}; "
                       "other models carry their weights")
    if isinstance(model, ModuleOp):
        return model.clone(), "model"
    if isinstance(model, nn.Module):
        return _import_torch(model, example_inputs), type(model).__name__
    if isinstance(model, (str, os.PathLike)):
        return _import_path(Path(model), weights), str(model)
    raise QatError(f"QAT: cannot import a {type(model).__name__} (give a torch.nn.Module, "
                   "a model path qcc.load reads, or a qcc ModuleOp)")


def _import_path(path: Path, weights=None) -> ModuleOp:
    """The frontends this layer may call (qcc.load sits above it)."""
    ext = path.suffix.lower()
    if ext == ".mlir":
        return ir.load_module(path)
    if ext == ".onnx":
        from qcc.frontends.onnx import load_onnx

        return load_onnx(path)
    if ext == ".pb":
        from qcc.frontends.tensorflow import load_tensorflow

        return load_tensorflow(path, None, None, None)
    if ext == ".prototxt":
        from qcc.frontends.caffe import load_caffe

        if weights is None:
            raise QatError(f"{path}: a Caffe net trains from its weights; pass "
                           "weights='net.caffemodel'")
        return load_caffe(path, weights)
    raise QatError(f"{path}: QAT reads .onnx, .mlir, .pb and .prototxt (with weights=) files directly; import other "
                   "formats with qcc.load(...) and pass the module it returns")


def _import_torch(model: nn.Module, example_inputs) -> ModuleOp:
    """Through the PyTorch frontend: parameters keep their module paths as names."""
    from qcc.frontends.pytorch import load_pytorch

    if example_inputs is None:
        raise QatError(f"QAT: {type(model).__name__} is a torch.nn.Module; pass "
                       "example_inputs=(tensor, ...) to import it")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (
        example_inputs,)
    was_training = model.training
    try:
        return load_pytorch(model, inputs)
    finally:
        model.train(was_training)


def _calib_arrays(calib, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(calib, (str, os.PathLike)):
        try:
            with np.load(calib) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise QatError(f"{calib}: cannot read calibration data ({e})") from None
    if isinstance(calib, Mapping):
        return {k: np.asarray(v.detach() if hasattr(v, "detach") else v, np.float32)
                for k, v in calib.items()}
    if isinstance(calib, (np.ndarray, torch.Tensor)) and len(names) == 1:
        return _calib_arrays({names[0]: calib}, names)
    if isinstance(calib, Iterable):
        parts: dict[str, list[np.ndarray]] = {}
        for batch in calib:
            if not isinstance(batch, Mapping):
                batch = dict(zip(names, batch if isinstance(batch, (tuple, list))
                                 else (batch,), strict=False))
            for k, v in _calib_arrays(batch, names).items():
                parts.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in parts.items()}
    raise QatError(f"QAT: calib must be an .npz path, a dict of arrays or an iterable of "
                   f"batches, got {type(calib).__name__}")


def _quant_config(module: ModuleOp, cfg: QatConfig, model: str) -> dict:
    from qcc.quant import config as qconfig

    qcfg = qconfig.resolve(module, qconfig.SimpleConfig(), None)
    layers = {k: v for k, v in qcfg["layers"].items() if v.get("quantize")}
    if not layers:
        raise QatError(f"{model}: no quantizable layer (conv, conv_transpose, dense, matmul, "
                       "avg_pool), nothing to train with quantizers")
    for entry in layers.values():
        if entry.get("weight") is not None:
            entry["weight"].update(bits=cfg.weight_bits, channel_wise=cfg.pair("per_channel")[0],
                                   symmetric=cfg.pair("symmetric")[0])
        if entry.get("activation") is not None:
            entry["activation"].update(bits=cfg.act_bits, symmetric=cfg.pair("symmetric")[1])
    return qcfg


def _observe(module: ModuleOp, qcfg: dict, cfg: QatConfig) -> None:
    from qcc.dialects.base import bool_attr, str_attr
    from qcc.passes.insert_quant import insert_observers
    from qcc.quant.algorithms import minmax

    for obs in insert_observers(module, qcfg):
        w = get_str(obs.properties["kind"]) == "weight"
        obs.properties["symmetric"] = bool_attr(cfg.pair("symmetric")[0 if w else 1])
        obs.properties["narrow_range"] = bool_attr(cfg.pair("narrow_range")[0 if w else 1])
        if w and not cfg.pair("symmetric")[0]:
            obs.properties["algorithm"] = str_attr(minmax.__name__)  # the registry's name


def _quantizer(fq: quant.FakeQuantOp, cfg: QatConfig, weight: bool) -> FakeQuantize:
    q = fq.qtype
    learn = cfg.scheme == "range_learning"
    return FakeQuantize(np.asarray(q.scales, np.float32), np.asarray(q.zero_points, np.float32),
                        q.storage_min, q.storage_max, q.axis, learn=learn,
                        learn_zero_point=not cfg.pair("symmetric")[0 if weight else 1],
                        quant_delay=cfg.quant_delay, ident=get_str(fq.attributes.get("id")))


def prepare(model, calib, config: QatConfig | dict | None = None,
            example_inputs=None, weights=None) -> torch.fx.GraphModule:
    """A trainable fake-quant torch module of `model`, ranges from `calib`.

    `example_inputs` traces a torch.nn.Module; `weights` is the .caffemodel of a
    Caffe .prototxt."""
    from qcc.passes.calibrate import calibrate
    from qcc.quant.calib_data import model_batches

    cfg = QatConfig.of(config)
    module, label = _import(model, example_inputs, weights)
    passes.run(module, "canonicalize")
    qcfg = _quant_config(module, cfg, label)
    names = ir.io_names(ir.main_func(module))[0]
    data = _calib_arrays(calib, names)
    fused = module.clone()
    if qcfg.get("do_fusion", True):
        passes.run(fused, "qcc-fuse-bn")
    _observe(fused, qcfg, cfg)
    calibrate(fused, list(model_batches(fused, data)))
    calibrated = {get_str(op.attributes.get("id")): op for op in fused.walk()
                  if isinstance(op, quant.FakeQuantOp)}
    if not calibrated:
        raise QatError(f"{label}: no quantizable layer got a quantizer")
    target, bn_fold = fused, {}
    if cfg.bn_fold:
        target = module
        _observe(target, qcfg, cfg)
        bn_fold = _bn_fold_modules(target, calibrated, cfg)
    weights = {k for k, op in calibrated.items() if isinstance(op.input.owner, qnn.ConstantOp)}
    quantizers: dict[str, nn.Module] = {k: _quantizer(op, cfg, k in weights) for k, op in calibrated.items()}
    gm = emit(target, quantizers, bn_fold)
    gm.qcc_module = target  # type: ignore[assignment]
    gm.qcc_calibrated = calibrated  # type: ignore[assignment]
    gm.qcc_config = cfg  # type: ignore[assignment]
    return gm


def _bn_fold_modules(module: ModuleOp, calibrated: dict, cfg: QatConfig
                     ) -> dict[Operation, nn.Module]:
    out: dict[Operation, nn.Module] = {}
    for op in module.walk():
        if not isinstance(op, qnn.BatchNormOp):
            continue
        conv = op.operands[0].owner
        if not isinstance(conv, qnn.ConvOp) or len(list(op.operands[0].uses)) != 1:
            continue
        if any(not isinstance(v.owner, qnn.ConstantOp) for v in op.operands[1:]):
            continue
        w = conv.operands[1].owner
        wq, fq = None, None
        if isinstance(w, quant.ObserveOp):
            fq = calibrated.pop(get_str(w.properties["id"]))
            wq = _quantizer(fq, cfg, True)
        out[op] = ConvBnFold(conv_kwargs(conv), wq, get_float(op.properties["epsilon"]),
                             _BN_MOMENTUM, cfg.freeze_bn_delay)
        out[op].calibrated = fq  # type: ignore[assignment]
    return out


# ------------------------------------------------------------------- convert


def convert(qmodel: nn.Module) -> ModuleOp:
    """The IR of a prepared (and trained) module: trained weights as constants,
    learned ranges as `quant.fake_quant` with fixed parameters; with bn_fold the
    BatchNorm folded into the conv with its running statistics."""
    if not hasattr(qmodel, "qcc_module"):
        inner = getattr(qmodel, "module", None)  # DistributedDataParallel
        if inner is not None and hasattr(inner, "qcc_module"):
            qmodel = inner
        else:
            raise QatError("QAT convert: the module was not made by qcc.qat.prepare")
    source: Any = qmodel.qcc_module
    module: ModuleOp = source.clone()
    calibrated: dict = qmodel.qcc_calibrated  # type: ignore[assignment]
    state = {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}
    mods = dict(qmodel.named_modules())
    for op in list(module.walk()):
        if TARGET not in op.attributes or isinstance(op, qnn.BatchNormOp):
            continue
        path = op.attributes.pop(TARGET).data  # type: ignore[attr-defined]
        if isinstance(op, qnn.ConstantOp):
            new = ir.constant(state[path].numpy().astype(ir.array_of(op).dtype),
                              get_str(op.attributes.get("name")) or None)
            Rewriter.replace_op(op, new)
        elif isinstance(op, (quant.FakeQuantOp, quant.ObserveOp)):
            ident = get_str(op.properties.get("id") or op.attributes.get("id"))
            _fixed_fake_quant(op, op.operands[0], calibrated[ident], mods[path])
    for op in list(module.walk()):
        if isinstance(op, qnn.BatchNormOp) and TARGET in op.attributes:
            path = op.attributes.pop(TARGET).data  # type: ignore[attr-defined]
            _fold(op, mods[path])  # a ConvBnFold
    return module


def _fixed_qtype(fq: quant.FakeQuantOp, q: FakeQuantize):
    old = fq.qtype
    scales = q.scale.detach().cpu().double().clamp(min=1e-12).numpy().reshape(-1)
    zps = np.rint(q.zero_point.detach().cpu().double().numpy().reshape(-1)).astype(int)
    zps = np.clip(zps, old.storage_min, old.storage_max)
    if old.axis is None:
        return quant.UniformQuantizedType.make(
            scale=float(scales[0]), zero_point=int(zps[0]), bits=old.bits, signed=old.signed,
            storage_min=old.storage_min, storage_max=old.storage_max)
    return quant.UniformQuantizedType.make_per_axis(
        axis=old.axis, scales=[float(s) for s in scales], zero_points=[int(z) for z in zps],
        bits=old.bits, signed=old.signed, storage_min=old.storage_min,
        storage_max=old.storage_max)


def _fixed_fake_quant(op: Operation, value, calibrated: quant.FakeQuantOp,
                      q: nn.Module) -> None:
    qtype = _fixed_qtype(calibrated, q)  # type: ignore[arg-type]
    fq = quant.FakeQuantOp.make(value, qtype=qtype)
    fq.attributes.update({k: v for k, v in calibrated.attributes.items() if k != TARGET})
    scales = np.asarray(qtype.scales)
    zps = np.asarray(qtype.zero_points)
    lo, hi = (qtype.storage_min - zps) * scales, (qtype.storage_max - zps) * scales
    fq.attributes["min"] = FloatAttr(float(np.min(lo)), f64)
    fq.attributes["max"] = FloatAttr(float(np.max(hi)), f64)
    Rewriter.replace_op(op, fq)


def _fold(bn: qnn.BatchNormOp, fold: ConvBnFold) -> None:
    """Rule: conv(x, q(w)) -> bn  becomes  conv(x, q(w * gamma / sigma), folded bias)."""
    conv = bn.operands[0].owner
    assert isinstance(conv, qnn.ConvOp)
    t = [torch.from_numpy(np.array(ir.array_of(v))) for v in bn.operands[1:]]
    w_val = conv.operands[1]
    w_const = w_val.owner.operands[0].owner if isinstance(
        w_val.owner, quant.ObserveOp) else w_val.owner
    w = torch.from_numpy(np.array(ir.array_of(w_const)))  # type: ignore[arg-type]
    b = (torch.from_numpy(np.array(ir.array_of(conv.operands[2])))
         if len(conv.operands) > 2 else None)
    wf, bf = fold.folded(w, b, *t)
    name = get_str(conv.attributes.get("name")) or "conv"
    new_w = ir.constant(wf.numpy(), f"{name}.weight_folded")
    Rewriter.replace_op(w_const, new_w)  # type: ignore[arg-type]
    new_b = ir.constant(bf.numpy(), f"{name}.bias_folded")
    Rewriter.insert_op(new_b, InsertPoint.before(conv))
    if len(conv.operands) > 2:
        conv.operands[2] = new_b.results[0]
    else:
        raise QatError(f"QAT convert: conv '{name}' has no bias operand to fold into")
    if fold.weight_quant is not None:
        fq_value = conv.operands[1]
        if isinstance(fq_value.owner, quant.ObserveOp):
            calibrated: Any = fold.calibrated
            _fixed_fake_quant(fq_value.owner, fq_value.owner.operands[0], calibrated,
                              fold.weight_quant)
    bn.results[0].replace_all_uses_with(conv.results[0])
    Rewriter.erase_op(bn)
