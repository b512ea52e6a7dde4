"""The int8 layers' fused Ascend output stages (runtime/_int8.pyx `dequant_stage`,
`qcc.runtime.int8.fused`): conv / dense -> ascend.dequant (float32 or float16) ->
cast to float32 -> ascend.quant in one pass, on every instruction set the CPU has.

Oracles: the int32 accumulator from exact int64 numpy sums (`int8.conv` / `int8.dense`,
the numpy definitions, not the compiled kernels), then the stages in numpy's own
float16 arithmetic; for a whole deploy model, the same model run by the numpy
reference kernels (QCC_REFERENCE_KERNELS=1, in a subprocess)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

from qcc.runtime import int8, isa

_C = int8._C
pytestmark = pytest.mark.skipif(_C is None, reason="qcc.runtime._int8 is not built")


@pytest.fixture(params=isa.LEVELS)
def level(request):
    """Force every kernel family to one level (skipped where the CPU lacks it)."""
    if request.param not in isa.available():
        pytest.skip(f"this CPU does not run the {request.param} kernels")
    with isa.forced(request.param):
        yield request.param


PATHS = ["gemm", "lanes", "amx"]
"""The int8 conv's paths: the GEMM, the channels-in-lanes conv (AVX-512 VNNI) with
its sums on VNNI or on AMX tiles."""


def _skip_path(path, level):
    if path != "gemm" and level != "avx512":
        pytest.skip("the channels-in-lanes path is the AVX-512 VNNI variant's")
    if path == "amx" and not _C.amx_supported():
        pytest.skip("this CPU (or OS) does not run AMX-INT8")


@contextmanager
def _path(path):
    """Force the int8 conv onto `path` (one of PATHS)."""
    old = _C.set_lanes("never" if path == "gemm" else "always")
    old_amx = _C.set_amx("always" if path == "amx" else "never")
    try:
        yield
    finally:
        _C.set_lanes(old)
        _C.set_amx(old_amx)


def _round_half_away(v):
    a = np.abs(v)
    r = np.floor(a)
    return np.copysign(np.where(a - r >= 0.5, r + 1, r), v)


ROUND = [_round_half_away, np.rint, np.floor, np.ceil, np.trunc]


def oracle_stage(acc, scale, relu, out, quant, axis):
    """numpy: float32(acc) * scale, relu, then float16 / float32 / ascend.quant."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    with np.errstate(over="ignore", invalid="ignore"):
        v = acc.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)
        if relu:
            v = np.where(v < 0, np.float32(0), v)
        if out == "float32":
            return v
        h = v.astype(np.float16)
        if out == "float16":
            return h
        if out == "float16_as_float32":
            return h.astype(np.float32)
        return oracle_quant(h, quant)


def oracle_quant(h, quant):
    """numpy: ascend.quant of the float16 values h (float16 arithmetic)."""
    s, o, sqrt_mode, mode = quant
    with np.errstate(over="ignore", invalid="ignore"):
        y = h * np.float16(s)
        if sqrt_mode:
            y = y * np.float16(s)
        y = ROUND[mode](y + np.float16(o))
        return np.clip(y.astype(np.float32), -128, 127).astype(np.int8)


STAGES = [("float32", None), ("float16", None), ("float16_as_float32", None),
          ("int8", (40.62, -128.0, False, 0)), ("int8", (3.0, 5.0, True, 1)),
          ("int8", (0.5, 0.0, False, 2)), ("int8", (7.0, -3.0, False, 3)),
          ("int8", (21.0, 1.0, False, 4))]

# (x shape, O, kernel, strides, pads, groups): images merged into one GEMM, one image
# with vector tails, depthwise, 1-d
CONVS = [((2, 16, 9, 9), 24, (3, 3), (1, 1), (1, 1, 1, 1), 1),
         ((2, 20, 7, 9), 70, (3, 3), (1, 1), (1, 1, 1, 1), 1),   # lanes: 2 blocks, tails
         ((1, 6, 11, 13), 5, (3, 3), (2, 2), (1, 1, 1, 1), 1),
         ((2, 12, 10, 10), 12, (3, 3), (1, 1), (1, 1, 1, 1), 12),
         ((3, 4, 20), 6, (3,), (1,), (1, 1), 1)]


