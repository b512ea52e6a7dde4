"""The `ascend` dialect: packed deq_scale, verifier rules, kernels' arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import f16, f32
from xdsl.utils.exceptions import VerifyException

import qcc.runtime.ascend_ops  # noqa: F401 (registers the kernels)
from qcc import ir, runtime
from qcc.dialects import ascend
from qcc.dialects.ascend import pack_deq_scale, unpack_deq_scale
from qcc.dialects.quant import UniformQuantizedType as Q
from qcc.runtime.ascend_ops import round_half_away

F32 = np.finfo(np.float32)

# (scale, offset_w, shift_bits, packed)
PACKED = [
    (1.0, 0, 0, 0x3F800000),
    (0.5, 0, 0, 0x3F000000),
    (0.0, 0, 0, 0),
    (float(F32.max), 0, 0, 0x7F7FFFFF),
    (float(F32.tiny), 0, 0, 0x00800000),  # smallest normal
    (float(F32.smallest_subnormal), 0, 0, 0x00000001),  # denormals pack as they are
    (1e-30, 0, 0, int(np.float32(1e-30).view(np.uint32))),
    (3.0517578125e-05, 0, 0, 0x38000000),
    (1.0, -1, 0, 0x0000FF003F800000),  # offset_w in bits 47..40 (int8)
    (1.0, 127, 3, 0x00007F033F800000),  # shift_N in bits 39..32
    (2.0, -128, 255, 0x000080FF40000000),
]


@pytest.mark.parametrize("scale,offset_w,shift,packed", PACKED)
def test_pack_unpack_table(scale, offset_w, shift, packed):
    u = pack_deq_scale(np.float32(scale), offset_w, shift)
    assert u.dtype == np.uint64 and int(u) == packed
    fields = unpack_deq_scale(u)
    assert fields.scale.dtype == np.float32
    assert fields.scale.view(np.uint32) == np.float32(scale).view(np.uint32)
    assert int(fields.offset_w) == offset_w and int(fields.shift_bits) == shift


def test_pack_per_channel_round_trip():
    rng = np.random.default_rng(0)
    scales = (rng.random(64) * 10.0 ** rng.integers(-12, 3, 64)).astype(np.float32)
    offsets = rng.integers(-128, 128, 64)
    u = pack_deq_scale(scales, offsets)
    assert u.shape == (64,)
    fields = unpack_deq_scale(u)
    assert np.array_equal(fields.scale, scales) and np.array_equal(fields.offset_w, offsets)
    assert not fields.shift_bits.any()


def test_pack_float64_is_rounded_to_float32():
    assert unpack_deq_scale(pack_deq_scale(0.1)).scale == np.float32(0.1)


@pytest.mark.parametrize("scale,why", [
    (-0.5, "is negative"),
    (-0.0 - 1e-30, "is negative"),
    (float("nan"), "is not finite"),
    (float("inf"), "is not finite"),
    (1e39, "overflows float32"),
    (1e-50, "underflows float32 to 0"),
])
def test_pack_rejects(scale, why):
    with pytest.raises(ValueError, match=why):
        pack_deq_scale(scale)


def test_pack_names_the_bad_channel():
    with pytest.raises(ValueError, match="at index 2"):
        pack_deq_scale(np.array([0.1, 0.2, np.nan], np.float32))


def test_pack_rejects_offsets_and_shifts_out_of_range():
    with pytest.raises(ValueError, match="offset_w must be int8"):
        pack_deq_scale(1.0, 200)
    with pytest.raises(ValueError, match="shift_bits"):
        pack_deq_scale(1.0, 0, 256)


def test_unpack_rejects_reserved_bits_and_negatives():
    with pytest.raises(ValueError, match="reserved bits"):
        unpack_deq_scale(np.uint64(1 << 50))
    with pytest.raises(ValueError, match="must be uint64"):
        unpack_deq_scale(np.array([-1], np.int64))


# ------------------------------------------------------------------ attributes


def test_quant_attributes_and_sqrt_mode():
    assert ascend.quant_attributes(Q.make(scale=0.02, zero_point=-3)) == (50.0, -3.0, False)
    scale, offset, sqrt_mode = ascend.quant_attributes(Q.make(scale=1e-6))
    assert sqrt_mode and offset == 0.0
    assert abs(scale * scale * 1e-6 - 1) < 1e-6 and scale <= ascend.FP16_MAX
    # 1 / scale_d just below float16's maximum stays plain
    assert not ascend.quant_attributes(Q.make(scale=1 / 65000))[2]


# --------------------------------------------------------------------- verifier


def _module(build):
    g = ir.Graph()
    x = g.input("x", (1, 4, 2, 2))
    acc = g.input("acc", (1, 4, 2, 2), np.int32)
    outs = build(g, x, acc)
    return g.finish(outs if isinstance(outs, dict) else {"y": outs})


def _verify_fails(build, message):
    with pytest.raises(VerifyException, match=message):
        _module(build).verify()


QT = Q.make(scale=0.02, zero_point=-3)


def test_quant_verifier():
    def op(**props):
        base = {"scale": ascend.f32_attr(50.0), "offset": ascend.f32_attr(-3.0), "sqrt_mode": False,
                "round_mode": "Round", "qtype": QT}
        base.update(props)
        return lambda g, x, acc: g.add(ascend.QuantOp.make(x, **base))

    _module(op()).verify()
    _verify_fails(op(scale=ascend.f32_attr(40.0)), "scale 40.0 does not match 1 / scale")
    _verify_fails(op(offset=ascend.f32_attr(0.0)), "offset 0.0 must be the zero point -3")
    _verify_fails(op(round_mode="Nearest"), "round_mode must be one of Round, Rint")
    _verify_fails(op(qtype=Q.make(scale=0.02, bits=16)), "must have i8 storage")
    _verify_fails(op(qtype=Q.make(scale=0.02, zero_point=-3, narrow_range=True)),
                  "full i8 storage range")
    big = Q.make(scale=1e-6)
    _verify_fails(op(qtype=big, scale=ascend.f32_attr(1e6), offset=ascend.f32_attr(0.0)),
                  "overflows float16 .* sqrt_mode")
    _module(op(qtype=big, scale=ascend.f32_attr(1000.0), offset=ascend.f32_attr(0.0),
               sqrt_mode=True)).verify()


def test_quant_clamped_range_needs_a_relu_dequant():
    clamped = Q.make(scale=0.02, zero_point=-3, storage_min=-3)
    deq = ir.constant(pack_deq_scale(np.float32(1e-3)))

    def build(relu):
        def f(g, x, acc):
            d = g.add(deq.clone())
            a = g.add(ascend.DequantOp.make(acc, d, relu_flag=relu, dtype=f16))
            return g.add(ascend.QuantOp.of(a, clamped))
        return f

    _module(build(True)).verify()
    _verify_fails(build(False), r"holds only after a relu")


def test_dequant_verifier():
    acc_t = Q.make_per_axis(axis=1, scales=[1e-3, 2e-3, 3e-3, 4e-3], bits=32)

    def build(deq, relu=False, sqrt=False, dtype=f16, typed=True, axis=1):
        def f(g, x, acc):
            a = acc
            if typed:
                from qcc.dialects import quant
                a = g.add(quant.QuantizeOp.make(x, qtype=acc_t))
            d = g.add(ir.constant(deq))
            return g.add(ascend.DequantOp.make(a, d, relu_flag=relu, sqrt_mode=sqrt,
                                               axis=axis, dtype=dtype))
        return f

    good = pack_deq_scale(np.asarray(acc_t.scales, np.float32))
    _module(build(good)).verify()
    _module(build(good, typed=False, dtype=f32)).verify()
    _module(build(pack_deq_scale(np.float32(0.5)), typed=False)).verify()
    _verify_fails(build(good[:2]), "deq_scale has 2 values: expected 1 or 4")
    _verify_fails(build(good[::-1].copy()), "deq_scale holds the scales")
    _verify_fails(build(good, sqrt=True), "sqrt_mode needs a float16 deq_scale")
    _module(build(np.full(4, 0.5, np.float16), sqrt=True, typed=False)).verify()
    _verify_fails(build(good.astype(np.int64)), "deq_scale must be a tensor of ui64")
    _verify_fails(build(good, dtype=ir.element_type(np.int8)), "dtype must be f16 or f32")
    _verify_fails(build(good, axis=0), "axis 0 differs from the quantized axis 1")


def test_anti_quant_verifier():
    def build(scale, offset, x_type=QT):
        def f(g, x, acc):
            q = g.add(ascend.QuantOp.of(x, x_type))
            return g.add(ascend.AntiQuantOp.make(q, scale=ascend.f32_attr(scale),
                                                 offset=ascend.f32_attr(offset), dtype=f32))
        return f

    _module(build(0.02, 3.0)).verify()
    _verify_fails(build(0.03, 3.0), "scale 0.03.* does not match scale 0.02")
    _verify_fails(build(0.02, -3.0), "negated zero point 3")


def test_weight_quant_verifier():
    w_t = Q.make_per_axis(axis=0, scales=[0.1, 0.2, 0.3], narrow_range=True)

    def build(shape):
        def f(g, x, acc):
            w = g.const(np.ones(shape, np.float32), "w")
            return g.add(ascend.WeightQuantOp.make(w, qtype=w_t))
        return f

    _module(build((3, 2))).verify()
    _verify_fails(build((2, 3)), "3 per-axis scales on axis 0")


def test_round_trip_text():
    def build(g, x, acc):
        q = g.add(ascend.QuantOp.of(x, QT, round_mode="Rint"))
        d = g.add(ir.constant(pack_deq_scale(np.float32([1e-3, 2e-3, 3e-3, 4e-3]))))
        y = g.add(ascend.DequantOp.make(acc, d, relu_flag=True, dtype=f16))
        a = g.add(ascend.AntiQuantOp.of(q))
        return {"y": y, "a": a}

    m = _module(build)
    text = ir.print_module(m)
    assert ir.print_module(ir.parse_module(text)) == text


# ---------------------------------------------------------------------- kernels


def test_round_half_away_from_zero():
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.49, -2.51], np.float16)
    assert round_half_away(v).tolist() == [-3, -2, -1, 1, 2, 3, 2, -3]


def _run(build, **inputs):
    return runtime.run(_module(build), inputs)


def test_quant_kernel_is_float16_arithmetic():
    x = np.array([0.0, 0.01, -0.01, 0.5, 1.0, 10.0, -10.0, 0.03], np.float32).reshape(
        1, 2, 2, 2)
    qt = Q.make(scale=0.02, zero_point=-3)
    y = runtime.run(_quant_module(qt, x.shape), {"x": x})["y"]
    expected = np.clip(round_half_away(x.astype(np.float16) * np.float16(50) +
                                       np.float16(-3)).astype(np.float32), -128, 127)
    assert np.array_equal(y, expected.astype(np.int8))
    # 0.01 * 50 - 3 = -2.5 in float16: half away from zero gives -3 (rint would give -2)
    assert y.reshape(-1)[1] == -3


def _quant_module(qtype, shape, round_mode="Round"):
    g = ir.Graph()
    x = g.input("x", shape)
    return g.finish({"y": g.add(ascend.QuantOp.of(x, qtype, round_mode))})


@pytest.mark.parametrize("mode,expected", [
    ("Round", [1, -1, 2, -2, 3]), ("Rint", [0, 0, 2, -2, 2]), ("Floor", [0, -1, 1, -2, 2]),
    ("Ceil", [1, 0, 2, -1, 3]), ("Trunc", [0, 0, 1, -1, 2])])
def test_quant_round_modes(mode, expected):
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5], np.float32)
    y = runtime.run(_quant_module(Q.make(scale=1.0), x.shape, mode), {"x": x})["y"]
    assert y.tolist() == expected


def test_quant_sqrt_mode_matches_plain_quantization():
    qt = Q.make(scale=1e-6)
    x = np.linspace(-1e-4, 1e-4, 41, dtype=np.float32)
    y = runtime.run(_quant_module(qt, x.shape), {"x": x})["y"]
    assert np.abs(y.astype(int) - qt.quantize(x).astype(int)).max() <= 1


def test_dequant_kernel():
    scales = np.float32([1e-3, 2e-3, 3e-3, 4e-3])
    acc = np.arange(-8, 8, dtype=np.int32).reshape(1, 4, 2, 2) * 1000

    def build(relu, dtype, deq):
        def f(g, x, a):
            return g.add(ascend.DequantOp.make(a, g.add(ir.constant(deq)), relu_flag=relu,
                                               dtype=dtype))
        return f

    exact = acc.astype(np.float32) * scales.reshape(1, 4, 1, 1)
    x = np.zeros((1, 4, 2, 2), np.float32)
    y32 = _run(build(False, f32, pack_deq_scale(scales)), x=x, acc=acc)["y"]
    assert y32.dtype == np.float32 and np.array_equal(y32, exact)
    y16 = _run(build(True, f16, pack_deq_scale(scales)), x=x, acc=acc)["y"]
    assert y16.dtype == np.float16
    assert np.array_equal(y16, np.maximum(exact, 0).astype(np.float16))
    one = _run(build(False, f32, pack_deq_scale(np.float32(0.5))), x=x, acc=acc)["y"]
    assert np.array_equal(one, acc * np.float32(0.5))
