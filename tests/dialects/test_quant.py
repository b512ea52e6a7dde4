"""The quant dialect: !quant.uniform printing/parsing, numerics, verifiers, ops."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from xdsl.dialects.builtin import bf16, f16, f32, f64
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from qcc.dialects import quant
from qcc.dialects.quant import (
    DequantizeOp,
    FakeQuantOp,
    ObserveOp,
    QuantizeOp,
    RequantizeOp,
    UniformQuantizedType,
    format_float,
    storage_range,
)
from qcc.ir import Graph, parse_module, print_module, tensor_type
from qcc.registry import make_context

Q = UniformQuantizedType


def parse_type(text: str):
    return Parser(make_context(), text).parse_attribute()


# ------------------------------------------------------------ print / parse

ROUND_TRIPS = [
    # (written, printed)
    ("!quant.uniform<i8:f32, 0.0125:-3>", "!quant.uniform<i8:f32, 0.0125:-3>"),
    ("!quant.uniform<i8:f32, 1.250000e-02:-3>", "!quant.uniform<i8:f32, 0.0125:-3>"),
    ("!quant.uniform<u8:f32, 0.5:0>", "!quant.uniform<u8:f32, 0.5>"),
    ("!quant.uniform<u8:f32, 2>", "!quant.uniform<u8:f32, 2.0>"),
    ("!quant.uniform<i4:f32, 0.25:-8>", "!quant.uniform<i4:f32, 0.25:-8>"),
    ("!quant.uniform<u4:f16, 0.25:15>", "!quant.uniform<u4:f16, 0.25:15>"),
    ("!quant.uniform<i16:bf16, 0.001>", "!quant.uniform<i16:bf16, 0.001>"),
    ("!quant.uniform<i32:f32, 1.0e-06>", "!quant.uniform<i32:f32, 1.0e-06>"),
    ("!quant.uniform<u32:f32, 1.0:4294967295>", "!quant.uniform<u32:f32, 1.0:4294967295>"),
    ("!quant.uniform<i8<-127:127>:f32, 0.5:1>", "!quant.uniform<i8<-127:127>:f32, 0.5:1>"),
    ("!quant.uniform<i8<-128:127>:f32, 0.5>", "!quant.uniform<i8:f32, 0.5>"),
    ("!quant.uniform<u8<1:255>:f32, 0.5:128>", "!quant.uniform<u8<1:255>:f32, 0.5:128>"),
    ("!quant.uniform<i8:f32, 3.0e+38>", "!quant.uniform<i8:f32, 3.0e+38>"),
    ("!quant.uniform<i8:f32, 0.30000000000000004>", "!quant.uniform<i8:f32, 0.30000000000000004>"),
    ("!quant.uniform<i8:f32:0, {0.1:0,0.2:0}>", "!quant.uniform<i8:f32:0, {0.1,0.2}>"),
    ("!quant.uniform<u8:f32:3, {0.5:128, 0.25}>", "!quant.uniform<u8:f32:3, {0.5:128,0.25}>"),
    ("!quant.uniform<i8<-127:127>:f32:1, {2.0e+2:120,9.987200e-01:127}>",
     "!quant.uniform<i8<-127:127>:f32:1, {200.0:120,0.99872:127}>"),
]


@pytest.mark.parametrize("written,printed", ROUND_TRIPS)
def test_round_trip(written: str, printed: str) -> None:
    t = parse_type(written)
    assert isinstance(t, Q)
    assert str(t) == printed
    again = parse_type(printed)
    assert again == t
    assert str(again) == printed


def test_round_trip_in_a_module() -> None:
    text = ("func.func @f(%a: tensor<2x3x!quant.uniform<i8:f32:1, {0.1,0.2:3,0.4}>>) {\n"
            "  func.return\n}\n")
    printed = print_module(parse_module(text))
    assert "tensor<2x3x!quant.uniform<i8:f32:1, {0.1,0.2:3,0.4}>>" in printed
    assert print_module(parse_module(printed)) == printed


def test_randomized_round_trip() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        bits = rng.choice([4, 8, 16, 32])
        signed = rng.random() < 0.5
        narrow = rng.random() < 0.3
        lo, hi = storage_range(bits, signed, narrow)
        expressed = rng.choice([f32, f16, bf16])

        def scale() -> float:
            return rng.choice([rng.random() + 1e-300, 10.0 ** rng.uniform(-30, 30),
                               rng.uniform(0.0, 1.0) * 2.0 ** rng.randint(-60, 60) or 1.0])

        if rng.random() < 0.5:
            t = Q.make(bits=bits, signed=signed, narrow_range=narrow, expressed_type=expressed,
                       scale=scale(), zero_point=rng.randint(lo, hi))
        else:
            n = rng.randint(1, 6)
            t = Q.make_per_axis(bits=bits, signed=signed, narrow_range=narrow,
                                expressed_type=expressed, axis=rng.randint(0, 4),
                                scales=[scale() for _ in range(n)],
                                zero_points=[rng.randint(lo, hi) for _ in range(n)])
        text = str(t)
        back = parse_type(text)
        assert back == t, text
        assert back.scales == t.scales  # exact as float64
        assert str(back) == text


def test_format_float_is_an_mlir_float_literal() -> None:
    assert format_float(0.0125) == "0.0125"
    assert format_float(1e-05) == "1.0e-05"
    assert format_float(1e16) == "1.0e+16"
    assert format_float(2.0) == "2.0"
    for v in (1e-05, 1e16, 5e-324, 1.7976931348623157e308):
        assert float(format_float(v)) == v


@pytest.mark.parametrize("text,message", [
    ("!quant.uniform<si8:f32, 0.5>", "expected a storage type like i8 or u8"),
    ("!quant.uniform<i8:f32, {0.5,0.5}>", "per-axis scales need an axis"),
    ("!quant.uniform<i8:f32:0, 0.5>", "'{' expected"),
    ("!quant.uniform<i8:f32 0.5>", "before scale and zero point"),
    ("!quant.uniform<i8:f32, 0.5:0.5>", "zero point"),
    ("!quant.uniform<i8<-127 127>:f32, 0.5>", "between storage min and max"),
    ("!quant.uniform<i8:f32, 0.5", "to close !quant.uniform"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_type(text)


# --------------------------------------------------------------- accessors


def test_accessors_per_tensor() -> None:
    t = Q.make(bits=8, signed=True, scale=0.1, zero_point=-3, narrow_range=True)
    assert str(t) == "!quant.uniform<i8<-127:127>:f32, 0.1:-3>"
    assert (t.bits, t.signed, t.storage_min, t.storage_max) == (8, True, -127, 127)
    assert t.narrow_range and not t.is_per_axis and t.axis is None
    assert t.expressed_type == f32
    assert (t.scale, t.zero_point, t.scales, t.zero_points) == (0.1, -3, (0.1,), (-3,))
    assert t.numpy_dtype == np.int8


def test_accessors_per_axis() -> None:
    t = Q.make_per_axis(bits=4, signed=False, axis=1, scales=[0.5, 0.25])
    assert str(t) == "!quant.uniform<u4:f32:1, {0.5,0.25}>"
    assert (t.bits, t.signed, t.storage_min, t.storage_max, t.axis) == (4, False, 0, 15, 1)
    assert t.zero_points == (0, 0) and t.numpy_dtype == np.uint8
    with pytest.raises(ValueError, match="per-axis"):
        _ = t.scale


def test_storage_range() -> None:
    assert storage_range(8, True) == (-128, 127)
    assert storage_range(8, True, True) == (-127, 127)
    assert storage_range(8, False, True) == (1, 255)
    assert storage_range(4, True) == (-8, 7)
    assert storage_range(32, False) == (0, 2**32 - 1)


# ---------------------------------------------------------------- numerics


def test_quantize_by_hand() -> None:
    # scale 0.5, zero point -3: x/scale = [0, 0.5, 1.5, 2.5, -0.5, -1.5, 200, -200]
    t = Q.make(scale=0.5, zero_point=-3)
    x = np.array([0.0, 0.25, 0.75, 1.25, -0.25, -0.75, 100.0, -100.0], np.float32)
    # round half to even: 0.5->0, 1.5->2, 2.5->2, -0.5->-0, -1.5->-2; then +zp, clip
    expected = np.array([-3, -3, -1, -1, -3, -5, 127, -128], np.int8)
    q = t.quantize(x)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, expected)
    np.testing.assert_array_equal(
        t.dequantize(q), np.array([0, 0, 1, 1, 0, -1, 65, -62.5], np.float32))


def test_quantize_narrow_unsigned() -> None:
    t = Q.make(bits=8, signed=False, scale=0.1, zero_point=128, narrow_range=True)
    q = t.quantize(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(q, np.array([1, 128, 255], np.uint8))


def test_quantize_per_axis_by_hand() -> None:
    t = Q.make_per_axis(axis=1, scales=[1.0, 0.25], zero_points=[0, 4], bits=4)
    x = np.array([[1.0, 1.0], [-2.0, -2.0], [9.0, 0.125]], np.float32)
    # column 0: x / 1 + 0 -> [1, -2, 7 (clipped from 9)]
    # column 1: x / 0.25 + 4 -> [8 -> 7 (clipped), -4, 0.5 -> 0 + 4 = 4]
    expected = np.array([[1, 7], [-2, -4], [7, 4]], np.int8)
    np.testing.assert_array_equal(t.quantize(x), expected)
    np.testing.assert_array_equal(
        t.dequantize(expected), np.array([[1, 0.75], [-2, -2], [7, 0]], np.float32))


def test_numpy_helpers_check_the_axis() -> None:
    t = Q.make_per_axis(axis=0, scales=[1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="does not fit an array of shape"):
        t.quantize(np.zeros((1, 3), np.float32))  # would silently broadcast
    with pytest.raises(ValueError, match="does not fit"):
        t.dequantize(np.zeros((3,), np.int8)[None, None, :])


def test_fake_quant_and_dtypes() -> None:
    t = Q.make(scale=0.1, zero_point=0, expressed_type=f16)
    x = np.linspace(-1, 1, 11, dtype=np.float32)
    y = t.fake_quant(x)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, x, atol=1e-3)
    t32 = Q.make(scale=0.001, bits=32)
    assert t32.quantize(np.array([1e12], np.float32)).dtype == np.int32
    assert t32.quantize(np.array([1e12], np.float32))[0] == 2**31 - 1


# ------------------------------------------------------------ type verifier


@pytest.mark.parametrize("kwargs,message", [
    (dict(scale=0.0), "scale 0.0 must be positive and finite"),
    (dict(scale=-1.0), "scale -1.0 must be positive and finite"),
    (dict(scale=math.inf), "scale inf must be positive and finite"),
    (dict(scale=math.nan), "scale nan must be positive and finite"),
    (dict(scale=1.0, zero_point=128), r"zero point 128 is outside the storage range \[-128, 127\]"),
    (dict(scale=1.0, zero_point=-128, narrow_range=True), r"zero point -128 is outside"),
    (dict(scale=1.0, signed=False, zero_point=-1), r"storage range \[0, 255\]"),
    (dict(scale=1.0, storage_min=5, storage_max=4), r"storage range \[5, 4\] must be ordered"),
    (dict(scale=1.0, storage_min=-129), r"storage range \[-129, 127\] must be .* inside"),
    (dict(scale=1.0, bits=7), "must have 4, 8, 16 or 32 bits, got 7"),
    (dict(scale=1.0, expressed_type=f64), "expressed type must be f32, f16 or bf16, got f64"),
])
def test_type_verifier(kwargs: dict, message: str) -> None:
    with pytest.raises(VerifyException, match=message):
        Q.make(**kwargs)


def test_per_axis_type_verifier() -> None:
    with pytest.raises(VerifyException, match="scale 0.0 must be positive"):
        Q.make_per_axis(axis=0, scales=[1.0, 0.0])
    with pytest.raises(VerifyException, match="zero point 300 is outside"):
        Q.make_per_axis(axis=0, scales=[1.0, 1.0], zero_points=[0, 300])
    with pytest.raises(VerifyException, match="2 scales but 1 zero points"):
        Q.make_per_axis(axis=0, scales=[1.0, 1.0], zero_points=[0])
    with pytest.raises(VerifyException, match="needs at least one scale"):
        parse_type("!quant.uniform<i8:f32:0, {}>")
    with pytest.raises(VerifyException, match="axis must be non-negative"):
        Q.make_per_axis(axis=-1, scales=[1.0])


def test_parsed_type_error_points_at_the_source() -> None:
    with pytest.raises(VerifyException) as info:
        parse_type("!quant.uniform<u8:f32, 0.5:-1>")
    assert "zero point -1 is outside the storage range [0, 255]" in str(info.value)
    assert "^^^" in str(info.value)


# --------------------------------------------------------------------- ops


def test_ops_build_and_round_trip() -> None:
    qt = Q.make(scale=0.1, zero_point=-3)
    q16 = Q.make(scale=0.001, bits=16)
    g = Graph()
    x = g.input("x", (2, 4))
    s = g.input("s", ())
    z = g.input("z", ())
    o = g.add(ObserveOp.make(x, algorithm="minmax", id="conv1.input"))
    f = g.add(FakeQuantOp.make(o, qtype=qt))
    fl_op = FakeQuantOp.make(f, s, z, qtype=qt)
    fl = g.add(fl_op)
    q = g.add(QuantizeOp.make(fl, qtype=qt))
    assert q.type == tensor_type((2, 4), qt)
    r = g.add(RequantizeOp.make(q, qtype=q16))
    d = g.add(DequantizeOp.make(r))
    assert d.type == tensor_type((2, 4), np.float32)
    module = g.finish({"y": d})
    module.verify()
    assert fl_op.scale_operand is s and fl_op.zero_point_operand is z
    text = print_module(module)
    assert ('quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8 : i64, '
            'symmetric = false, axis = -1 : i64, narrow_range = false, id = "conv1.input"}'
            ) in text
    assert re.search(r"quant.fake_quant %\d+, %s, %z \{qtype = !quant.uniform<i8:f32, 0.1:-3>\}",
                     text), text
    again = parse_module(text)
    again.verify()
    assert print_module(again) == text


def test_fake_quant_without_learned_operands() -> None:
    g = Graph()
    op = FakeQuantOp.make(g.input("x", (4,)), qtype=Q.make(scale=0.5))
    op.verify()
    assert op.scale_operand is None and op.zero_point_operand is None


def test_observe_per_channel() -> None:
    g = Graph()
    op = ObserveOp.make(g.input("w", (8, 3)), kind="weight", algorithm="arq", axis=0,
                        symmetric=True, narrow_range=True, id="fc.weight")
    op.verify()
    assert op.per_channel and op.is_symmetric


def _verify_error(body: str, args: str = "%x: tensor<4xf32>") -> str:
    text = f"func.func @f({args}) {{\n  {body}\n  func.return\n}}\n"
    with pytest.raises(VerifyException) as info:
        parse_module(text).verify()
    return str(info.value)


OBSERVE = ('quant.observe %x {{kind = "{kind}", algorithm = "{alg}", bits = {bits}, '
           'symmetric = false, axis = {axis}, narrow_range = false, id = "{id}"}} '
           ': ({t}) -> ({t})')


@pytest.mark.parametrize("fields,message", [
    (dict(kind="bias"), "kind must be one of activation, weight, got 'bias'"),
    (dict(alg=""), "algorithm must name a calibration algorithm"),
    (dict(bits=17), "bits must be between 2 and 16, got 17"),
    (dict(axis=1), r"axis 1 is out of range for rank 1 \(-1 means per-tensor\)"),
    (dict(axis=-2), "axis -2 is out of range"),
    (dict(id=""), "id must name the quantizer"),
    (dict(t="tensor<4xi32>"), "the observed value must be a tensor of f32, f16 or bf16"),
])
def test_observe_verifier(fields: dict, message: str) -> None:
    values = dict(kind="activation", alg="minmax", bits=8, axis=-1, id="x", t="tensor<4xf32>")
    values.update(fields)
    err = _verify_error(OBSERVE.format(**values), f"%x: {values['t']}")
    assert "'quant.observe': " in err
    assert re.search(message, err), err


PER_AXIS_2 = "!quant.uniform<i8:f32:0, {0.5,0.5}>"


@pytest.mark.parametrize("args,body,message", [
    ("%x: tensor<4x3xf32>",
     f"%q = quant.quantize %x {{qtype = {PER_AXIS_2}}} : (tensor<4x3xf32>) -> tensor<4x3x{PER_AXIS_2}>",
     "'quant.quantize': the input has 2 per-axis scales but dimension 0 has size 4"),
    ("%x: tensor<4xf32>",
     "%q = quant.quantize %x {qtype = !quant.uniform<i8:f32:2, {0.5}>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32:2, {0.5}>>",
     "'quant.quantize': quantized axis 2 of the input is out of range for rank 1"),
    ("%x: tensor<4xf16>",
     "%q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf16>) -> tensor<4x!quant.uniform<i8:f32, 0.5>>",
     "'quant.quantize': the input element type f16 differs from the expressed type f32"),
    ("%x: tensor<4xf32>",
     "%q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<u8:f32, 0.5>>",
     "'quant.quantize': result type tensor<4x!quant.uniform<u8:f32, 0.5>> does not match"),
    ("%x: tensor<4xf32>",
     "%d = quant.dequantize %x : (tensor<4xf32>) -> tensor<4xf32>",
     "'quant.dequantize': the input must be a tensor of !quant.uniform"),
    ("%x: tensor<4x!quant.uniform<i8:f32, 0.5>>",
     "%d = quant.dequantize %x : (tensor<4x!quant.uniform<i8:f32, 0.5>>) -> tensor<4xf16>",
     "'quant.dequantize': result type tensor<4xf16> does not match the inferred type tensor<4xf32>"),
    ("%x: tensor<4x!quant.uniform<i8:f32, 0.5>>",
     "%r = quant.requantize %x {qtype = !quant.uniform<i8:bf16, 0.5>} : (tensor<4x!quant.uniform<i8:f32, 0.5>>) -> tensor<4x!quant.uniform<i8:bf16, 0.5>>",
     "'quant.requantize': expressed types differ: f32 of the input and bf16 of qtype"),
    ("%x: tensor<3x!quant.uniform<i8:f32, 0.5>>",
     f"%r = quant.requantize %x {{qtype = {PER_AXIS_2}}} : (tensor<3x!quant.uniform<i8:f32, 0.5>>) -> tensor<3x{PER_AXIS_2}>",
     "'quant.requantize': the result has 2 per-axis scales but dimension 0 has size 3"),
    ("%x: tensor<3xf32>",
     f"%f = quant.fake_quant %x {{qtype = {PER_AXIS_2}}} : (tensor<3xf32>) -> tensor<3xf32>",
     "'quant.fake_quant': the input has 2 per-axis scales but dimension 0 has size 3"),
    ("%x: tensor<4xf32>, %s: tensor<f32>",
     "%f = quant.fake_quant %x, %s {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>",
     "'quant.fake_quant': takes either no or both of the scale and zero_point operands"),
    ("%x: tensor<4xf32>, %s: tensor<f32>, %z: tensor<2xf32>",
     "%f = quant.fake_quant %x, %s, %z {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>, tensor<f32>, tensor<2xf32>) -> tensor<4xf32>",
     "'quant.fake_quant': the zero_point operand must be tensor<f32> or tensor<1xf32>, got tensor<2xf32>"),
    ("%x: tensor<2xf32>, %s: tensor<2xf16>, %z: tensor<2xf32>",
     f"%f = quant.fake_quant %x, %s, %z {{qtype = {PER_AXIS_2}}} : (tensor<2xf32>, tensor<2xf16>, tensor<2xf32>) -> tensor<2xf32>",
     "'quant.fake_quant': the scale operand must be tensor<2xf32>, got tensor<2xf16>"),
])
def test_op_verifiers(args: str, body: str, message: str) -> None:
    assert message in _verify_error(body, args)


def test_make_fails_fast() -> None:
    g = Graph()
    x = g.input("x", (3,))
    with pytest.raises(VerifyException, match="2 per-axis scales but dimension 0 has size 3"):
        QuantizeOp.make(x, qtype=Q.make_per_axis(axis=0, scales=[1.0, 1.0]))
    with pytest.raises(VerifyException, match="id must name the quantizer"):
        ObserveOp.make(x, algorithm="minmax")
    with pytest.raises(VerifyException, match="algorithm must name a calibration algorithm"):
        ObserveOp.make(x, id="x.observer")  # no default: the registry has the names
    with pytest.raises(VerifyException, match="must be a tensor of !quant.uniform"):
        DequantizeOp.make(x)


def test_dialect_is_registered() -> None:
    ctx = make_context()
    assert ctx.get_optional_type("quant.uniform") is Q
    assert ctx.get_optional_op("quant.fake_quant") is FakeQuantOp
    assert {op.name for op in quant.Quant.operations} == {
        "quant.observe", "quant.fake_quant", "quant.quantize", "quant.dequantize",
        "quant.requantize"}
