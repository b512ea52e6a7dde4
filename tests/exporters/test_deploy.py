"""The Ascend deploy model (`qcc.exporters.deploy.export_deploy`): AMCT's layout,
the record, and the import back (`qcc.frontends.onnx_ascend`) that runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import qcc
import qcc.runtime.ascend_ops  # noqa: F401 (registers the kernels)
from qcc import passes, runtime
from qcc.dialects import ascend
from qcc.examples import digits
from qcc.exporters.deploy import check_deploy, export_deploy, record_text
from qcc.frontends.onnx import load_onnx
from qcc.quant import records


@pytest.fixture(scope="module")
def lowered():
    pytest.importorskip("qcc.passes.realize_int8")
    model, calib, test = digits()
    module = qcc.quantize(model, calib, progress=False).module
    calibrated = module.clone()
    passes.run(module, "qcc-realize-int8,qcc-lower-ascend")
    return module, calibrated, dict(np.load(test))


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _run_all(module, x):
    return np.concatenate([runtime.run(module, {"input": x[i:i + 1]})["logits"]
                           for i in range(len(x))])


def test_amct_layout(lowered, tmp_path):
    module, _, _ = lowered
    model = export_deploy(module, tmp_path / "digits")
    assert (tmp_path / "digits_deploy.onnx").exists()
    nodes = list(model.graph.node)
    types = [n.op_type for n in nodes]
    assert types.count("AscendQuant") == 4 and types.count("AscendDequant") == 4
    assert types.count("Conv") == 3 and types.count("Gemm") == 1
    assert "QuantizeLinear" not in types and "DequantizeLinear" not in types
    assert all(n.domain == "" for n in nodes)  # AMCT: the default domain
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    inits = {t.name: t for t in model.graph.initializer}
    by_name = {n.name: n for n in nodes}
    quant_node = by_name["conv1.quant"]
    attrs = _attrs(quant_node)
    assert attrs["scale"] == pytest.approx(255.0) and attrs["offset"] == -128.0
    assert attrs["dst_type"] == b"INT8" and attrs["round_mode"] == b"Round"
    assert attrs["sqrt_mode"] == 0
    conv = next(n for n in nodes if n.op_type == "Conv" and n.name == "conv1")
    assert conv.input[0] == quant_node.output[0]
    assert inits[conv.input[1]].data_type == TensorProto.INT8
    assert inits[conv.input[2]].data_type == TensorProto.INT32
    deq_node = by_name["conv1.dequant"]
    assert deq_node.input[0] == conv.output[0]
    param = inits[deq_node.input[1]]
    assert param.name == "conv1.dequant.param" and param.data_type == TensorProto.UINT64
    assert _attrs(deq_node) == {"dtype": 1, "relu_flag": 0, "sqrt_mode": 0}
    assert _attrs(by_name["conv3.dequant"])["relu_flag"] == 1
    # deq_scale = float32(scale_d * scale_w[c]) in bits 31..0, offset_w 0
    conv1 = next(op for op in module.walk() if op.attributes.get("name") is not None
                 and op.attributes["name"].data == "conv1"  # type: ignore[attr-defined]
                 and op.name == "qnn.conv")
    x_t = conv1.operands[0].type.element_type  # type: ignore[attr-defined]
    w_t = conv1.operands[1].type.element_type  # type: ignore[attr-defined]
    fields = ascend.unpack_deq_scale(numpy_helper.to_array(param))
    assert np.array_equal(fields.scale, np.float32([x_t.scale * s for s in w_t.scales]))
    assert not fields.offset_w.any() and not fields.shift_bits.any()


def test_checker(lowered, tmp_path):
    module, _, _ = lowered
    amct = export_deploy(module)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(amct)  # AscendQuant is no standard op
    check_deploy(amct)
    custom = export_deploy(module, tmp_path / "c_deploy.onnx", domain="ascend")
    onnx.checker.check_model(custom)
    assert ("ascend", 1) in [(o.domain, o.version) for o in custom.opset_import]
    assert {n.domain for n in custom.graph.node if n.op_type.startswith("Ascend")} == {"ascend"}


@pytest.mark.parametrize("domain", ["", "ascend"])
def test_import_runs_like_the_lowered_module(lowered, tmp_path, domain):
    module, _, data = lowered
    path = tmp_path / "digits_deploy.onnx"
    export_deploy(module, path, domain=domain)
    imported = load_onnx(path)
    imported.verify()
    x = data["input"][:60]
    assert np.array_equal(_run_all(imported, x), _run_all(module, x))


def test_import_without_type_hints(lowered, tmp_path):
    """A deploy model qcc did not write (no doc strings): types from the attributes
    and the deq_scale; same integers, so the same outputs."""
    module, _, data = lowered
    model = export_deploy(module)
    for node in model.graph.node:
        node.doc_string = ""
    for init in model.graph.initializer:
        init.doc_string = ""
    path = tmp_path / "plain_deploy.onnx"
    onnx.save(model, path)
    imported = load_onnx(path)
    imported.verify()
    x = data["input"][:60]
    assert np.array_equal(_run_all(imported, x), _run_all(module, x))


def test_cli_runs_the_deploy_model(lowered, tmp_path):
    module, _, data = lowered
    path = tmp_path / "digits_deploy.onnx"
    export_deploy(module, path)
    x = data["input"][:1]
    np.savez(tmp_path / "x.npz", input=x)
    r = subprocess.run([sys.executable, "-m", "qcc.tools.cli", "run", str(path), "--inputs",
                        str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "y.npz") as y:
        assert np.array_equal(y["logits"], runtime.run(module, {"input": x})["logits"])


def test_record_matches_the_calibration_record(lowered, tmp_path):
    module, calibrated, _ = lowered
    export_deploy(module, tmp_path / "d", record=tmp_path / "record.txt")
    text = (tmp_path / "record.txt").read_text()
    assert text == record_text(module)
    assert text == records.record_text(calibrated)


def test_predictions(lowered):
    module, _, data = lowered
    if "labels" not in data:
        pytest.skip("no labels")
    logits = _run_all(module, data["input"])
    assert (logits.argmax(1) == data["labels"]).mean() > 0.95


def _small_graph():
    """conv without bias -> requantize (relu folded) -> dense on a rank-3 input (MatMul +
    Add in the file) -> dequantize; a matmul of two activations -> dequantize."""
    from qcc import ir
    from qcc.dialects import qnn, quant
    from qcc.dialects.quant import UniformQuantizedType as Q

    rng = np.random.default_rng(5)
    g = ir.Graph()
    x = g.input("x", (2, 3, 6, 6))
    xq_t = Q.make(scale=0.02, zero_point=-7)
    xq = g.add(quant.QuantizeOp.make(x, qtype=xq_t))
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32) * 0.3
    w_t = Q.make_per_axis(axis=0, scales=(np.abs(w).reshape(4, -1).max(1) / 127).tolist(),
                          narrow_range=True)
    wq = g.add(quant.QuantizeOp.make(g.const(w, "c1.weight"), qtype=w_t))
    acc = g.add(qnn.ConvOp.make(xq, wq, name="c1", pads=(1, 1, 1, 1), strides=(2, 2)))
    y_t = Q.make(scale=0.05, zero_point=3, storage_min=3)  # a relu folded in
    y = g.add(quant.RequantizeOp.make(acc, qtype=y_t))
    seq = g.add(qnn.ReshapeOp.make(y, shape=(2, 4, 9)))
    w2 = rng.normal(size=(5, 9)).astype(np.float32) * 0.2
    w2_t = Q.make(scale=float(np.abs(w2).max() / 127), narrow_range=True)
    w2q = g.add(quant.QuantizeOp.make(g.const(w2, "fc.weight"), qtype=w2_t))
    b2q = g.add(quant.QuantizeOp.make(g.const(rng.normal(size=5).astype(np.float32), "fc.bias"),
                                      qtype=Q.make(scale=y_t.scale * w2_t.scale, bits=32)))
    fc = g.add(quant.DequantizeOp.make(g.add(qnn.DenseOp.make(seq, w2q, b2q, name="fc"))))
    t = g.add(qnn.TransposeOp.make(seq, perm=(0, 2, 1)))
    mm = g.add(quant.DequantizeOp.make(g.add(qnn.MatmulOp.make(seq, t, name="mm"))))
    return g.finish({"fc": fc, "mm": mm, "y": y})


def test_small_graph_round_trip(tmp_path):
    module = _small_graph()
    module.verify()
    passes.run(module, "qcc-lower-ascend")
    model = export_deploy(module, tmp_path / "small")
    types = [n.op_type for n in model.graph.node]
    assert "MatMul" in types and "Add" in types and "Gemm" not in types
    deq = [n for n in model.graph.node if n.op_type == "AscendDequant"]
    assert _attrs(deq[0])["relu_flag"] == 1  # the requantize's folded relu
    for hints in (True, False):
        if not hints:
            for node in model.graph.node:
                node.doc_string = ""
            for init in model.graph.initializer:
                init.doc_string = ""
            onnx.save(model, tmp_path / "small_deploy.onnx")
        imported = load_onnx(tmp_path / "small_deploy.onnx")
        imported.verify()
        for seed in range(3):
            x = np.random.default_rng(seed).normal(size=(2, 3, 6, 6)).astype(np.float32)
            want, got = runtime.run(module, {"x": x}), runtime.run(imported, {"x": x})
            for name in want:
                assert np.array_equal(got[name], want[name]), (hints, name)


LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["densenet121", "inception_v2"])
def test_deploy_written_with_quantized_average_pools(tmp_path, name):
    """densenet121 and inception_v2 (onnx's light models) quantize their average
    pools: the deploy model is written with AveragePool on the AscendQuant's int8
    tensor, and qcc runs it to the lowered module's values exactly."""
    pytest.importorskip("qcc.passes.realize_int8")
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not in this onnx wheel")
    proto = onnx.load(path, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    (inp,) = [i for i in proto.graph.input if i.name not in inits]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", **{inp.name: rng.random((2, *shape[1:]), np.float32)})
    result = qcc.quantize(path, tmp_path / "calib.npz", outdir=tmp_path / "out",
                          progress=False)
    deploy = tmp_path / "out" / f"light_{name}_deploy.onnx"
    assert "deploy" not in result.report and deploy.exists()
    model = onnx.load(deploy)
    producer = {o: n for n in model.graph.node for o in n.output}
    pools = [n for n in model.graph.node if n.op_type == "AveragePool"
             and producer[n.input[0]].op_type == "AscendQuant"]
    assert pools, "no quantized AveragePool"
    lowered = result.module.clone()
    passes.run(lowered, "qcc-realize-int8,qcc-lower-ascend")
    x = {inp.name: rng.random(shape, np.float32)}
    want, got = runtime.run(lowered, x), runtime.run(load_onnx(deploy), x)
    for key, value in want.items():
        assert np.array_equal(got[key], value), key
