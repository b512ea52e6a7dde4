"""The dense kernel with the outputs in the vector lanes (AVX-512 and AVX2:
runtime/_gemm_impl.h, qcc_dense_run, `_conv.Dense`): the bits of the plain C GEMM's fmaf sequence (a 1x1
convolution of the transposed input) plus the bias in float32, whatever the row and
output tails, depth chunks, threads and weight packing; close to float64; None where
it does not run (the plain C variant), and the plan's dense step then takes sgemm.
Every test runs at each variant the CPU has."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
_kernels = isa._kernels
pytestmark = pytest.mark.skipif(
    _conv is None or "avx2" not in _conv._variants(),
    reason="the dense kernel is the AVX-512 and AVX2 variants'")

# (rows M, depth K, outputs N): output tails (N not a multiple of 64, N < 16, N = 64k),
# row tails (M not a multiple of 6), depth over several chunks, one-deep, a ViT's shapes
CASES = [(5 + 1, 7, 3), (13, 300, 70), (64, 1, 129), (197, 192, 576), (197, 768, 192),
         (31, 129, 64), (7, 1000, 17)]


def plain_dense(x, w):
    """x @ w.T by the plain C GEMM (fmaf for k ascending from 0): a 1x1 conv."""
    old = _conv._set_variant("plain")
    try:
        y = _conv.conv(np.ascontiguousarray(x.T)[None, :, :, None], w[:, :, None, None], None,
                       (1, 1), (0, 0, 0, 0), (1, 1), 1)
    finally:
        _conv._set_variant(old)
    return y[0, :, :, 0].T


@pytest.fixture(params=[(v, t) for v in ("avx2", "avx512") for t in (1, 2)],
                ids=lambda p: f"{p[0]}-{p[1]}thread")
def threads(request):
    variant, n = request.param
    if variant not in _conv._variants():
        pytest.skip(f"this CPU does not run the {variant} GEMM")
    old_t = _conv._set_threads(n)
    old_p = _conv._set_parallel_min(0.0)
    old_v = _conv._set_variant(variant)
    yield n
    _conv._set_variant(old_v)
    _conv._set_parallel_min(old_p)
    _conv._set_threads(old_t)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [0, 64], ids=["whole-depth", "chunks64"])
def test_dense_gives_the_bits_of_the_fma_sequence_plus_bias(case, bias, chunk, threads):
    m, k, n = case
    old_c = _conv._set_t_chunk(chunk)
    try:
        _check_dense(m, k, n, bias)
    finally:
        _conv._set_t_chunk(old_c)


def _check_dense(m, k, n, bias):
    rng = np.random.default_rng(m * 7 + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    got = _conv.Dense(min_rows=0)(x, w, b)
    want = plain_dense(x, w)
    if bias:
        want = want + b
    assert got is not None and got.dtype == np.float32
    assert np.array_equal(got, want)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_dense_packs_constant_weights_once_and_repacks_other_ones(threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 40)).astype(np.float32)
    w1 = rng.standard_normal((30, 40)).astype(np.float32)
    w2 = rng.standard_normal((30, 40)).astype(np.float32)
    d = _conv.Dense()
    assert d.nbytes == 0
    y1 = d(x, w1, None)
    packed = d.nbytes
    assert packed >= 64 * 40 * 4   # one panel of 64 outputs
    out = np.full((20, 30), np.nan, np.float32)
    assert d(x, w1, None, out=out) is out and np.array_equal(out, y1)
    y2 = d(x, w2, None)   # another array: packed again
    assert np.array_equal(y2, plain_dense(x, w2)) and not np.array_equal(y1, y2)


def test_dense_declines_what_it_does_not_run(threads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    # <= 4 rows: the matrix-vector kernel on packed weights, its unpacked bits
    np.testing.assert_array_equal(_conv.Dense()(x, w, None).view(np.uint32),
                                  _kernels.dense(x, w, None).view(np.uint32))
    assert _conv.Dense(min_rows=0)(x.astype(np.float64), w, None) is None
    assert _conv.Dense(min_rows=0)(x, w[:, :7].copy(), None) is None   # shapes differ
    _conv._set_variant("plain")
    assert _conv.Dense(min_rows=0)(x, w, None) is None


def test_plan_dense_step_with_its_bias_add_gives_the_kernels_bits(threads):
    """A plan's dense + Add of a constant (the dense-bias pattern) and its unfused run
    both give the fma sequence plus the bias, bit for bit: the step takes the kernel."""
    from qcc import ir
    from qcc.dialects import qnn
    from qcc.runtime import compile_module, execute

    rng = np.random.default_rng(5)
    g = ir.Graph()
    x = g.input("x", (2, 50, 96))
    w = rng.standard_normal((100, 96)).astype(np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    h = g.add(qnn.DenseOp.make(x, g.const(w)))
    module = g.finish({"y": g.add(qnn.AddOp.make(h, g.const(b)))})
    xv = rng.standard_normal((2, 50, 96)).astype(np.float32)
    want = (plain_dense(xv.reshape(-1, 96), w) + b).reshape(2, 50, 100)
    for fuse in (True, False):
        got = execute(compile_module(module, fuse=fuse), {"x": xv})[0]["y"]
        assert np.array_equal(got, want)


@pytest.mark.parametrize("shapes", [((1, 3, 197, 64), (1, 3, 64, 197)),   # attention scores
                                    ((1, 3, 197, 197), (1, 3, 197, 64)),  # their values
                                    ((2, 50, 96), (96, 33)),              # a shared 2-D b
                                    ((7, 5), (5, 70)),
                                    # 6 entries in one parallel region, 40 outputs: a
                                    # last block of 3 vectors
                                    ((2, 3, 13, 20), (2, 3, 20, 40))],
                         ids=["scores", "values", "shared", "2d", "batch-tail"])
def test_matmul_gives_the_fma_sequence_of_each_batch_entry(shapes, threads):
    rng = np.random.default_rng(len(shapes[0]) + shapes[1][-1])
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    got = _conv.matmul(a, b)
    k, n = b.shape[-2:]
    if b.ndim == 2:
        want = plain_dense(a.reshape(-1, k), np.ascontiguousarray(b.T)).reshape(got.shape)
    else:
        a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, k, n)
        want = np.stack([plain_dense(a3[e], np.ascontiguousarray(b3[e].T))
                         for e in range(len(a3))]).reshape(got.shape)
    assert np.array_equal(got, want)
    np.testing.assert_allclose(got, np.matmul(a.astype(np.float64), b), rtol=1e-4, atol=1e-3)


def test_matmul_declines_broadcasts_vectors_and_few_rows_and_the_plan_takes_sgemm(threads):
    from qcc import ir
    from qcc.dialects import qnn
    from qcc.runtime import compile_module, execute

    rng = np.random.default_rng(8)
    cases = [((3, 6, 5), (1, 5, 7)), ((6, 5), (5,)), ((2, 4, 5), (2, 5, 7))]
    for sa, sb in cases:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        assert _conv.matmul(a, b) is None
        g = ir.Graph()
        x = g.input("x", sa)
        module = g.finish({"y": g.add(qnn.MatmulOp.make(x, g.const(b)))})
        got = execute(compile_module(module), {"x": a})[0]["y"]
        np.testing.assert_allclose(got, np.matmul(a.astype(np.float64), b), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_dense_epilogue_gives_the_bits_of_the_steps_after_it(case, threads):
    """The dense's epilogue (a transformer's residual add, GELU, and the fake-quant
    after either, qcc.runtime.patterns rule 7), run on each block of outputs as the
    kernel finishes it: the bits of the dense, then the add (numpy), GELU and
    fake-quant kernels one after the other; at most min_rows rows: None (the
    caller runs the steps)."""
    from qcc.runtime import _eltwise, _norm

    m, k, n = case
    rng = np.random.default_rng(m * k + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    fq = (0.05, 3.0, -128.0, 127.0)
    dense = _conv.Dense()
    y = dense(x, w, b)
    if m <= dense.min_rows:
        assert dense(x, w, b, residual=r) is None
        return
    s, z = np.float32([fq[0]]), np.float32([fq[1]])
    for got, want in [
            (dense(x, w, b, residual=r), y + r),
            (dense(x, w, b, gelu=True), _norm.gelu(y)),
            (dense(x, w, b, gelu=True, fake_quant=fq), _norm.gelu(y, fake_quant=fq)),
            (dense(x, w, b, residual=r, fake_quant=fq),
             _eltwise.fake_quant(y + r, s, z, fq[2], fq[3])),
            (dense(x, w, None, out=np.empty((m, n), np.float32), residual=r),
             dense(x, w, None) + r)]:
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    assert not np.array_equal(_norm.gelu(y), y)   # the epilogue changed the values
