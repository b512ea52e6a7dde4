"""AMCT's PyTorch vocabulary gives the quantized model the whole job gives."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

import qcc  # noqa: E402
from qcc.dialects import quant  # noqa: E402
from qcc.flow import amct_pytorch as amct  # noqa: E402


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                         nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def _qtypes(module):
    return {op.attributes["id"].data: op.properties["qtype"]
            for op in module.walk() if isinstance(op, quant.FakeQuantOp)}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 2, 3, 8, 8)).astype(np.float32)  # 8 batches of 2


def test_steps_match_the_whole_job(tmp_path, data):
    model = _net()
    x = torch.from_numpy(data[0])
    cfg = amct.create_quant_config(tmp_path / "q.json", model, x, skip_layers=["7"])
    assert cfg["layers"]["7"]["quantize"] is False
    calib_model = amct.quantize_model(tmp_path / "q.json", tmp_path / "modified.onnx",
                                      tmp_path / "record.txt", model, x)
    for batch in data:
        calib_model(torch.from_numpy(batch))
    paths = amct.save_model(calib_model, tmp_path / "record.txt", tmp_path / "out" / "net")
    assert all(p.exists() for p in paths.values())
    assert (tmp_path / "modified.onnx").exists()
    assert '"3"' in (tmp_path / "record.txt").read_text()  # the second conv, by module path

    whole = qcc.quantize(model, {"input": data.reshape(16, 3, 8, 8)}, tmp_path / "q.json",
                         example_inputs=(x,), progress=False)
    assert _qtypes(calib_model.module) == _qtypes(whole.module)
    assert "7.weight" not in _qtypes(calib_model.module)

    # The fused float graph written to modified_onnx_file computes the torch model.
    sess = ort.InferenceSession(str(tmp_path / "modified.onnx"))
    with torch.no_grad():
        want = model(torch.from_numpy(data[1])).numpy()
    got = sess.run(None, {"input": data[1]})[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_quantize_preprocess_balances_without_changing_the_function(tmp_path, data):
    model = _net()
    x = torch.from_numpy(data[0])
    amct.create_quant_config(tmp_path / "q.json", model, x)
    pre = amct.quantize_preprocess(tmp_path / "q.json", tmp_path / "balance.txt", model, x)
    for batch in data:
        pre(torch.from_numpy(batch))
    calib_model = amct.quantize_model(tmp_path / "q.json", tmp_path / "modified.onnx",
                                      tmp_path / "record.txt", pre, x)
    # Balance divides activations and multiplies weights: the float function is torch's.
    sess = ort.InferenceSession(str(tmp_path / "modified.onnx"))
    with torch.no_grad():
        want = model(torch.from_numpy(data[2])).numpy()
    got = sess.run(None, {"input": data[2]})[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    for batch in data:
        calib_model(torch.from_numpy(batch))
    amct.save_model(calib_model, tmp_path / "record.txt", tmp_path / "net")
    assert "tensor_balance_factor" in (tmp_path / "record.txt").read_text()


def test_save_before_calibration_is_an_error(tmp_path, data):
    from qcc.passes.calibrate import CalibrationError

    model = _net()
    x = torch.from_numpy(data[0])
    amct.create_quant_config(tmp_path / "q.json", model, x)
    calib_model = amct.quantize_model(tmp_path / "q.json", tmp_path / "m.onnx",
                                      tmp_path / "r.txt", model, x)
    with pytest.raises(CalibrationError, match="never called"):
        amct.save_model(calib_model, tmp_path / "r.txt", tmp_path / "net")
