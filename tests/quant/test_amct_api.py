"""The AMCT-style Python steps give the same quantized model as `qcc.quantize`."""

import numpy as np

import qcc
import qcc.ir
from qcc.dialects import quant
from qcc.examples import digits
from qcc.flow import amct


def _qtypes(module):
    return {op.attributes["id"].data: op.properties["qtype"]
            for op in module.walk() if isinstance(op, quant.FakeQuantOp)}


def test_steps_match_the_whole_job(tmp_path):
    model, calib, _ = digits()
    cfg = amct.create_quant_config(tmp_path / "quant.json", model, skip_layers=["fc"])
    assert cfg["layers"]["fc"]["quantize"] is False
    module = amct.quantize_model(tmp_path / "quant.json", model)
    amct.calibrate(module, calib)
    paths = amct.save_model(module, tmp_path / "out" / "digits")
    assert all(p.exists() for p in paths.values())
    whole = qcc.quantize(model, calib, tmp_path / "quant.json", progress=False)
    assert _qtypes(module) == _qtypes(whole.module)
    assert "fc.weight" not in _qtypes(module)


def test_onnxruntime_runs_the_saved_fake_quant_model(tmp_path):
    from qcc.runtime import run
    from qcc.testing import ort

    model, calib, test = digits()
    amct.create_quant_config(tmp_path / "q.json", model)
    module = amct.quantize_model(tmp_path / "q.json", model)
    amct.calibrate(module, calib)
    paths = amct.save_model(module, tmp_path / "m")
    sess = ort.session(paths["fake_quant"])   # QDQ as written: the same on every CPU
    # One quantization step of the last layer's input moves logit j by at most
    # step * sum_k |W[j, k]|: the two runtimes may round a value on a .5 boundary
    # differently, never by more than that.
    fq = {op.attributes["id"].data: op for op in module.walk()
          if isinstance(op, quant.FakeQuantOp)}
    step = fq["fc.input"].properties["qtype"].scale
    w = fq["fc.weight"].properties["qtype"].fake_quant(
        np.asarray(qcc.ir.array_of(fq["fc.weight"].input)))
    bound = step * np.abs(w).sum(axis=1) + 1e-4
    with np.load(test) as t:
        x = t["input"][:50]
    agree = 0
    for i in range(len(x)):
        ours = run(module, {"input": x[i:i + 1]})["logits"]
        theirs = sess.run(None, {"input": x[i:i + 1]})[0]
        assert np.all(np.abs(ours - theirs) <= bound), (ours, theirs, bound)
        agree += int(ours.argmax() == theirs.argmax())
    assert agree == len(x)
