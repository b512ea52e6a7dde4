"""QAT of the embedded digits CNN (BatchNorm kept) at W4A4, with range learning.

Oracles: onnxruntime runs the float model and the fake-quant ONNX exported from
the converted IR; labels are scikit-learn's digits."""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from qcc.examples import digits  # noqa: E402
from qcc.testing import ort as exact_ort  # noqa: E402

MODEL, CALIB, TEST = digits()


def _train_data():
    sk = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    d = sk.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)


def _ort_accuracy(model, x, y) -> float:
    sess = exact_ort.session(model)   # QDQ as written: the same on every CPU
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return float(np.mean(out.argmax(1) == y))


def _torch_accuracy(qmodel, x, y) -> float:
    qmodel.eval()
    with torch.no_grad():
        return float(np.mean(qmodel(torch.from_numpy(x)).argmax(1).numpy() == y))


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("bn_fold", [False, True])
def test_w4a4_qat_recovers_float_accuracy(bn_fold, one_thread, tmp_path):
    import qcc
    from qcc.exporters.onnx import export_onnx

    start = time.time()
    x_train, x_test, y_train, y_test = _train_data()
    with np.load(TEST) as t:
        assert np.array_equal(t["input"], x_test)  # the example's held-out split
    float_acc = _ort_accuracy(MODEL, x_test, y_test)
    torch.manual_seed(0)
    qmodel = qcc.qat.prepare(MODEL, CALIB, {"weight_bits": 4, "act_bits": 4,
                                            "scheme": "range_learning", "bn_fold": bn_fold,
                                            "freeze_bn_delay": 40})
    ptq_acc = _torch_accuracy(qmodel, x_test, y_test)
    opt = torch.optim.Adam(qmodel.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    for _ in range(4):
        qmodel.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(qmodel(xt[idx]), yt[idx]).backward()
            opt.step()
    qat_acc = _torch_accuracy(qmodel, x_test, y_test)
    print(f"\ndigits W4A4 bn_fold={bn_fold}: float {float_acc:.4f}  PTQ {ptq_acc:.4f}  "
          f"QAT {qat_acc:.4f}  ({time.time() - start:.1f} s)")
    assert ptq_acc < float_acc - 0.005
    assert qat_acc >= float_acc - 0.01

    # the converted IR, exported as fake-quant ONNX, runs in onnxruntime with the
    # accuracy measured in torch
    module = qcc.qat.convert(qmodel)
    path = tmp_path / "digits_fake_quant.onnx"
    export_onnx(module, path)
    ort_acc = _ort_accuracy(path, x_test, y_test)
    print(f"fake-quant ONNX in onnxruntime: {ort_acc:.4f}")
    assert abs(ort_acc - qat_acc) <= 0.005
    # with its graph optimizations off (no QDQ -> QLinearConv fusion, which rounds the
    # accumulator differently), onnxruntime computes the torch module's logits
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = x_test[:64]
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        want = qmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
