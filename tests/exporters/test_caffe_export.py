"""Caffe exports of `qcc quantize`: the accuracy-simulation model re-imports with
identical outputs; the deployable model's Quant / DeQuant factors and integer
weights agree with record.txt and with the original caffemodel's weights."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import qcc
from qcc.exporters.caffe import ExportError, export_caffe
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.runtime import run

sys.path.insert(0, str(Path(__file__).parents[1] / "frontends" / "caffe"))
from caffe_nets import DECONV, LEGACY, LENET, MOBILENET, RESNET, input_shapes, write  # noqa: E402


def _quantize(tmp_path, text, legacy=False):
    proto, caffemodel, net, model = write(tmp_path, text, legacy)
    rng = np.random.default_rng(5)
    calib = {k: rng.standard_normal((4, *v[1:])).astype(np.float32)
             for k, v in input_shapes(net).items()}
    np.savez(tmp_path / "calib.npz", **calib)
    out = tmp_path / "out"
    result = qcc.quantize(str(proto), str(tmp_path / "calib.npz"), None, out,
                          weights=str(caffemodel), progress=False)
    return result, out, net, model


@pytest.mark.parametrize("text", [LENET, RESNET, MOBILENET, LEGACY],
                         ids=["lenet", "resnet", "mobilenet", "legacy"])
def test_simulation_model_reimports_with_identical_outputs(tmp_path, text):
    result, out, net, _ = _quantize(tmp_path, text, legacy=text is LEGACY)
    stem = out / f"{net.name}_fake_quant"
    back = qcc.load(stem.with_suffix(".prototxt"), weights=stem.with_suffix(".caffemodel"))
    rng = np.random.default_rng(6)
    x = {k: rng.standard_normal(v).astype(np.float32) for k, v in input_shapes(net).items()}
    want = run(result.module, x)
    got = run(back, x)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    layers = text_format.Parse(stem.with_suffix(".prototxt").read_text(), pb.NetParameter()).layer
    kinds = {la.type for la in layers}
    assert "FakeQuant" in kinds and not kinds & {"BatchNorm", "Scale"}  # BN + Scale fused


def _record(path: Path) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for block in re.findall(r'key: "([^"]+)"\s*value \{([^}]*)\}', path.read_text()):
        fields: dict[str, list[float]] = {}
        for k, v in re.findall(r"(\w+): (\S+)", block[1]):
            fields.setdefault(k, []).append(float(v))
        out[block[0]] = fields
    return out


def _deploy(out: Path, name: str):
    deploy = text_format.Parse((out / f"{name}_deploy.prototxt").read_text(), pb.NetParameter())
    blobs = pb.NetParameter()
    blobs.ParseFromString((out / f"{name}_deploy.caffemodel").read_bytes())
    return deploy, {la.name: list(la.blobs) for la in blobs.layer}


@pytest.mark.parametrize("text", [RESNET, MOBILENET], ids=["resnet", "mobilenet"])
def test_deploy_quant_layers_match_the_record(tmp_path, text):
    """Every quantized layer reads a Quant with 1 / scale_d and offset_d of the record
    (AVE pooling included: its int8 output is requantized by AntiQuant + Quant); every
    conv and InnerProduct ends in a DeQuant holding scale_d * scale_w."""
    result, out, net, model = _quantize(tmp_path, text)
    record = _record(out / "record.txt")
    deploy, blob = _deploy(out, net.name)
    producer = {t: la for la in deploy.layer for t in la.top}
    consumers = {}
    for la in deploy.layer:
        for b in la.bottom:
            consumers.setdefault(b, []).append(la)
    assert any(la.type == "Pooling" and la.name in record for la in deploy.layer)
    for la in deploy.layer:
        if la.name not in record:
            continue
        (scale_d,), (offset_d,) = record[la.name]["scale_d"], record[la.name]["offset_d"]
        q = producer[la.bottom[0]]
        assert q.type == "Quant", la.name
        assert q.quant_param.scale == pytest.approx(1 / scale_d, rel=1e-6)
        assert np.frombuffer(q.quant_param.offset, np.int8)[0] == offset_d
        after = consumers[la.top[0]]
        if la.type == "Pooling":
            assert [c.type for c in after] == ["AntiQuant"]
            assert after[0].quant_param.scale == pytest.approx(scale_d, rel=1e-6)
            continue
        assert [c.type for c in after] == ["DeQuant"]
        packed = np.asarray(blob[after[0].name][0].uint64_data, np.uint64)
        low = (packed & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
        np.testing.assert_allclose(low, scale_d * np.asarray(record[la.name]["scale_w"]),
                                   rtol=1e-6)


def test_deploy_model_matches_the_record(tmp_path):
    result, out, net, model = _quantize(tmp_path, LENET)
    record = _record(out / "record.txt")
    deploy = text_format.Parse((out / "LeNet_deploy.prototxt").read_text(), pb.NetParameter())
    blobs = pb.NetParameter()
    blobs.ParseFromString((out / "LeNet_deploy.caffemodel").read_bytes())
    blob = {la.name: list(la.blobs) for la in blobs.layer}
    trained = {la.name: [np.asarray(b.data, np.float64).reshape(tuple(b.shape.dim))
                         for b in la.blobs] for la in model.layer}
    by_name = {la.name: la for la in deploy.layer}
    assert set(record) == {"conv1", "conv2", "ip1", "ip2"}
    for name, r in record.items():
        (scale_d,), (offset_d,) = r["scale_d"], r["offset_d"]
        scale_w = np.asarray(r["scale_w"])
        q = by_name[f"{name}.quant"]
        assert q.type == "Quant" and q.bottom and by_name[name].bottom == [q.top[0]]
        assert q.quant_param.scale == pytest.approx(1 / scale_d, rel=1e-6)
        assert np.frombuffer(q.quant_param.offset, np.int8)[0] == offset_d
        # The layer keeps int8 weights: round(w / scale_w) of the caffemodel's weights.
        w, b = trained[name]
        w8 = np.frombuffer(blob[name][0].int8_data, np.int8).reshape(w.shape)
        ideal = w / scale_w.reshape(-1, *(1,) * (w.ndim - 1))
        assert np.abs(w8 - ideal).max() <= 0.5 + 1e-6
        b32 = np.asarray(blob[name][1].int32_data)
        assert np.abs(b32 - b / (scale_d * scale_w)).max() <= 0.5 + 1e-6
        # DeQuant's packed uint64 holds float32(scale_d * scale_w) in its low 32 bits.
        dq = by_name[f"{name}.dequant"]
        assert dq.type == "DeQuant" and dq.bottom == [name]
        packed = np.asarray(blob[dq.name][0].uint64_data, np.uint64)
        low = (packed & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
        np.testing.assert_allclose(low, scale_d * scale_w, rtol=1e-6)


def test_unsupported_ops_are_listed_and_nothing_is_written(tmp_path):
    proto, caffemodel, net, model = write(tmp_path, DECONV)
    module = qcc.load(proto, weights=caffemodel)
    with pytest.raises(ExportError, match=r"qnn.slice: crop"):
        export_caffe(module, tmp_path / "o.prototxt", tmp_path / "o.caffemodel")
    assert not (tmp_path / "o.prototxt").exists() and not (tmp_path / "o.caffemodel").exists()


def test_float_layers_round_trip(tmp_path):
    """The float export of a net of many layer kinds imports back to the same outputs."""
    text = """
    name: "Float"
    input: "x" input_shape { dim: 1 dim: 4 dim: 5 dim: 5 }
    layer { name: "interp" type: "Interp" bottom: "x" top: "interp" interp_param { zoom_factor: 2 } }
    layer { name: "up" type: "Upsample" bottom: "x" top: "up" upsample_param { scale: 2 } }
    layer { name: "sum" type: "Eltwise" bottom: "interp" bottom: "interp" top: "sum"
            eltwise_param { coeff: 1 coeff: -0.5 } }
    layer { name: "prelu" type: "PReLU" bottom: "sum" top: "prelu" }
    layer { name: "bn" type: "BatchNorm" bottom: "prelu" top: "bn" }
    layer { name: "lrn" type: "LRN" bottom: "bn" top: "lrn" lrn_param { local_size: 3 } }
    layer { name: "pool" type: "Pooling" bottom: "lrn" top: "pool"
            pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "slice" type: "Slice" bottom: "pool" top: "s1" top: "s2" slice_param { slice_point: 1 } }
    layer { name: "cat" type: "Concat" bottom: "s2" bottom: "s1" top: "cat" }
    layer { name: "perm" type: "Permute" bottom: "cat" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
    layer { name: "flat" type: "Flatten" bottom: "perm" top: "flat" }
    layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip" inner_product_param { num_output: 3 } }
    layer { name: "sm" type: "Softmax" bottom: "ip" top: "sm" }
    layer { name: "lrelu" type: "ReLU" bottom: "up" top: "lrelu" relu_param { negative_slope: 0.2 } }
    """
    proto, caffemodel, net, model = write(tmp_path, text)
    module = qcc.load(proto, weights=caffemodel)
    export_caffe(module, tmp_path / "e.prototxt", tmp_path / "e.caffemodel")
    back = qcc.load(tmp_path / "e.prototxt", weights=tmp_path / "e.caffemodel")
    x = {"x": np.random.default_rng(7).standard_normal((1, 4, 5, 5)).astype(np.float32)}
    want, got = run(module, x), run(back, x)
    assert list(got) == list(want) == ["sm", "lrelu"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
