"""The whole post-training job: `qcc quantize`, its files, errors and the transformer
case with an additive attention mask."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.flow.quantize import quantize
from qcc.frontends.onnx import load_onnx
from qcc.testing.models import transformer_block


def _qcc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qcc.tools.cli", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_embedded_example_int8_within_half_a_point(tmp_path):
    r = _qcc("quantize", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("top-1 accuracy"))
    float_acc = float(line.split("float ")[1].split(",")[0])
    int8_acc = float(line.split("int8 ")[1])
    assert float_acc > 0.95
    assert abs(float_acc - int8_acc) <= 0.005
    assert "W4A8" in r.stdout
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"digits_cnn_fake_quant.onnx", "digits_cnn_deploy.onnx", "record.txt",
            "encodings.json", "report.json", "report.md", "quant.json"} <= names
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("integer runtime"))
    assert float(line.rsplit(" ", 1)[1]) >= 0.995  # int8 top-1 agrees with fake-quant


def test_record_and_encodings_agree_with_the_ir(tmp_path):
    from qcc.examples import digits

    model, calib, test = digits()
    res = quantize(model, calib, None, tmp_path / "o", eval_data=test, progress=False)
    fqs = {op.attributes["id"].data: op.properties["qtype"]
           for op in res.module.walk() if isinstance(op, quant.FakeQuantOp)}
    enc = json.loads((tmp_path / "o" / "encodings.json").read_text())
    w = fqs["conv1.weight"]
    entries = enc["param_encodings"]["conv1.weight"]
    assert len(entries) == len(w.scales) == 16  # one per output channel
    for e, s in zip(entries, w.scales, strict=True):
        assert e["scale"] == pytest.approx(s) and e["bitwidth"] == 8
        assert e["min"] == pytest.approx((w.storage_min - 0) * s)
    a = fqs["conv1.input"]
    act = enc["activation_encodings"]["conv1.input"][0]
    assert act["offset"] == a.storage_min - a.zero_point
    record = (tmp_path / "o" / "record.txt").read_text()
    block = record.split('key: "conv2"')[1].split("record {")[0]
    assert f"scale_d: {fqs['conv2.input'].scale!r}" in block
    assert block.count("scale_w:") == 32 and block.count("offset_w: 0") == 32


def test_dump_ir_replays_to_the_same_ir(tmp_path):
    r = _qcc("quantize", "-o", str(tmp_path / "out"), "--dump-ir")
    assert r.returncode == 0, r.stderr
    irdir = tmp_path / "out" / "ir"
    script = (irdir / "replay.sh").read_text()
    assert "qcc-insert-quant" in script and "qcc-calibrate" in script
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    subprocess.run(["sh", str(irdir / "replay.sh")], check=True, env=env)
    last = sorted(irdir.glob("0*-qcc-calibrate.mlir"))[-1]
    assert ir.print_module(ir.load_module(irdir / "replayed.mlir")) == ir.print_module(
        ir.load_module(last))


def _masked_attention_module(seq=8, d=16, mask_value=-1e9, scale=1.0):
    """q, k, v projections; masked = q k^T + mask feeds a softmax (probs @ v is the
    output `y`) and also a matmul `context` directly (output `z`), so masked scores are
    a layer's input. With mask_value=0 and `scale` large the same graph carries real
    large scores and no mask."""
    rng = np.random.default_rng(0)
    g = ir.Graph()
    x = g.input("x", (1, seq, d))
    mask = np.triu(np.full((seq, seq), mask_value, np.float32), 1)
    proj = {}
    for n in "qkv":
        w = g.const((rng.standard_normal((d, d)) * scale / 4).astype(np.float32),
                    name=f"{n}.weight")
        proj[n] = g.add(qnn.DenseOp.make(x, w, name=n))
    kt = g.add(qnn.TransposeOp.make(proj["k"], perm=(0, 2, 1), name="kt"))
    scores = g.add(qnn.MatmulOp.make(proj["q"], kt, name="scores"))
    masked = g.add(qnn.AddOp.make(scores, g.const(mask, name="mask"), name="masked"))
    probs = g.add(qnn.SoftmaxOp.make(masked, axis=-1, name="softmax"))
    y = g.add(qnn.MatmulOp.make(probs, proj["v"], name="attend"))
    z = g.add(qnn.MatmulOp.make(masked, proj["v"], name="context"))
    return g.finish({"y": y, "z": z})


def test_masked_scores_never_reach_an_observer():
    """The mask is recognised from the graph: the layer reading masked scores stays
    float (reason attention_mask), every other layer is quantized with finite scales."""
    module = _masked_attention_module()
    calib = {"x": np.random.default_rng(1).standard_normal((16, 8, 16)).astype(np.float32)}
    res = quantize(module, calib, progress=False)
    rows = {r["layer"]: r for r in res.report["layers"]}
    assert rows["context"]["quantized"] is False
    assert rows["context"]["reason"] == "attention_mask"
    assert {"q", "k", "v", "scores", "attend"} <= {k for k, r in rows.items() if r["quantized"]}
    assert res.report["skipped_values"] == 0
    for op in res.module.walk():
        if isinstance(op, quant.FakeQuantOp):
            assert all(np.isfinite(s) and 0 < s < 1e3 for s in op.properties["qtype"].scales)
            assert op.attributes["id"].data.split(".")[0] != "context"


def test_large_real_activations_are_observed_with_their_range():
    """No magnitude rule: scores of about 1e9 that are real values (no mask in the
    graph) get a scale that covers them. Oracle: the float model's own scores, from
    numpy on the weights."""
    module = _masked_attention_module(mask_value=0.0, scale=3e4)
    x = np.random.default_rng(1).standard_normal((16, 8, 16)).astype(np.float32)
    res = quantize(module, {"x": x}, progress=False)
    w = {n: np.asarray(ir.array_of(op.operands[1]), np.float64) for n, op in
         ((op.attributes["name"].data, op) for op in res.float_module.walk()
          if isinstance(op, qnn.DenseOp))}
    xd = x.astype(np.float64)
    scores = (xd @ w["q"]) @ np.swapaxes(xd @ w["k"], 1, 2)
    assert np.abs(scores).max() > 1e9  # real values beyond the old 1e8 threshold
    rows = {r["layer"]: r for r in res.report["layers"]}
    assert rows["context"]["quantized"] is True  # nothing here is a mask
    fq = {op.attributes["id"].data: op for op in res.module.walk()
          if isinstance(op, quant.FakeQuantOp)}
    ctx = fq["context.input0"]
    q = ctx.properties["qtype"]
    covered_lo = (q.storage_min - q.zero_point) * q.scale
    covered_hi = (q.storage_max - q.zero_point) * q.scale
    # ifmr may clip the extreme tail, but the grid spans the bulk of the real scores
    assert covered_hi > 0.5 * scores.max() and covered_lo < 0.5 * scores.min()
    assert rows["context"]["input0"]["skipped_values"] == 0


@pytest.mark.parametrize("mask_value", [-1e9, -np.inf])
def test_transformer_matmuls_and_gemms_quantized(mask_value):
    module = load_onnx(transformer_block(batch=2, seq=16, d_model=64, heads=4,
                                         mask_value=mask_value))
    rng = np.random.default_rng(0)
    calib = {"x": rng.standard_normal((16, 16, 64)).astype(np.float32)}
    res = quantize(module, calib, eval_data={"x": rng.standard_normal((8, 16, 64)).astype(
        np.float32)}, progress=False)
    kinds = {}
    for op in res.module.walk():
        if isinstance(op, quant.FakeQuantOp):
            layer, _, kind = op.attributes["id"].data.rpartition(".")
            kinds.setdefault(kind, 0)
            kinds[kind] += 1
    layers = [op for op in res.module.walk() if isinstance(op, qnn.DenseOp | qnn.MatmulOp)]
    dense = [op for op in layers if isinstance(op, qnn.DenseOp)]
    matmul = [op for op in layers if isinstance(op, qnn.MatmulOp)]
    assert len(dense) == 6 and len(matmul) == 2
    assert kinds["weight"] == len(dense)
    assert kinds.get("input0", 0) == kinds.get("input1", 0) == len(matmul)
    ev = res.evaluation
    assert ev["y.cosine_worst"] > 0.98, ev
    assert np.isfinite(ev["y.sqnr_db"])


def test_bad_calibration_data_lists_expected_against_given(tmp_path):
    from qcc.examples import digits

    model, _, _ = digits()
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32))
    r = _qcc("quantize", str(model), "--calib", str(tmp_path / "bad.npz"), "-o",
             str(tmp_path / "out"))
    assert r.returncode == 1
    assert "expected inputs ['input'], given ['image']" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*")), "a temporary folder was left behind"


def test_empty_calibration_file(tmp_path):
    from qcc.examples import digits

    np.savez(tmp_path / "empty.npz")
    r = _qcc("quantize", str(digits()[0]), "--calib", str(tmp_path / "empty.npz"), "-o",
             str(tmp_path / "out"))
    assert r.returncode == 1 and "calibration data is empty" in r.stderr


def test_config_errors(tmp_path):
    from qcc.examples import digits

    model, calib, _ = digits()
    cfg = tmp_path / "c.cfg"
    cfg.write_text('skip_layers: "conv4"\n')
    r = _qcc("quantize", str(model), "--calib", str(calib), "--config", str(cfg),
             "-o", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "conv4" in r.stderr and "did you mean" in r.stderr
    cfg.write_text("common_config {\n  arq_quantize { quant_bits: 3 }\n}\n")
    r = _qcc("quantize", str(model), "--calib", str(calib), "--config", str(cfg),
             "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "c.cfg:2:" in r.stderr
    cfg.write_text("common_config {\n  ifmr_quantize { serch_step: 0.1 }\n}\n")
    r = _qcc("quantize", str(model), "--calib", str(calib), "--config", str(cfg),
             "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "c.cfg:2:" in r.stderr and "search_step" in r.stderr
    assert not (tmp_path / "out").exists()


def test_failed_run_keeps_previous_outputs(tmp_path):
    from qcc.examples import digits

    model, calib, _ = digits()
    out = tmp_path / "out"
    assert _qcc("quantize", str(model), "--calib", str(calib), "-o", str(out)).returncode == 0
    before = (out / "record.txt").read_text()
    np.savez(tmp_path / "bad.npz", input=np.zeros((4, 3, 8, 8), np.float32))
    r = _qcc("quantize", str(model), "--calib", str(tmp_path / "bad.npz"), "-o", str(out))
    assert r.returncode == 1
    assert (out / "record.txt").read_text() == before


def test_equalization_and_balance_by_config(tmp_path):
    from qcc.examples import digits

    model, calib, test = digits()
    cfg = tmp_path / "c.cfg"
    cfg.write_text("do_equalization: true\ndmq_balancer_param { migration_strength: 0.5 }\n")
    res = quantize(model, calib, cfg, tmp_path / "out", eval_data=test, dump_ir=True,
                   progress=False)
    eq = res.report["equalization"]
    assert "conv1 -> conv2" in eq["pairs"]
    sqnr = eq["weight_sqnr_db_per_tensor"]["conv1"]
    assert sqnr["after"] > sqnr["before"]  # per-tensor weights gain from equalization
    assert set(res.report["balance"]["layers"]) == {"conv1", "conv2", "conv3", "fc"}
    record = (tmp_path / "out" / "record.txt").read_text()
    block = record.split('key: "conv2"')[1].split("record {")[0]
    assert block.count("tensor_balance_factor:") == 16  # conv2's input channels
    assert abs(res.evaluation["quant_top1"] - res.evaluation["float_top1"]) <= 0.005
    replay = (tmp_path / "out" / "ir" / "replay.sh").read_text()
    assert "qcc-equalize,qcc-balance{" in replay


def test_target_legalization_in_quantize(tmp_path):
    r = _qcc("quantize", "--target", "ascend", "-o", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert "min_cin: Cin = 1 <= 16" in r.stdout  # conv1 stays float, the rule in the report
    # the decisions are in the report; quant.json stays the resolved config (the policy)
    rows = {row["layer"]: row for row in
            json.loads((tmp_path / "a" / "report.json").read_text())["layers"]}
    assert rows["conv1"]["quantized"] is False
    assert rows["conv1"]["reason"].startswith("min_cin: Cin = 1 <= 16")
    assert rows["fc"]["weight"]["granularity"] == "per-tensor"  # per-tensor FC on Ascend
    cfg = json.loads((tmp_path / "a" / "quant.json").read_text())
    assert cfg["layers"]["conv1"]["quantize"] is True
    assert cfg["layers"]["fc"]["weight"]["channel_wise"] is True
    r = _qcc("quantize", "--target", "ascend", "--override", "min_cin", "-o",
             str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    rows = {row["layer"]: row for row in
            json.loads((tmp_path / "b" / "report.json").read_text())["layers"]}
    assert rows["conv1"]["quantized"] is True
