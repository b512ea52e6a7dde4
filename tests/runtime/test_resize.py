"""qnn.resize (ONNX Resize opsets 10-19 and Upsample) end to end: one-node ONNX models
imported with `load_onnx` and run by `qcc.runtime.run`, against onnxruntime and
onnx.reference on a grid of modes, coordinate modes, scales and sizes."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from qcc import ir  # noqa: E402
from qcc.dialects import qnn  # noqa: E402
from qcc.frontends.errors import FrontendError  # noqa: E402
from qcc.frontends.onnx import load_onnx  # noqa: E402
from qcc.runtime import run  # noqa: E402
from qcc.runtime.kernels import reference_resize  # noqa: E402

RTOL, ATOL = 1e-5, 1e-5
COORD_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_crop_and_resize"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _model(x, *, op="Resize", opset=19, roi=None, scales=None, sizes=None, **attrs):
    """A one-node model; roi/scales/sizes are initializers (absent when None)."""
    inits, names = [], ["x"]
    if op == "Upsample" and opset < 9:
        attrs["scales"], scales = [float(s) for s in scales], None
        optional = []
    elif op == "Resize" and opset >= 11:
        optional = [("roi", roi, np.float32), ("scales", scales, np.float32),
                    ("sizes", sizes, np.int64)]
    else:  # Resize-10 and Upsample-9 take scales only
        optional = [("scales", scales, np.float32)]
    for name, value, dtype in optional:
        if value is None:
            names.append("")
            continue
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        names.append(name)
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], **attrs)
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", elem, x.shape)],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8 if opset < 19 else 9)


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _ref(model, x):
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _qcc(model, x):
    return run(load_onnx(model), {"x": x})["y"]


def _close(got, want, rtol=RTOL, atol=ATOL):
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _input(*shape, seed=0, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    return x.astype(dtype)


TARGETS = [("sizes", (8, 11)), ("sizes", (3, 4)), ("sizes", (1, 5)),
           ("scales", (2.0, 2.0)), ("scales", (0.6, 1.5)), ("scales", (1.7, 0.45))]


@pytest.mark.parametrize("kind,target", TARGETS)
@pytest.mark.parametrize("coord", COORD_MODES)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_modes_against_onnxruntime(mode, coord, kind, target):
    x = _input(2, 3, 5, 7, seed=1)
    kw = {kind: (*(x.shape[:2] if kind == "sizes" else (1, 1)), *target)}
    if coord == "tf_crop_and_resize":
        kw["roi"] = (0, 0, 0.1, 0.3, 1, 1, 0.8, 0.9)
    model = _model(x, mode=mode, coordinate_transformation_mode=coord, **kw)
    # With scales whose in * scale is fractional, align_corners and tf_crop_and_resize
    # divide by that real output length (ONNX reference and its node tests);
    # onnxruntime divides by the floored one.
    fractional = kind == "scales" and any(
        n * s != int(n * s) for n, s in zip(x.shape[2:], target, strict=True))
    corners = coord in ("align_corners", "tf_crop_and_resize")
    _close(_qcc(model, x), _ref(model, x) if corners and fractional else _ort(model, x))


@pytest.mark.parametrize("nearest", NEAREST_MODES)
@pytest.mark.parametrize("coord", COORD_MODES[:5])
@pytest.mark.parametrize("kind,target", [("sizes", (9, 5)), ("sizes", (4, 3)),
                                         ("scales", (1.5, 0.7))])
def test_nearest_modes(nearest, coord, kind, target):
    x = _input(1, 2, 6, 7, seed=2)
    model = _model(x, mode="nearest", coordinate_transformation_mode=coord,
                   nearest_mode=nearest, **{kind: (1, 2 if kind == "sizes" else 1, *target)})
    corners = coord == "align_corners" and kind == "scales"  # see test_modes_against_onnxruntime
    _close(_qcc(model, x), _ref(model, x) if corners else _ort(model, x))


@pytest.mark.parametrize("a,exclude", [(-0.5, 1), (-0.75, 1), (-0.5, 0)])
@pytest.mark.parametrize("scales", [(1.6, 2.3), (0.7, 0.55)])
def test_cubic_coeff_and_exclude_outside(a, exclude, scales):
    x = _input(1, 2, 6, 8, seed=3)
    model = _model(x, mode="cubic", cubic_coeff_a=a, exclude_outside=exclude,
                   scales=(1, 1, *scales))
    _close(_qcc(model, x), _ort(model, x))


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("kind,target", [("scales", (0.6, 0.35)), ("scales", (0.25, 1.5)),
                                         ("sizes", (3, 5)), ("sizes", (2, 1))])
def test_antialias(mode, kind, target):
    x = _input(1, 2, 9, 12, seed=4)
    model = _model(x, mode=mode, antialias=1,
                   **{kind: (1, 2 if kind == "sizes" else 1, *target)})
    got = _qcc(model, x)
    _close(got, _ref(model, x))
    _close(got, _ort(model, x), rtol=1e-4, atol=1e-4)


def test_antialias_is_ignored_by_nearest():
    x = _input(1, 1, 6, 6, seed=5)
    model = _model(x, mode="nearest", antialias=1, scales=(1, 1, 0.5, 0.5))
    (op,) = [o for o in load_onnx(model).walk() if isinstance(o, qnn.ResizeOp)]
    assert op.antialias is None
    plain = _model(x, mode="nearest", scales=(1, 1, 0.5, 0.5))
    _close(_qcc(model, x), _ort(plain, x))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("value", [0.0, 10.0])
def test_tf_crop_and_resize_extrapolation(mode, value):
    x = _input(1, 2, 5, 6, seed=6)
    model = _model(x, mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
                   extrapolation_value=value, roi=(0, 0, -0.3, 0.2, 1, 1, 0.9, 1.4),
                   sizes=(1, 2, 7, 4))
    got = _qcc(model, x)
    _close(got, _ref(model, x))
    _close(got, _ort(model, x))


@pytest.mark.parametrize("axes", [(2, 3), (3, 2), (-1,), (1,)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_axes(axes, mode):
    x = _input(1, 3, 4, 5, seed=7)
    factors = {1: 2.0, 2: 1.5, 3: 0.6, -1: 0.6}
    model = _model(x, opset=18, mode=mode, axes=list(axes),
                   scales=[factors[a] for a in axes])
    _close(_qcc(model, x), _ort(model, x))
    sizes = {1: 5, 2: 7, 3: 2, -1: 2}
    model = _model(x, opset=18, mode=mode, axes=list(axes), sizes=[sizes[a] for a in axes])
    _close(_qcc(model, x), _ort(model, x))


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
@pytest.mark.parametrize("sizes", [(7, 8), (3, 2), (5, 12)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_keep_aspect_ratio_policy(policy, sizes, mode):
    x = _input(1, 2, 4, 6, seed=8)
    model = _model(x, opset=18, mode=mode, axes=[2, 3], keep_aspect_ratio_policy=policy,
                   sizes=sizes)
    got = _qcc(model, x)
    _close(got, _ref(model, x))
    _close(got, _ort(model, x))


@pytest.mark.parametrize("shape,scales", [((6,), (2.5,)), ((3, 8), (1.0, 0.75)),
                                          ((2, 3, 4), (1.0, 2.0, 1.5)),
                                          ((1, 2, 3, 4, 5), (1, 1, 2.0, 0.5, 1.3))])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_any_rank(shape, scales, mode):
    x = _input(*shape, seed=9)
    model = _model(x, mode=mode, scales=scales)
    # onnxruntime's linear needs rank >= 2 and its cubic rank 2 or 4
    ort_runs = mode == "nearest" or (mode == "linear" and len(shape) > 1) or len(shape) == 2
    _close(_qcc(model, x), _ort(model, x) if ort_runs else _ref(model, x))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.int64])
@pytest.mark.parametrize("coord,nearest", [("half_pixel", "round_prefer_floor"),
                                           ("asymmetric", "floor"),
                                           ("align_corners", "ceil")])
def test_nearest_integer_dtypes(dtype, coord, nearest):
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    x = np.random.default_rng(10).integers(lo, hi, (1, 2, 5, 6)).astype(dtype)
    model = _model(x, mode="nearest", coordinate_transformation_mode=coord,
                   nearest_mode=nearest, sizes=(1, 2, 9, 4))
    got = _qcc(model, x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, _ref(model, x))
    if dtype != np.int64:  # onnxruntime's Resize has no int64 kernel
        np.testing.assert_array_equal(got, _ort(model, x))


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_integer_interpolation_rounds_and_saturates(mode):
    x = np.random.default_rng(11).integers(0, 256, (1, 1, 4, 5)).astype(np.uint8)
    x[0, 0, 1:3, 1:3] = [[0, 255], [255, 0]]  # cubic overshoots below 0 and above 255
    got = reference_resize(x, (1, 1, 7, 9), mode, "half_pixel")
    want = _ref(_model(x, mode=mode, sizes=(1, 1, 7, 9)), x)
    assert got.dtype == np.uint8
    # exact halves are common here, which float rounding may send either way
    np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)
    exact = reference_resize(x.astype(np.float64), (1, 1, 7, 9), mode, "half_pixel")
    np.testing.assert_array_equal(got == 0, np.round(exact) <= 0)
    np.testing.assert_array_equal(got == 255, np.round(exact) >= 255)


UP, DOWN = [(1, 1, 2, 2), (1, 1, 3, 1.5)], [(1, 1, 0.5, 0.5), (1, 1, 0.6, 0.34)]


@pytest.mark.parametrize("op,opset,scales", [("Resize", 10, s) for s in UP + DOWN]
                         + [("Upsample", v, s) for v in (7, 9) for s in UP])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize10_and_upsample(op, opset, scales, mode):
    """Asymmetric coordinates; nearest floors when upsampling, ceils when downsampling."""
    x = _input(1, 2, 5, 6, seed=12)
    model = _model(x, op=op, opset=opset, mode=mode, scales=scales)
    _close(_qcc(model, x), _ort(model, x))


def test_resize10_nearest_cannot_mix_up_and_down():
    x = _input(1, 2, 5, 6, seed=12)
    with pytest.raises(FrontendError, match="up- and downsample"):
        load_onnx(_model(x, opset=10, mode="nearest", scales=(1, 1, 2.0, 0.5)))


@pytest.mark.parametrize("attrs,message", [
    ({"mode": "bicubic"}, "mode 'bicubic' is not supported"),
    ({"coordinate_transformation_mode": "tf_half_pixel_for_nn"}, "tf_half_pixel_for_nn"),
    ({"keep_aspect_ratio_policy": "fit"}, "keep_aspect_ratio_policy 'fit'")])
def test_frontend_errors(attrs, message):
    x = _input(1, 1, 4, 4)
    with pytest.raises(FrontendError, match=message):
        load_onnx(_model(x, sizes=(1, 1, 8, 8), **attrs))


def test_scale_sizes_are_floored_in_float32():
    """floor(10 * 0.7f) is 7 in float32 arithmetic (onnxruntime) and 6 in float64."""
    x = _input(1, 1, 10, 10, seed=13)
    model = _model(x, mode="linear", scales=(1, 1, 0.7, 0.7))
    got = _qcc(model, x)
    assert got.shape == (1, 1, 7, 7)
    _close(got, _ort(model, x))


def test_float32_stays_float32_and_scales_are_kept():
    x = _input(1, 2, 4, 5, seed=14)
    module = load_onnx(_model(x, mode="linear", scales=(1, 1, 0.6, 2.0)))
    (op,) = [o for o in module.walk() if isinstance(o, qnn.ResizeOp)]
    assert tuple(op.sizes.get_values()) == (1, 2, 2, 10)
    assert qnn.ResizeOp.floats(op.scales) == (1.0, 1.0, float(np.float32(0.6)), 2.0)
    assert run(module, {"x": x})["y"].dtype == np.float32
    # scales implied by the sizes are left out
    module = load_onnx(_model(x, mode="linear", scales=(1, 1, 2.0, 0.4)))
    (op,) = [o for o in module.walk() if isinstance(o, qnn.ResizeOp)]
    assert op.scales is None


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_kernel_on_float64(mode):
    """float64 in, float64 out; the coordinates are float32 (as onnxruntime's), so
    agreement with the all-float64 ONNX reference is to about 1e-6 (cubic 1e-5)."""
    x = np.random.default_rng(15).standard_normal((2, 3, 7)).astype(np.float64)
    want = _ref(_model(x, mode=mode, scales=(1.0, 1.5, 0.6)), x)
    got = reference_resize(x, want.shape, mode, "half_pixel",
                           scales=(1.0, 1.5, float(np.float32(0.6))))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_printed_ir_round_trips_and_runs_the_same():
    x = _input(1, 2, 5, 6, seed=16)
    model = _model(x, mode="cubic", coordinate_transformation_mode="tf_crop_and_resize",
                   roi=(0, 0, 0.1, -0.2, 1, 1, 0.9, 1.1), sizes=(1, 2, 7, 4),
                   extrapolation_value=2.5, cubic_coeff_a=-0.5, exclude_outside=1)
    module = load_onnx(model)
    text = ir.print_module(module)
    again = ir.parse_module(text)
    assert ir.print_module(again) == text
    for key in ("roi = array<f64:", "extrapolation_value", "cubic_coeff_a", "exclude_outside"):
        assert key in text
    _close(run(again, {"x": x})["y"], run(module, {"x": x})["y"])
    _close(run(again, {"x": x})["y"], _ref(model, x))