def _conv_case(case, seed):
    """Random int8 operands of a CONVS case and their exact int32 accumulator (the
    numpy definition): (rng, x, w, b, z_x, dilations, acc)."""
    shape, o, k, s, p, g = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    w = rng.integers(-127, 128, (o, shape[1] // g, *k)).astype(np.int8)
    b = rng.integers(-(1 << 12), 1 << 12, o)
    z_x = int(rng.integers(-128, 128))
    dil = (1,) * len(k)
    return rng, x, w, b, z_x, dil, int8.conv(x, w, b, z_x, 0, s, p, dil, g)


@pytest.mark.parametrize("out,quant", STAGES)
@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("lanes", PATHS)
def test_conv_dequant_stages_match_numpy(out, quant, case, per_channel, lanes, level):
    """(`lanes`: AVX-512 VNNI's channels-in-lanes path, forced where it applies, with
    its sums on VNNI or on AMX tiles.)"""
    _skip_path(lanes, level)
    shape, o, k, s, p, g = case
    rng, x, w, b, z_x, dil, acc = _conv_case(case, o + shape[1])
    scale = (rng.random(o) * 2e-3 + 1e-4).astype(np.float32) if per_channel \
        else np.float32([3e-3])
    for relu in (False, True):
        want = oracle_stage(acc, scale, relu, out, quant, 1)
        wp, off = int8.pack(w, b, z_x)
        with _path(lanes):
            got = _C.conv(x, wp, off, k, z_x, s, p, dil, g,
                          _C.dequant_stage(scale, relu, out, quant),
                          int8.pack_lanes(w) if g == 1 else None)
        assert got.dtype == want.dtype
        bad = np.flatnonzero(got.view(np.uint8) != want.view(np.uint8))
        assert bad.size == 0, (out, relu, got.ravel()[bad[:4]], want.ravel()[bad[:4]],
                               acc.ravel()[bad[:4]])


@pytest.mark.parametrize("out,quant", STAGES[:4])
def test_dense_dequant_stages_match_numpy(out, quant, level):
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (37, 70)).astype(np.int8)
    w = rng.integers(-127, 128, (19, 70)).astype(np.int8)
    b = rng.integers(-(1 << 12), 1 << 12, 19)
    acc = int8.dense(x, w, b, 3, 0)
    scale = (rng.random(19) * 2e-3).astype(np.float32)
    wp, off = int8.pack(w, b, 3)
    got = _C.dense(x, wp, off, _C.dequant_stage(scale, True, out, quant))
    want = oracle_stage(acc, scale, True, out, quant, 1)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


def _skip(shape, rng):
    """A float32 residual with NaN, infinities, -0 and values past float16's range."""
    skip = (rng.standard_normal(shape) * 2).astype(np.float32)
    flat = skip.reshape(-1)
    for i, v in enumerate((np.nan, np.inf, -np.inf, -0.0, 7e4, -7e4)):
        flat[i::37] = v
    return skip


@pytest.mark.parametrize("out", ["float32", "float16_as_float32"])
@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("lanes", PATHS)
def test_conv_residual_stages_match_numpy(out, case, lanes, level):
    """The residual stage (`residual_stage`: a deploy model's dequant, cast, residual
    add, relu and the next layer's quant in the conv's pass) against numpy: the
    float32 sum in the add's operand order, its relu (NaN stays NaN, -0 becomes +0)
    and the ascend.quant of it; also without an add (the values and their quant)."""
    _skip_path(lanes, level)
    shape, o, k, s, p, g = case
    rng, x, w, b, z_x, dil, acc = _conv_case(case, o * 7 + shape[1])
    scale = (rng.random(o) * 2e-3 + 1e-4).astype(np.float32)
    skip = _skip(acc.shape, rng)
    wp, off = int8.pack(w, b, z_x)
    wl = int8.pack_lanes(w) if g == 1 else None
    quant = (40.62, -3.0, False, 0)
    with _path(lanes):
        for relu, res_first, relu2, with_skip in itertools.product((False, True), repeat=4):
            v = oracle_stage(acc, scale, relu, out, None, 1)
            t = v if not with_skip else (skip + v if res_first else v + skip)
            if relu2:
                t = np.where((t > 0) | np.isnan(t), t, np.float32(0))
            want_q = oracle_quant(t.astype(np.float16), quant)
            base = _C.dequant_stage(scale, relu, out)
            for keep, q in ((True, None), (False, quant), (True, quant)):
                if q is None and not with_skip:
                    continue
                st = _C.residual_stage(base, skip if with_skip else None, res_first, relu2,
                                       q, keep)
                got = _C.conv(x, wp, off, k, z_x, s, p, dil, g, st, wl)
                got_sum, got_q = got if keep and q else (got, None) if keep else (None, got)
                what = (relu, res_first, relu2, with_skip, keep, q)
                if got_sum is not None:
                    assert got_sum.dtype == np.float32
                    assert np.array_equal(got_sum.view(np.uint32), t.view(np.uint32)), what
                if got_q is not None:
                    assert np.array_equal(got_q, want_q), what


def test_a_residual_stage_checks_its_operands():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (1, 4, 5, 5)).astype(np.int8)
    w = rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    wp, off = int8.pack(w, np.zeros(8, np.int64), 0)
    base = _C.dequant_stage(np.float32([1e-3]), False, "float32")
    args = (x, wp, off, (3, 3), 0, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="not the output's shape"):
        _C.conv(*args, _C.residual_stage(base, np.zeros((1, 8, 4, 4), np.float32), False,
                                         False))
    with pytest.raises(ValueError, match="expected a dequant stage writing float32"):
        _C.residual_stage(_C.dequant_stage(np.float32([1e-3]), False, "float16"), None,
                          False, False, (1.0, 0.0, False, 0))
    with pytest.raises(ValueError, match="keeps neither"):
        _C.residual_stage(base, None, False, False, None, False)
    with pytest.raises(ValueError, match="no residual stage"):
        _C.dense(x.reshape(1, -1)[:, :36], *int8.pack(w.reshape(8, -1), None, 0),
                 _C.residual_stage(base, np.zeros((1, 8), np.float32), False, False))


