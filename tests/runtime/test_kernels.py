"""The compiled float32 kernels (qcc.runtime._conv, _pool, _norm, _kernels) against
onnxruntime running one-node ONNX models on random inputs."""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from qcc.runtime import _conv, _kernels, _norm, _pool  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def _model(op, inputs, attrs, opset):
    """One-node model; `inputs` maps names to arrays (None: an omitted optional input)."""
    names = [n if a is not None else "" for n, a in inputs.items()]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node(op, names, ["y"], **attrs)
    values = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in inputs.items() if a is not None]
    graph = helper.make_graph([node], op, values,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run_ort(op, inputs, opset=18, **attrs):
    """Run one ONNX node with onnxruntime."""
    model = _model(op, inputs, attrs, opset)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: a for n, a in inputs.items() if a is not None})[0]


def run_ref(op, inputs, opset=18, **attrs):
    """Run one ONNX node with onnx.reference."""
    ref = ReferenceEvaluator(_model(op, inputs, attrs, opset))
    return ref.run(None, {n: a for n, a in inputs.items() if a is not None})[0]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def close(got, want, rtol=RTOL, atol=ATOL):
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# (x shape, O, kernel, strides, pads, dilations, groups, bias)
CONV_CASES = [
    ((1, 3, 9, 9), 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    ((2, 6, 11, 9), 4, (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2, True),
    ((2, 8, 10, 10), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8, True),        # depthwise
    ((1, 8, 13, 12), 8, (3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 8, False),       # depthwise s2
    ((1, 4, 17, 19), 8, (5, 5), (2, 1), (2, 1, 3, 2), (2, 1), 4, True),        # multiplier 2
    ((1, 4, 20, 21), 4, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 4, True),        # dilated dw
    ((1, 5, 9, 10), 5, (1, 7), (1, 3), (0, 3, 0, 3), (1, 1), 5, True),         # dw 1x7
    ((2, 4, 16, 16), 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4, True),        # dw in place
    ((1, 3, 21, 45), 3, (3, 3), (2, 2), (1, 0, 0, 1), (1, 1), 3, True),        # dw wide s2
    ((1, 4, 15, 23), 4, (3, 3), (2, 2), (2, 2, 1, 2), (2, 2), 4, True),        # dw s2 dilated
    ((1, 3, 19, 20), 6, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 3, True),        # dw 5x5 s2
    ((1, 2, 7, 30), 2, (1, 3), (1, 3), (0, 1, 0, 1), (1, 1), 2, True),         # dw W stride 3
    ((2, 16, 7, 7), 12, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),        # pointwise
    ((1, 16, 8, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 4, False),        # grouped 1x1
    ((1, 8, 9, 9), 6, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, True),          # strided 1x1
    ((1, 8, 6, 6), 6, (1, 1), (1, 1), (1, 0, 0, 1), (1, 1), 1, True),          # padded 1x1
    ((1, 3, 32, 30), 8, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, True),        # stem
    ((1, 64, 12, 12), 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),      # tiled im2col
    ((1, 6, 5, 5), 4, (5, 5), (3, 3), (4, 0, 0, 4), (1, 1), 2, True),          # huge pads
    ((3, 4, 10), 6, (3,), (2,), (1, 2), (1,), 2, True),                        # 1-D
    ((1, 6, 12), 6, (5,), (1,), (2, 2), (2,), 6, True),                        # 1-D dw
    ((2, 4, 5, 6, 7), 6, (3, 3, 2), (1, 2, 1), (1, 0, 1, 1, 1, 0), (1, 1, 2), 2, True),  # 3-D
    ((1, 4, 6, 7, 8), 4, (3, 3, 3), (2, 1, 2), (1, 1, 1, 1, 1, 1), (1, 1, 1), 4, False),  # 3-D dw
    ((1, 2, 4, 4, 4), 3, (1, 1, 1), (1, 1, 1), (0, 0, 0, 0, 0, 0), (1, 1, 1), 1, True),  # 3-D 1x1
    ((1, 2, 6, 7, 9), 2, (4, 4, 5), (1, 1, 2), (1, 1, 2, 2, 2, 2), (1, 1, 1), 2, True),  # 80 taps
    ((2, 32, 4, 5, 6), 8, (3, 2, 3), (1, 1, 1), (1, 0, 1, 1, 1, 0), (1, 1, 2), 2, True),  # 3-D
    ((1, 32, 9, 8), 16, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),        # valid 3x3
]


@pytest.mark.parametrize("case", CONV_CASES, ids=range(len(CONV_CASES)))
def test_conv(case):
    shape, o, k, strides, pads, dil, groups, with_bias = case
    rng = np.random.default_rng(len(shape) * 100 + o)
    fan_in = shape[1] // groups * int(np.prod(k))
    x = rand(rng, *shape)
    w = rand(rng, o, shape[1] // groups, *k, scale=fan_in ** -0.5)
    b = rand(rng, o) if with_bias else None
    want = run_ort("Conv", {"x": x, "w": w, "b": b}, strides=strides, pads=pads,
                   dilations=dil, group=groups)
    got = _conv.conv(x, w, b, strides, pads, dil, groups)
    close(got, want)
    out = np.full_like(got, np.nan)          # the preallocated buffer is filled and returned
    assert _conv.conv(x, w, b, strides, pads, dil, groups, out=out) is out
    close(out, want)


GEMM_CASES = [c for c in CONV_CASES if c[0][1] // c[6] > 1 or set(c[2]) == {1}]


@contextmanager
def gemm_settings(variant=None, threads=None, blocking=None, rows_outer_k=None,
                  by_channels_max_n=None):
    """Force the conv GEMM's variant, thread count, cache blocking, tile order
    (rows_outer_k: the depth up to which tiles go row block by row block) and, on
    AVX-512, the columns up to which the channels go in the lanes (0: never) for a
    block."""
    old_n = (_conv._set_by_channels_max_n(by_channels_max_n)
             if by_channels_max_n is not None else None)
    old_r = _conv._set_rows_outer_k(rows_outer_k) if rows_outer_k is not None else None
    old_v = _conv._set_variant(variant) if variant else None
    old_t = _conv._set_threads(threads) if threads else None
    old_b = _conv._set_blocking(*blocking) if blocking else None
    old_p = _conv._set_parallel_min(0)   # threads even for tiny GEMMs
    try:
        yield
    finally:
        _conv._set_parallel_min(old_p)
        if old_b:
            _conv._set_blocking(*old_b)
        if old_t:
            _conv._set_threads(old_t)
        if old_v:
            _conv._set_variant(None)
        if old_r is not None:
            _conv._set_rows_outer_k(old_r)
        if old_n is not None:
            _conv._set_by_channels_max_n(old_n)


def _conv_inputs(case, seed=0):
    shape, o, k, strides, pads, dil, groups, with_bias = case
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape)
    w = rand(rng, o, shape[1] // groups, *k, scale=(shape[1] // groups * int(np.prod(k))) ** -0.5)
    b = rand(rng, o) if with_bias else None
    return x, w, b


def _run_conv(case, x, w, b):
    _, _, _, strides, pads, dil, groups, _ = case
    return _conv.conv(x, w, b, strides, pads, dil, groups)


@pytest.mark.parametrize("case", GEMM_CASES, ids=range(len(GEMM_CASES)))
def test_conv_gemm_variants_threads_and_blocking_are_bit_identical(case):
    # Every output element is bias + FMAs in ascending k whatever computes it.
    x, w, b = _conv_inputs(case)
    with gemm_settings(threads=1):
        want = _run_conv(case, x, w, b)
    for variant in _conv._variants():
        # AVX-512: channels in the lanes (the default on these small layers but the
        # shallow 1x1 ones) and not
        for max_n in ((1024, 0) if variant == "avx512" else (None,)):
            for threads, blocking in [(1, None), (2, None), (2, (8, 5, 40)), (3, (12, 64, 7))]:
                for rows_outer_k in (0, 1 << 30):   # panel by panel, row block by row block
                    with gemm_settings(variant, threads, blocking, rows_outer_k, max_n):
                        got = _run_conv(case, x, w, b)
                    assert np.array_equal(got, want), (variant, max_n, threads, blocking,
                                                       rows_outer_k)


@pytest.mark.parametrize("case", GEMM_CASES, ids=range(len(GEMM_CASES)))
def test_conv_with_packed_weights_gives_the_same_bits(case):
    # A plan keeps constant weights packed (_conv.WeightPack); one pack follows the
    # variant (its panel rows), the blocking (its depth chunks) and the weights as
    # they change, and each result is the unpacked conv's, bit for bit.
    _, _, _, strides, pads, dil, groups, _ = case
    x, w, b = _conv_inputs(case)
    w2 = _conv_inputs(case, seed=1)[1]
    pack = _conv.WeightPack()
    assert pack.nbytes == 0
    for variant in _conv._variants():
        for threads, blocking in [(1, None), (2, None), (2, (8, 5, 40)), (3, (12, 64, 7))]:
            for weights in (w, w2, w):
                with gemm_settings(variant, threads, blocking):
                    want = _run_conv(case, x, weights, b)
                    got = _conv.conv(x, weights, b, strides, pads, dil, groups, pack=pack)
                    again = _conv.conv(x, weights, b, strides, pads, dil, groups, pack=pack)
                assert np.array_equal(got, want), (variant, threads, blocking)
                assert np.array_equal(again, want), (variant, threads, blocking)
    assert pack.nbytes >= w.nbytes


def test_weight_pack_holds_nothing_for_depthwise_convs_and_the_vectors_layout():
    # the depthwise path reads the weights in place: nothing is packed for it; a
    # vector conv (1x1 on a 1x1 plane) packs them for the matrix-vector kernel: 4 rows
    # of 16-lane chunks side by side (runtime/_gemv_impl.h), zeros past the 4 rows
    rng = np.random.default_rng(0)
    pack = _conv.WeightPack()
    x, w = rand(rng, 1, 8, 6, 6), rand(rng, 8, 1, 3, 3)
    got = _conv.conv(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 8, pack=pack)
    assert np.array_equal(got, _conv.conv(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 8))
    assert pack.nbytes == 0
    x, w = rand(rng, 2, 16, 1, 1), rand(rng, 3, 16, 1, 1)
    got = _conv.conv(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, pack=pack)
    assert np.array_equal(got, _conv.conv(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1))
    assert pack.nbytes == 4 * 16 * 4


# (x shape, O, kernel, strides, pads, dilations, groups): every GEMM path and edge
CONSISTENCY_CASES = [
    ((1, 16, 7, 9), 13, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),       # 1x1, 63 positions
    ((2, 24, 11, 13), 22, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2),     # grouped 1x1
    ((1, 12, 9, 11), 9, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),       # strided 1x1
    ((1, 20, 15, 17), 19, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),     # 3x3, rows of 17
    ((1, 72, 13, 12), 18, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),     # depth 648: 3 chunks
    ((1, 24, 58, 40), 10, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),     # 2320 positions
    ((1, 16, 15, 21), 11, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),     # 3x3 stride 2
    ((1, 12, 16, 18), 12, (3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 3),     # grouped stride 2
    ((1, 3, 37, 41), 17, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),      # 7x7 stride 2 stem
    ((1, 8, 12, 14), 9, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),       # dilated
    ((1, 8, 13, 16), 7, (3, 2), (3, 1), (1, 0, 1, 1), (1, 1), 1),       # stride 3 rows
    ((1, 8, 13, 16), 7, (3, 2), (1, 3), (1, 0, 1, 1), (1, 1), 1),       # stride 3 columns
    ((2, 6, 5, 6, 7), 9, (3, 3, 2), (1, 2, 2), (1, 0, 1, 1, 1, 0), (1, 1, 1), 1),  # 3-D
    ((3, 10, 29), 11, (5,), (2,), (2, 1), (1,), 1),                     # 1-D
    ((1, 6, 14, 15), 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6),       # depthwise
    ((1, 6, 14, 15), 12, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 6),      # depthwise x2
]


def _interior(case):
    """Mask of the output positions whose window lies inside the unpadded input."""
    shape, _, k, strides, pads, dil, _ = case
    d = len(k)
    masks = []
    for i in range(d):
        n_out = (shape[2 + i] + pads[i] + pads[d + i] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1
        start = np.arange(n_out) * strides[i] - pads[i]
        masks.append((start >= 0) & (start + dil[i] * (k[i] - 1) < shape[2 + i]))
    return np.ix_(*masks)


@pytest.mark.parametrize("variant", ["default", "plain", "avx2", "avx512"])
@pytest.mark.parametrize("case", CONSISTENCY_CASES, ids=range(len(CONSISTENCY_CASES)))
def test_conv_rounds_alike_for_every_channel_and_position(case, variant):
    if variant != "default" and variant not in _conv._variants():
        pytest.skip(f"{variant} does not run on this CPU")
    shape, o, k, strides, pads, dil, groups = case
    og = o // groups
    rng = np.random.default_rng(o)
    # Large activations (as in light_squeezenet on ones) and weights that do not sum
    # exactly: any difference in the order or rounding of the sums would show.
    x = rand(rng, *shape, scale=1e6)
    w = rand(rng, o, shape[1] // groups, *k)
    b = rand(rng, o)
    copies = sorted({j for j in (1, og // 2, og - 1) if 0 < j < og})
    for gi in range(groups):   # channels of each group copy its first one
        for j in copies:
            w[gi * og + j], b[gi * og + j] = w[gi * og], b[gi * og]
    # every channel of a constant input plane sees the same values at interior positions
    xc = np.broadcast_to(rand(rng, 1, shape[1], *([1] * len(k)), scale=1e6), shape).copy()
    with gemm_settings(None if variant == "default" else variant, 2, (16, 64, 48)):
        y = _conv.conv(x, w, b, strides, pads, dil, groups)
        yc = _conv.conv(xc, w, b, strides, pads, dil, groups)
    close(y / 1e6, run_ort("Conv", {"x": x, "w": w, "b": b}, strides=strides, pads=pads,
                           dilations=dil, group=groups) / 1e6)
    for gi in range(groups):
        for j in copies:
            assert np.array_equal(y[:, gi * og + j], y[:, gi * og]), (gi, j)
    inner = yc[(slice(None), slice(None)) + _interior(case)]
    flat = inner.reshape(*inner.shape[:2], -1)
    assert flat.shape[2] and np.array_equal(flat, np.broadcast_to(flat[..., :1], flat.shape))


# (x shape, kernel, strides, pads, dilations): depthwise row lengths and paths
DEPTHWISE_CASES = [
    ((1, 5, 7, 7), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),            # rows of 7, 8 at once
    ((1, 3, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),          # rows of 14
    ((1, 3, 28, 28), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),          # rows of 28: 2 vectors
    ((1, 2, 9, 150), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),          # 150: chunks and a tail
    ((1, 4, 15, 47), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),          # stride 2 (split rows)
    ((1, 3, 16, 66), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),          # dilated
    ((1, 2, 8, 31), (3, 3), (1, 3), (1, 1, 1, 1), (1, 1)),           # stride 3 along W
    ((1, 2, 6, 7, 9), (4, 4, 5), (1, 1, 2), (1, 1, 2, 2, 2, 2), (1, 1, 1)),  # 80 taps
    ((3, 4, 40), (7,), (1,), (3, 3), (1,)),                          # 1-D, one row
]


def _per_channel_gemm(x, w, b, strides, pads, dil):
    """Each channel as a GEMM convolution of two input channels, the second all zeros:
    bias, the channel's taps in ascending order, then FMAs that add exact zeros."""
    ys = []
    for ci in range(x.shape[1]):
        xi = np.concatenate([x[:, ci:ci + 1], np.zeros_like(x[:, :1])], 1)
        wi = np.concatenate([w[ci:ci + 1], np.zeros_like(w[:1])], 1)
        ys.append(_conv.conv(xi, wi, b[ci:ci + 1], strides, pads, dil, 1))
    return np.concatenate(ys, 1)


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=range(len(DEPTHWISE_CASES)))
def test_depthwise_rounds_like_the_gemm_on_every_variant(case):
    # Depthwise is bias + FMAs in ascending tap order, like the GEMM: the same bits as
    # the GEMM computing each channel (a different algorithm: packed im2col tiles) on
    # every variant and thread count; and close to float64 sums.
    shape, k, strides, pads, dil = case
    rng = np.random.default_rng(len(k) * 10 + shape[-1])
    x = rand(rng, *shape)
    w = rand(rng, shape[1], 1, *k)
    b = rand(rng, shape[1])
    with gemm_settings("plain", 1):
        want = _per_channel_gemm(x, w, b, strides, pads, dil)
    ref = run_ref("Conv", {"x": x.astype(np.float64), "w": w.astype(np.float64),
                           "b": b.astype(np.float64)}, strides=strides, pads=pads,
                  dilations=dil, group=shape[1])
    mag = run_ref("Conv", {"x": np.abs(x).astype(np.float64), "w": np.abs(w).astype(np.float64),
                           "b": np.abs(b).astype(np.float64)}, strides=strides, pads=pads,
                  dilations=dil, group=shape[1])
    taps = int(np.prod(k)) + 1
    for variant in _conv._variants():
        for threads in (1, 2):
            with gemm_settings(variant, threads):
                got = _conv.conv(x, w, b, strides, pads, dil, shape[1])
            assert np.array_equal(got, want), (variant, threads)
    assert np.all(np.abs(want - ref) <= taps * 2.0 ** -24 * mag)


# (x shape, O, kernel, strides, pads, groups): batches of small outputs (one GEMM)
BATCH_CASES = [
    ((5, 16, 4, 4), 40, (3, 3), (1, 1), (1, 1, 1, 1), 1),     # 16 positions per image
    ((3, 12, 9, 7), 9, (3, 3), (2, 2), (1, 1, 1, 1), 3),      # stride 2, groups
    ((4, 24, 6, 6), 33, (1, 1), (1, 1), (0, 0, 0, 0), 1),     # 1x1: the input itself
    ((2, 8, 16, 16), 6, (1, 1), (1, 1), (0, 0, 0, 0), 2),     # 256 positions, groups
    ((3, 6, 20), 10, (5,), (2,), (2, 1), 1),                  # 1-D
]


@pytest.mark.parametrize("case", BATCH_CASES, ids=range(len(BATCH_CASES)))
def test_conv_batch_equals_images_one_at_a_time(case):
    # The batch runs as one GEMM over all images; each image alone is one GEMM per image.
    shape, o, k, strides, pads, groups = case
    rng = np.random.default_rng(o)
    x = rand(rng, *shape)
    w = rand(rng, o, shape[1] // groups, *k)
    b = rand(rng, o)
    dil = (1,) * len(k)
    for variant in _conv._variants():
        with gemm_settings(variant, 2, (16, 40, 24)):
            got = _conv.conv(x, w, b, strides, pads, dil, groups, activation="relu")
            want = np.concatenate([_conv.conv(x[i:i + 1], w, b, strides, pads, dil, groups,
                                              activation="relu") for i in range(shape[0])])
        assert np.array_equal(got, want), variant
    close(got, np.maximum(run_ort("Conv", {"x": x, "w": w, "b": b}, strides=strides, pads=pads,
                                  group=groups), 0))


# (x shape, O): one or two output positions (matrix-vector products), rows not a
# multiple of 16 or 8
NARROW_CASES = [((1, 960, 1, 1), 237), ((2, 72, 1, 1), 24), ((1, 19, 1, 2), 9)]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("case", NARROW_CASES, ids=range(len(NARROW_CASES)))
def test_conv_of_one_or_two_positions_rounds_like_the_tiles(case, with_bias):
    # The vector variants compute these as gathered matrix-vector products; the plain
    # variant uses its tiles: the same bits (bias, FMAs in ascending k) either way.
    shape, o = case
    rng = np.random.default_rng(o)
    x = rand(rng, *shape, scale=1e3)
    w = rand(rng, o, shape[1], 1, 1)
    b = rand(rng, o) if with_bias else None
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    with gemm_settings("plain", 1):
        want = _conv.conv(x, w, b, *args, activation=("clip", -5e3, 5e3))
    for variant in _conv._variants():
        with gemm_settings(variant, 2):
            got = _conv.conv(x, w, b, *args, activation=("clip", -5e3, 5e3))
        assert np.array_equal(got, want), variant
    close(want / 1e3, np.clip(run_ort("Conv", {"x": x, "w": w, "b": b}), -5e3, 5e3) / 1e3)


def test_conv_constant_weights_give_equal_channels():
    # light_squeezenet's failure: constant weights, an input of ones, huge activations.
    x = np.ones((1, 64, 27, 27), np.float32) * 3e7
    w = np.full((96, 64, 3, 3), 0.02, np.float32)
    b = np.full(96, 0.01, np.float32)
    for pads in [(1, 1, 1, 1), (0, 0, 0, 0)]:
        y = _conv.conv(x, w, b, (1, 1), pads, (1, 1), 1)
        assert np.array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    y = _conv.conv(x, w[:, :, :1, :1], b, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert np.array_equal(y, np.full_like(y, y.flat[0]))


def test_conv_from_several_threads_at_once():
    case = ((1, 32, 20, 20), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True)
    x, w, b = _conv_inputs(case)
    want = _run_conv(case, x, w, b)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: [_run_conv(case, x, w, b) for _ in range(5)], range(4)))
    assert all(np.array_equal(y, want) for ys in outs for y in ys)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_conv_threads_work_in_a_forked_child():
    case = ((1, 32, 20, 20), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True)
    x, w, b = _conv_inputs(case)
    with gemm_settings(threads=2):
        want = _run_conv(case, x, w, b)   # the pool's worker exists now
        pid = os.fork()
        if pid == 0:   # the child has no worker thread: it must start its own
            ok = False
            try:
                ok = np.array_equal(_run_conv(case, x, w, b), want)
            finally:
                os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_conv_gemm_variant_errors():
    with pytest.raises(ValueError):
        _conv._set_variant("sse9")
    assert _conv._variants()[0] == "plain"


def test_conv_rejects_a_bad_out_buffer():
    x = np.zeros((1, 2, 4, 4), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError):
        _conv.conv(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, out=np.zeros((1, 3, 4, 4), np.float32))


# (x shape, O, kernel, strides, pads, dilations, groups, output_padding, bias)
DECONV_CASES = [
    ((1, 4, 5, 5), 6, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0), True),
    ((2, 4, 5, 6), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (1, 1), True),
    ((1, 6, 4, 5), 4, (4, 3), (2, 3), (1, 0, 2, 1), (1, 2), 2, (1, 2), False),
    ((1, 8, 7, 7), 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8, (0, 1), True),   # depthwise
    ((1, 8, 6, 6), 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0), True),   # pointwise
    ((1, 16, 4, 4), 8, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1, (0, 0), True),  # upsampler
    ((2, 3, 7), 4, (5,), (3,), (2, 1), (1,), 1, (2,), True),                    # 1-D
    ((1, 4, 3, 4, 3), 2, (2, 3, 2), (2, 1, 2), (0, 1, 1, 1, 0, 0), (1, 1, 1), 2, (1, 0, 1), True),
]


@pytest.mark.parametrize("case", DECONV_CASES, ids=range(len(DECONV_CASES)))
def test_conv_transpose(case):
    shape, o, k, strides, pads, dil, groups, opad, with_bias = case
    rng = np.random.default_rng(7 + o)
    x = rand(rng, *shape)
    w = rand(rng, shape[1], o // groups, *k, scale=0.3)
    b = rand(rng, o) if with_bias else None
    want = run_ort("ConvTranspose", {"x": x, "w": w, "b": b}, strides=strides, pads=pads,
                   dilations=dil, group=groups, output_padding=opad)
    got = _conv.conv_transpose(x, w, b, strides, pads, dil, groups, opad)
    close(got, want)
    out = np.full_like(got, np.nan)
    assert _conv.conv_transpose(x, w, b, strides, pads, dil, groups, opad, out=out) is out
    close(out, want)


@pytest.mark.parametrize("case", [DECONV_CASES[i] for i in (1, 2, 5, 7)], ids=range(4))
def test_conv_transpose_in_small_tiles(case):
    old = _conv._set_tile_bytes(1024)
    try:
        test_conv_transpose(case)
    finally:
        _conv._set_tile_bytes(old)


# (x shape, kernel, strides, pads, dilations, ceil_mode)
POOL_CASES = [
    ((1, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    ((2, 4, 112 // 8, 112 // 8), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),  # ResNet stem
    ((1, 2, 9, 10), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),
    ((1, 2, 10, 10), (3, 2), (2, 3), (1, 0, 2, 1), (1, 1), True),
    ((1, 2, 7, 7), (2, 2), (2, 2), (1, 1, 1, 1), (1, 1), True),     # last window dropped
    ((1, 2, 11, 12), (3, 3), (2, 1), (2, 1, 1, 2), (2, 2), False),
    ((1, 2, 11, 12), (3, 2), (3, 2), (1, 1, 0, 1), (2, 3), True),
    ((1, 3, 6, 6), (6, 6), (1, 1), (0, 0, 0, 0), (1, 1), False),    # global window
    ((2, 2, 30, 33), (5, 7), (1, 2), (2, 3, 2, 3), (1, 1), False),  # long rows, many taps
    ((2, 3, 13), (4,), (3,), (1, 2), (1,), True),                   # 1-D
    ((1, 2, 5, 6, 7), (2, 3, 2), (2, 1, 2), (0, 1, 1, 1, 1, 0), (1, 1, 1), True),  # 3-D
]


@pytest.mark.parametrize("case", POOL_CASES, ids=range(len(POOL_CASES)))
def test_max_pool(case):
    shape, k, strides, pads, dil, ceil = case
    x = rand(np.random.default_rng(3), *shape)
    want = run_ort("MaxPool", {"x": x}, kernel_shape=k, strides=strides, pads=pads,
                   dilations=dil, ceil_mode=int(ceil))
    close(_pool.max_pool(x, k, strides, pads, dil, ceil), want)


@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("case", [c for c in POOL_CASES if set(c[4]) == {1}],
                         ids=lambda c: f"{c[0]}-{c[1]}-{c[5]}")
def test_avg_pool(case, include_pad):
    shape, k, strides, pads, _, ceil = case
    x = rand(np.random.default_rng(4), *shape)
    attrs = dict(kernel_shape=k, strides=strides, pads=pads, ceil_mode=int(ceil),
                 count_include_pad=int(include_pad))
    want = run_ort("AveragePool", {"x": x}, **attrs)
    close(_pool.avg_pool(x, k, strides, pads, ceil, include_pad), want)


@pytest.mark.parametrize("include_pad", [False, True])
def test_avg_pool_matches_onnx_reference_without_ceil(include_pad):
    x = rand(np.random.default_rng(5), 2, 3, 9, 8)
    attrs = dict(kernel_shape=(3, 3), strides=(2, 2), pads=(1, 0, 2, 1),
                 count_include_pad=int(include_pad))
    want = run_ref("AveragePool", {"x": x}, **attrs)
    close(_pool.avg_pool(x, (3, 3), (2, 2), (1, 0, 2, 1), False, include_pad), want)


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 4, 50, 60), (2, 2, 3, 4, 5), (3, 5, 9)])
def test_global_avg_pool(shape):
    x = rand(np.random.default_rng(6), *shape) + 3.0
    close(_pool.global_avg_pool(x), run_ort("GlobalAveragePool", {"x": x}))


@pytest.mark.parametrize("size,beta", [(5, 0.75), (3, 0.5), (4, 1.2), (1, 0.75)])
def test_lrn(size, beta):
    x = rand(np.random.default_rng(size), 2, 7, 5, 6)
    if size % 2:
        want = run_ort("LRN", {"x": x}, size=size, alpha=1e-2, beta=beta, bias=1.5)
    else:   # onnxruntime takes odd sizes only and onnx.reference's LRN loops over N, not C
        want = np.empty_like(x)
        for c in range(x.shape[1]):
            lo, hi = max(0, c - (size - 1) // 2), c + size // 2 + 1
            sq = np.sum(x[:, lo:hi].astype(np.float64) ** 2, axis=1)
            want[:, c] = x[:, c] / (1.5 + 1e-2 / size * sq) ** beta
    close(_norm.lrn(x, size, 1e-2, beta, 1.5), want)


@pytest.mark.parametrize("x_shape,with_bias", [((4, 20), True), ((3, 5, 16), False), ((1, 1), True),
                                               ((1, 64), True), ((1, 40), False)])
def test_dense(x_shape, with_bias):
    rng = np.random.default_rng(8)
    x = rand(rng, *x_shape)
    w = rand(rng, 12, x_shape[-1], scale=x_shape[-1] ** -0.5)
    b = rand(rng, 12) if with_bias else None
    want = x @ w.T + (b if with_bias else 0)
    if len(x_shape) == 2:   # Gemm(transB=1) as the oracle
        want = run_ort("Gemm", {"x": x, "w": w, "b": b}, transB=1)
    close(_kernels.dense(x, w, b), want)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((5, 7), (7, 3)), ((2, 5, 7), (2, 7, 3)), ((2, 1, 4, 6), (3, 6, 5)), ((4, 6), (3, 6, 5)),
    ((2, 3, 4, 8), (8, 6)), ((7,), (2, 7, 3)), ((2, 4, 7), (7,)), ((3, 1, 5), (1, 5, 0)),
])
def test_batched_matmul(a_shape, b_shape):
    rng = np.random.default_rng(9)
    a, b = rand(rng, *a_shape), rand(rng, *b_shape, scale=0.4)
    want = run_ort("MatMul", {"a": a, "b": b}) if 0 not in b_shape else np.matmul(a, b)
    close(_kernels.batched_matmul(a, b), want)


@pytest.mark.parametrize("shape,axis", [((4, 10), -1), ((3, 100), 1), ((2, 3, 5), 1),
                                        ((2, 40, 3), 1), ((3, 4, 2, 5), 0), ((2, 6), 0)])
def test_softmax(shape, axis):
    x = rand(np.random.default_rng(10), *shape, scale=3.0)
    close(_norm.softmax(x, axis), run_ort("Softmax", {"x": x}, axis=axis))


@pytest.mark.parametrize("shape,axis,with_bias", [((4, 16), -1, True), ((2, 3, 8), -2, False),
                                                  ((2, 5, 3, 4), 1, True)])
def test_layer_norm(shape, axis, with_bias):
    rng = np.random.default_rng(11)
    x = rand(rng, *shape) * 2 + 1
    norm = shape[axis:]
    scale, bias = rand(rng, *norm), (rand(rng, *norm) if with_bias else None)
    want = run_ort("LayerNormalization", {"x": x, "scale": scale, "bias": bias},
                   opset=17, axis=axis, epsilon=1e-5)
    close(_norm.layer_norm(x, scale, bias, axis, 1e-5), want)


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8, np.int32])
@pytest.mark.parametrize("shape", [7, (3, 5), (2, 1, 33), 0])
def test_aligned_arrays_start_on_a_cache_line(shape, dtype):
    # packed weights and scratch come from kernels.aligned: their 64-byte vector
    # loads must not straddle two cache lines (numpy's own arrays start 16 or 32
    # bytes past one)
    from qcc.runtime.kernels import aligned
    for _ in range(8):   # numpy's offsets vary from one allocation to the next
        a = aligned(shape, dtype=dtype)
        z = aligned(shape, zero=True, dtype=dtype)
        if a.size:   # (an empty array has no data to align)
            assert a.ctypes.data % 64 == 0 and z.ctypes.data % 64 == 0
        assert a.dtype == np.dtype(dtype) and a.shape == np.empty(shape).shape
        assert a.flags.c_contiguous and a.flags.writeable
        assert not z.any()


def test_int8_packed_weights_are_aligned_and_hold_the_weights():
    from qcc.runtime import int8
    if int8._C is None:
        pytest.skip("the compiled int8 kernels are not built")
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (70, 5, 3, 3), dtype=np.int8)
    wp, off = int8.pack(w, None, 3)
    assert wp.ctypes.data % 64 == 0
    flat = w.reshape(70, -1)
    assert np.array_equal(wp[:, :45], flat) and not wp[:, 45:].any()
    assert np.array_equal(off, -(3 + 128) * flat.astype(np.int64).sum(axis=1))
    lanes = int8.pack_lanes(w)
    assert lanes.ctypes.data % 64 == 0
    # lanes[cb, q, j, t] = w[64*cb + j, 4*c4 + t, tap], q over (tap, c4), c4 fastest
    # (2 words of four channels a tap)
    assert lanes[1, 4 * 2 + 1, 3, 0] == w[67, 4, 1, 1]
    assert lanes[0, 2 * 2 + 0, 10, 1] == w[10, 1, 0, 2]
    assert lanes[1, 0, 6, 0] == 0   # past O
    assert not lanes[:, 1::2, :, 1:].any()   # channels 5-7, past C
