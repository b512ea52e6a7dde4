"""Whole models through qcc's ONNX frontend and runtime, checked against onnxruntime.

Each model of `qcc.testing.models` is imported with `load_onnx`, run with
`qcc.runtime.run`, and compared with onnxruntime on the same inputs at rtol 1e-3,
atol 1e-4 (all three models meet it with a wide margin: the largest deviations
measured are ~6e-7 absolute on ResNet-18 logits of magnitude ~1, ~1e-5 on the
digits logits and ~1.5e-6 on the transformer's layer-normalized outputs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from qcc.frontends.onnx import load_onnx  # noqa: E402
from qcc.runtime import compile_module, execute, run  # noqa: E402
from qcc.testing import models  # noqa: E402
from qcc.testing import ort as exact_ort  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4


def ort_run(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return exact_ort.run(model, feeds)   # no QDQ fusion: the same on every CPU


def assert_matches_ort(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    got = run(load_onnx(model), feeds)
    want = ort_run(model, feeds)
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert got[name].dtype == np.float32, name
        np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)
    return got


def normal(shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ ResNet-18


def test_resnet18_cifar():
    """Batch 2, so that a batch dimension goes through every conv, BN, pool and Gemm."""
    model = models.resnet18_cifar(batch=2, seed=0)
    got = assert_matches_ort(model, {"input": normal((2, 3, 32, 32))})
    logits = got["logits"]
    assert np.isfinite(logits).all() and 0.01 < np.abs(logits).max() < 100
    assert not np.allclose(logits[0], logits[1])


# ------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return models.digits_cnn(batch=50, seed=0)


def _batches(x: np.ndarray, batch: int):
    """`x` in batches of exactly `batch` rows (the last one padded with zeros)."""
    for start in range(0, len(x), batch):
        part = x[start:start + batch]
        n = len(part)
        if n < batch:
            part = np.concatenate([part, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        yield part, n


def test_digits_cnn_predictions_equal_onnxruntime(digits):
    model, (x_test, y_test) = digits
    assert x_test.shape == (450, 1, 8, 8) and x_test.dtype == np.float32
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    plan = compile_module(load_onnx(model))
    qcc_logits, ort_logits = [], []
    for part, n in _batches(x_test, 50):
        qcc_logits.append(execute(plan, {"x": part})[0]["logits"][:n])
        ort_logits.append(sess.run(["logits"], {"x": part})[0][:n])
    q, o = np.concatenate(qcc_logits), np.concatenate(ort_logits)
    np.testing.assert_allclose(q, o, rtol=RTOL, atol=ATOL)
    q_pred, o_pred = q.argmax(axis=1), o.argmax(axis=1)
    assert (q_pred == o_pred).all(), np.flatnonzero(q_pred != o_pred)
    accuracy = float((q_pred == y_test).mean())
    assert accuracy > 0.9, accuracy


# --------------------------------------------------------------- transformer


@pytest.mark.parametrize("mask_value", [-1e9, -math.inf], ids=["mask-1e9", "mask-inf"])
def test_transformer_block(mask_value):
    model = models.transformer_block(batch=2, seq=16, d_model=64, heads=4,
                                     mask_value=mask_value)
    got = assert_matches_ort(model, {"x": normal((2, 16, 64))})["y"]
    assert np.isfinite(got).all()


@pytest.mark.parametrize("mask_value", [-1e9, -math.inf], ids=["mask-1e9", "mask-inf"])
def test_transformer_block_mask_as_input(mask_value):
    model = models.transformer_block(batch=2, seq=16, d_model=64, heads=4,
                                     mask_value=mask_value, mask_input=True)
    feeds = {"x": normal((2, 16, 64), seed=3), "mask": models.causal_mask(16, mask_value)}
    assert np.isfinite(assert_matches_ort(model, feeds)["y"]).all()


def test_transformer_block_is_causal():
    """Changing the last position changes no earlier output (the mask works)."""
    model = models.transformer_block(batch=1, seq=8, d_model=32, heads=2, seed=4)
    plan = compile_module(load_onnx(model))
    x = normal((1, 8, 32), seed=5)
    x2 = x.copy()
    x2[:, -1] += 1.0
    y, y2 = (execute(plan, {"x": v})[0]["y"] for v in (x, x2))
    np.testing.assert_allclose(y[:, :-1], y2[:, :-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(y[:, -1], y2[:, -1])
