"""AMCT's Caffe vocabulary over qcc's passes, for a prototxt + caffemodel, with no
Caffe installed (qcc's runtime is the inference engine calibration runs on):

    from qcc.frontends.caffe import amct
    amct.create_quant_config("quant.json", "net.prototxt", "net.caffemodel")
    graph = amct.init("quant.json", "net.prototxt", "net.caffemodel")  # fused, observed
    amct.quantize_model(graph, "calib.npz")        # AMCT: run the modified model in Caffe
    amct.save_model(graph, "Both", "out/net")      # out/net_fake_quant.prototxt, ...
    amct.convert_model("net.prototxt", "net.caffemodel", "record.txt", "out/net")

Each step is the code `qcc quantize` runs; `convert_model` takes the quantization
factors from a user's own record file (AMCT's ScaleOffsetRecord, text format).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, StringAttr, f64, i64
from xdsl.rewriter import Rewriter

from qcc import passes
from qcc.dialects import quant
from qcc.dialects.base import get_bool, get_int, get_str
from qcc.flow import amct as onnx_amct
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.caffe.importer import load_caffe
from qcc.frontends.errors import FrontendError

SAVE_TYPES = ("Fakequant", "Deploy", "Both")


def _load(model_file, weights_file) -> ModuleOp:
    module = load_caffe(model_file, weights_file)
    passes.run(module, "canonicalize")
    return module


def create_quant_config(config_file: str | os.PathLike, model_file: str | os.PathLike,
                        weights_file: str | os.PathLike,
                        skip_layers: Iterable[str] | None = None,
                        batch_num: int | None = None, activation_offset: bool = True,
                        config_defination: str | os.PathLike | None = None) -> dict:
    """Write the resolved per-layer config for a Caffe net."""
    return onnx_amct.create_quant_config(config_file, _load(model_file, weights_file),
                                         skip_layers, batch_num, activation_offset,
                                         config_defination)


def init(config_file: str | os.PathLike, model_file: str | os.PathLike,
         weights_file: str | os.PathLike) -> ModuleOp:
    """The graph to calibrate: BN + Scale fused (when the config allows), observers on
    the inputs and weights of the layers the config quantizes."""
    return onnx_amct.quantize_model(config_file, _load(model_file, weights_file))


def quantize_model(graph: ModuleOp, data: str | os.PathLike | Mapping[str, np.ndarray],
                   batch_num: int | None = None) -> None:
    """Calibrate `graph` on `data` (AMCT runs its modified model in Caffe here)."""
    onnx_amct.calibrate(graph, data, batch_num)


def save_model(graph: ModuleOp, save_type: str, save_path: str | os.PathLike
               ) -> dict[str, Path]:
    """Write `<save_path>_fake_quant.prototxt/.caffemodel` (save_type Fakequant or
    Both), `<save_path>_deploy.prototxt/.caffemodel` (Deploy or Both) and
    `<save_path>_record.txt`; returns the paths by kind."""
    from qcc.exporters.caffe import export_caffe
    from qcc.quant import records

    if save_type not in SAVE_TYPES:
        raise FrontendError(f"save_type '{save_type}' is not one of {', '.join(SAVE_TYPES)}")
    prefix = Path(save_path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if save_type in ("Fakequant", "Both"):
        paths["fake_quant"] = prefix.with_name(prefix.name + "_fake_quant.prototxt")
        export_caffe(graph, paths["fake_quant"], paths["fake_quant"].with_suffix(".caffemodel"))
    if save_type in ("Deploy", "Both"):
        lowered = graph.clone()
        passes.run(lowered, "qcc-realize-int8,qcc-lower-ascend")
        paths["deploy"] = prefix.with_name(prefix.name + "_deploy.prototxt")
        export_caffe(lowered, paths["deploy"], paths["deploy"].with_suffix(".caffemodel"))
    paths["record"] = prefix.with_name(prefix.name + "_record.txt")
    records.write_atomic(paths["record"], records.record_text(graph))
    return paths


def read_record(path: str | os.PathLike) -> dict[str, pb.SingleLayerRecord]:
    """AMCT's record file (text ScaleOffsetRecord) by layer name; a syntax error
    names the file, line and column."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text()
    except OSError as e:
        raise FrontendError(f"{source}: cannot read ({e.strerror})") from None
    record = pb.ScaleOffsetRecord()
    try:
        text_format.Parse(text, record)
    except text_format.ParseError as e:
        raise FrontendError(f"{source}:{e.GetLine()}:{e.GetColumn()}: "
                            f"{str(e).split(' : ', 1)[-1]}") from None
    return {entry.key: entry.value for entry in record.record}