def test_a_stage_needs_its_quant_parameters():
    with pytest.raises(ValueError, match="dequant stage"):
        _C.dequant_stage(np.float32([1.0]), False, "int8")
    with pytest.raises(ValueError, match="dequant stage"):
        _C.dequant_stage(np.float32([1.0]), False, "bfloat16")


# ------------------------------------------------ a whole deploy model

_REFERENCE = """
import sys, numpy as np
from qcc.frontends.onnx import load_onnx
from qcc.runtime.executor import run_batches
out = run_batches(load_onnx(sys.argv[1]), {"input": np.load(sys.argv[2])})
np.save(sys.argv[3], out["logits"])
"""


@pytest.fixture(scope="module")
def deploy(tmp_path_factory):
    """The digits example's deploy model (conv -> AscendDequant -> AscendQuant chains)."""
    pytest.importorskip("qcc.passes.realize_int8")
    import qcc
    from qcc.examples import digits

    model, calib, test = digits()
    out = tmp_path_factory.mktemp("deploy")
    qcc.quantize(str(model), calib, None, str(out), progress=False)
    x = np.load(test)["input"][:16]
    np.save(out / "x.npy", x)
    env = dict(os.environ, QCC_REFERENCE_KERNELS="1")
    path = out / "model_deploy.onnx"
    subprocess.run([sys.executable, "-c", _REFERENCE, str(path), str(out / "x.npy"),
                    str(out / "want.npy")], env=env, check=True)
    return path, x, np.load(out / "want.npy")


def test_deploy_model_fused_matches_the_numpy_reference(deploy, level):
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import compile_module, execute

    path, x, want = deploy
    plan = compile_module(load_onnx(str(path)))
    kinds = [s.op.name for s in plan.steps]
    assert "ascend.dequant" not in kinds  # every dequant runs inside its layer
    got = np.concatenate([execute(plan, {"input": x[i:i + 1]})[0]["logits"]
                          for i in range(len(x))])
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.fixture(scope="module")
def resnet_deploy(tmp_path_factory):
    """The deploy model `qcc quantize` writes for a ResNet-18 (qcc.testing.models):
    residual blocks, dequant -> cast -> add -> relu -> quant, and the numpy reference
    kernels' logits of it."""
    pytest.importorskip("qcc.passes.realize_int8")
    import onnx

    import qcc
    from qcc.testing.models import resnet18_cifar

    out = tmp_path_factory.mktemp("resnet_deploy")
    onnx.save(resnet18_cifar(batch=2), out / "r18.onnx")
    rng = np.random.default_rng(3)
    calib = {"input": rng.standard_normal((4, 3, 32, 32)).astype(np.float32)}
    qcc.quantize(str(out / "r18.onnx"), calib, None, str(out / "q"), progress=False)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(out / "x.npy", x)
    env = dict(os.environ, QCC_REFERENCE_KERNELS="1")
    path = out / "q" / "r18_deploy.onnx"
    subprocess.run([sys.executable, "-c", _REFERENCE, str(path), str(out / "x.npy"),
                    str(out / "want.npy")], env=env, check=True)
    return path, x, np.load(out / "want.npy")


def test_residual_blocks_run_in_the_convs_output_stages(resnet_deploy, level):
    """Each residual add of the ResNet's deploy model, its relu and the next layer's
    quant run in the output stage of the conv before the add (`int8.residual`,
    `int8.teed`): no add, dequant or quant step is left between two convs, and the
    logits are those of the numpy reference kernels and of the unfused steps, bit
    for bit."""
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import compile_module, execute

    path, x, want = resnet_deploy
    plan = compile_module(load_onnx(str(path)))
    kinds = [s.op.name for s in plan.steps]
    assert "qnn.add" not in kinds and "ascend.dequant" not in kinds
    assert kinds.count("ascend.quant") == 2   # the network's input and the classifier's
    residual = [s for s in plan.steps if isinstance(s.fn, int8._Residual)]
    assert len(residual) == 9   # 8 blocks' adds, and the stem's values with their quant
    assert sum(len(s.results) == 2 for s in residual) == 5   # sum and quant both used
    got, _ = execute(plan, {"input": x})
    assert np.array_equal(got["logits"].view(np.uint32), want.view(np.uint32))
    add = next(s.op for s in plan.unfused if s.op.name == "qnn.add")
    unfused, _ = execute(plan, {"input": x}, keep=[add.results[0]])
    assert np.array_equal(got["logits"].view(np.uint32), unfused["logits"].view(np.uint32))
