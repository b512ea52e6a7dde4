"""prepare/convert: bad configs, a model with nothing to quantize, a torch.nn.Module
source (checked against the module itself), fixed vs learned ranges."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import qcc  # noqa: E402
from qcc import ir  # noqa: E402
from qcc.dialects import qnn, quant  # noqa: E402
from qcc.examples import digits  # noqa: E402
from qcc.qat import QatConfig, QatError  # noqa: E402

MODEL, CALIB, TEST = digits()


@pytest.mark.parametrize("config, message", [
    ({"scheme": "lsq"}, "allowed: fixed, range_learning"),
    ({"weight_bits": 9}, "allowed: 2, 3, 4, 5, 6, 7, 8"),
    ({"act_bits": 1}, "allowed: 2, 3, 4, 5, 6, 7, 8"),
    ({"per_channel": (True, True)}, "per_channel for activations"),
    ({"quant_delay": -1}, "quant_delay must be an integer >= 0"),
    ({"bits": 4}, "unknown field(s) bits"),
])
def test_bad_config_names_the_allowed_values(config, message):
    with pytest.raises(QatError) as e:
        QatConfig.of(config)
    assert message in str(e.value)


def test_no_quantizable_layer_says_so():
    g = ir.Graph()
    x = g.input("x", (1, 4))
    module = g.finish({"y": g.add(qnn.ReluOp.make(x))})
    with pytest.raises(QatError, match="no quantizable layer"):
        qcc.qat.prepare(module, {"x": np.ones((2, 4), np.float32)})


def test_torch_module_source_matches_itself_and_keeps_names():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    net.eval()
    x = torch.rand(16, 1, 4, 4)
    qmodel = qcc.qat.prepare(net, {"input": x.numpy()}, {"weight_bits": 8, "act_bits": 8,
                                                         "bn_fold": True},
                             example_inputs=(x[:1],))
    names = dict(qmodel.named_parameters())
    assert {"_0.weight", "_1.weight", "_4.weight"} <= set(names)  # Sequential's "0.weight"
    torch.testing.assert_close(names["_0.weight"], net[0].weight)
    qmodel.eval()
    with torch.no_grad():
        want, got = net(x), qmodel(x)
    # 8-bit weights and activations: close to the float module, not equal to it
    assert 0 < float((want - got).abs().max()) < 0.05 * float(want.abs().max())


def test_fixed_ranges_stay_learned_ranges_move():
    x = torch.from_numpy(np.load(TEST)["input"][:64])
    y = torch.from_numpy(np.load(TEST)["labels"][:64])
    for scheme in ("fixed", "range_learning"):
        qmodel = qcc.qat.prepare(MODEL, CALIB, {"weight_bits": 4, "act_bits": 4,
                                                "scheme": scheme})
        before = {k: v.clone() for k, v in qmodel.state_dict().items() if k.endswith("scale")}
        opt = torch.optim.SGD(qmodel.parameters(), lr=0.01)
        qmodel.train()
        torch.nn.functional.cross_entropy(qmodel(x), y).backward()
        opt.step()
        after = qmodel.state_dict()
        moved = [k for k in before if not torch.equal(before[k], after[k])]
        if scheme == "fixed":
            assert not moved
        else:
            assert moved


def test_convert_carries_the_learned_range():
    qmodel = qcc.qat.prepare(MODEL, CALIB, {"weight_bits": 4, "act_bits": 4})
    with torch.no_grad():
        qmodel.get_submodule("conv2.input_quant").scale.fill_(0.125)
        qmodel.get_submodule("conv2.input_quant").zero_point.fill_(-5.4)  # rounds to -5
    module = qcc.qat.convert(qmodel)
    fq = [op for op in module.walk() if isinstance(op, quant.FakeQuantOp)
          and op.attributes["id"].data == "conv2.input"]
    assert len(fq) == 1 and not fq[0].learned
    assert fq[0].qtype.scale == 0.125 and fq[0].qtype.zero_point == -5
    assert fq[0].qtype.bits == 4


def test_amct_retrain_round_trip(tmp_path):
    pytest.importorskip("onnxruntime")
    from qcc.qat import amct
    from qcc.testing import ort as exact_ort

    cfg = tmp_path / "retrain.json"
    amct.create_quant_retrain_config(cfg, MODEL, weight_bits=8, act_bits=8)
    qmodel = amct.create_quant_retrain_model(cfg, MODEL, CALIB)
    with torch.no_grad():
        qmodel.get_submodule("fc.input_quant").scale.mul_(1.5)
    paths = amct.save_quant_retrain_model(cfg, qmodel, tmp_path / "out" / "digits")
    restored = amct.restore_quant_retrain_model(cfg, MODEL, CALIB, paths["state"])
    x = np.load(TEST)["input"][:8]
    restored.eval()
    qmodel.eval()
    with torch.no_grad():
        a = restored(torch.from_numpy(x)).numpy()
        assert np.array_equal(a, qmodel(torch.from_numpy(x)).numpy())
    sess = exact_ort.session(paths["fake_quant"])   # QDQ as written, the same on every CPU
    b = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(b, a, atol=1e-4)
    with pytest.raises(QatError, match="not a retrain config"):
        amct.create_quant_retrain_model(tmp_path / "missing.json", MODEL, CALIB)


def test_caffe_prototxt_needs_weights_and_weights_need_a_prototxt(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text('name: "n"\n')
    with pytest.raises(QatError, match=r"net\.prototxt: .*weights='net\.caffemodel'"):
        qcc.qat.prepare(proto, {"data": np.ones((1, 1), np.float32)})
    with pytest.raises(QatError, match="weights= goes with a Caffe .prototxt"):
        qcc.qat.prepare(MODEL, CALIB, weights=tmp_path / "net.caffemodel")
