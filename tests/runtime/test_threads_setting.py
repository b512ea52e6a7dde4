"""qcc.runtime.set_threads / QCC_NUM_THREADS: every compiled module takes the count
and reports the old one back, and a model's outputs keep their bits at 1 and 2
threads (small products shared too); the outputs against onnxruntime."""

import os
import subprocess
import sys

import numpy as np
import pytest

import qcc.runtime as rt
from qcc.runtime import threads as T

pytestmark = pytest.mark.skipif(rt.isa._conv is None, reason="qcc.runtime is not compiled")


def module_counts() -> list[int]:
    """Each compiled module's count, read through its setter (then put back)."""
    counts = []
    for module, setter in T._modules():
        old = getattr(module, setter)(1)
        getattr(module, setter)(old)
        counts.append(old)
    return counts


@pytest.fixture
def restore_threads():
    old = rt.get_threads()
    yield
    rt.set_threads(old)


def test_set_threads_sets_every_module_and_returns_the_old_count(restore_threads):
    assert len(T._modules()) == 8
    first = rt.set_threads(3)
    assert module_counts() == [3] * 8 and rt.get_threads() == 3
    assert rt.set_threads(1) == 3
    assert module_counts() == [1] * 8 and rt.get_threads() == 1
    assert rt.set_threads(first) == 1


@pytest.mark.parametrize("bad", [0, -1, 65, 2.0, "2", True])
def test_set_threads_rejects_a_bad_count(bad, restore_threads):
    before = module_counts()
    with pytest.raises(ValueError, match="from 1 to 64"):
        rt.set_threads(bad)
    assert module_counts() == before


def test_env_sets_every_module_at_import():
    code = ("import qcc.runtime as rt\nfrom qcc.runtime import threads as T\n"
            "cs = [getattr(m, s)(1) for m, s in T._modules()]\nprint(rt.get_threads(), *cs)")
    env = dict(os.environ, QCC_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["3"] * 9
    env["QCC_NUM_THREADS"] = "many"
    res = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                         capture_output=True, text=True, check=True)
    assert "QCC_NUM_THREADS='many' is not an integer from 1 to 64" in res.stderr
    assert res.stdout.split()[0] == str(T.default_threads())


def small_model():
    """conv 3x3 + relu, depthwise 3x3, 1x1 conv + residual, global pool, dense."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, group=16),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], transB=1),
    ]
    inits = [init("w1", 16, 3, 3, 3), init("b1", 16), init("w2", 16, 1, 3, 3), init("b2", 16),
             init("w3", 16, 16, 1, 1), init("b3", 16), init("wd", 10, 16), init("bd", 10)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 20, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_outputs_keep_their_bits_at_1_and_2_threads(restore_threads):
    ort = pytest.importorskip("onnxruntime")
    from qcc.frontends.onnx import load_onnx

    _conv, _kernels = rt.isa._conv, pytest.importorskip("qcc.runtime._kernels")
    model = small_model()
    x = np.random.default_rng(1).standard_normal((4, 3, 20, 20)).astype(np.float32)
    plan = rt.compile_module(load_onnx(model))
    old_conv, old_dense = _conv._set_parallel_min(0.0), _kernels._set_parallel_min(0.0)
    try:
        outs = {}
        for n in (1, 2, 1):
            rt.set_threads(n)
            outs.setdefault(n, []).append(rt.execute(plan, {"x": x})[0]["y"].copy())
    finally:
        _conv._set_parallel_min(old_conv)
        _kernels._set_parallel_min(old_dense)
    one, two = outs[1][0], outs[2][0]
    assert one.view(np.uint32).tolist() == two.view(np.uint32).tolist()
    assert outs[1][1].view(np.uint32).tolist() == one.view(np.uint32).tolist()
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(one, want, rtol=1e-4, atol=1e-5)


def conv64(x, w, b, stride, pad):
    """Direct 2-D convolution in float64 (tap by tap sums of strided slices)."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    _, _, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow)) + b.reshape(1, -1, 1, 1)
    for i in range(kh):
        for j in range(kw):
            xs = xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", xs, w[:, :, i, j].astype(np.float64))
    return y


# batches of small outputs (one GEMM over the images), big enough for the threads to
# share the padded copies of the inputs and the copy out with the epilogue
@pytest.mark.parametrize("case", [((8, 32, 10, 10), 48, 3, 1, 1), ((8, 32, 16, 16), 64, 1, 2, 0),
                                  ((6, 24, 9, 11), 40, 3, 2, 1)], ids=["3x3", "1x1-s2", "3x3-s2"])
def test_batched_conv_keeps_its_bits_at_1_and_2_threads(case, restore_threads):
    shape, o, k, s, p = case
    _conv = rt.isa._conv
    rng = np.random.default_rng(o)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((o, shape[1], k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    args = ((s, s), (p,) * 4, (1, 1), 1)
    skip = rng.standard_normal((shape[0], o, *conv64(x[:1, :1], w[:1, :1], b[:1], s, p).shape[2:]),
                               dtype=np.float32)
    old_min = _conv._set_parallel_min(0.0)
    try:
        outs = []
        for n in (1, 2):
            rt.set_threads(n)
            outs.append(_conv.conv(x, w, b, *args, activation="relu", residual=skip))
    finally:
        _conv._set_parallel_min(old_min)
    assert outs[0].view(np.uint32).tolist() == outs[1].view(np.uint32).tolist()
    want = np.maximum(conv64(x, w, b, s, p) + skip, 0)
    np.testing.assert_allclose(outs[1], want, rtol=1e-4, atol=1e-4)