def apply_record(graph: ModuleOp, record: dict[str, pb.SingleLayerRecord],
                 source: str = "the record") -> None:
    """Replace every observer of `graph` by the fake_quant the record gives its layer;
    layers the record does not name stay float."""
    missing = []
    for op in [o for o in graph.walk() if isinstance(o, quant.ObserveOp)]:
        layer, _, kind = get_str(op.id).rpartition(".")
        entry = record.get(layer)
        if entry is None:
            Rewriter.replace_op(op, [], [op.input])
            continue
        narrow = get_bool(op.narrow_range)
        bits = get_int(op.bits, 8)
        if kind == "weight":
            if not entry.scale_w:
                missing.append(f"{layer}: scale_w")
                continue
            offsets = list(entry.offset_w) or [0] * len(entry.scale_w)
            if len(entry.scale_w) == 1:
                qtype = quant.UniformQuantizedType.make(
                    scale=float(entry.scale_w[0]), zero_point=int(offsets[0]), bits=bits,
                    narrow_range=narrow)
            else:
                qtype = quant.UniformQuantizedType.make_per_axis(
                    axis=get_int(op.axis, 0), scales=[float(s) for s in entry.scale_w],
                    zero_points=[int(z) for z in offsets], bits=bits, narrow_range=narrow)
        else:
            if not entry.HasField("scale_d"):
                missing.append(f"{layer}: scale_d")
                continue
            qtype = quant.UniformQuantizedType.make(
                scale=float(entry.scale_d), zero_point=int(entry.offset_d), bits=bits,
                narrow_range=narrow)
        fq = quant.FakeQuantOp.make(op.input, qtype=qtype)
        lo = (qtype.storage_min - np.asarray(qtype.zero_points)) * np.asarray(qtype.scales)
        hi = (qtype.storage_max - np.asarray(qtype.zero_points)) * np.asarray(qtype.scales)
        fq.attributes.update({
            "id": op.id, "algorithm": StringAttr("record"),
            "min": FloatAttr(float(lo.min()), f64), "max": FloatAttr(float(hi.max()), f64),
            "symmetric": IntegerAttr(int(kind == "weight" or get_bool(op.symmetric)), i64)})
        Rewriter.replace_op(op, fq)
    if missing:
        raise FrontendError(f"{source}: missing factors for the quantized layers "
                            f"({'; '.join(missing)}); the record must match the net after "
                            "BN + Scale fusion")


def convert_model(model_file: str | os.PathLike, weights_file: str | os.PathLike,
                  scale_offset_record_file: str | os.PathLike,
                  save_path: str | os.PathLike) -> dict[str, Path]:
    """A fake-quant and a deployable model from a user's own record file: the layers
    it names quantize with its factors (after BN + Scale fusion), the others stay
    float."""
    from qcc.quant import config as qconfig

    record = read_record(scale_offset_record_file)
    graph = _load(model_file, weights_file)
    passes.run(graph, "qcc-fuse-bn")
    cfg = qconfig.resolve(graph, None, os.fspath(model_file))
    for name, entry in cfg["layers"].items():
        if name not in record:
            entry["quantize"] = False
    unknown = sorted(set(record) - set(cfg["layers"]))
    if unknown:
        raise FrontendError(f"{scale_offset_record_file}: no quantizable layer named "
                            f"{', '.join(unknown)} in {model_file} (after BN + Scale fusion)")
    from qcc.passes.insert_quant import insert_observers

    insert_observers(graph, cfg)
    apply_record(graph, record, os.fspath(scale_offset_record_file))
    return save_model(graph, "Both", save_path)
