"""Fixtures shared by the runtime's tests."""

import pytest

from qcc.runtime import isa


@pytest.fixture(params=["plain", "avx2", "avx512"])
def variant(request):
    """Force the float conv GEMM variant (and the depthwise and epilogue paths that
    follow it) to one level; skipped where the CPU lacks it or nothing is built."""
    conv = isa._conv
    if conv is None:
        pytest.skip("qcc.runtime._conv is not built")
    if request.param not in conv._variants():
        pytest.skip(f"this CPU does not run the {request.param} GEMM")
    old = conv._set_variant(request.param)
    yield request.param
    conv._set_variant(old)


@pytest.fixture(params=["plain", "avx2", "avx512"])
def build(request):
    """Force the build of erf, GELU, softmax and layer norm (qcc.runtime._norm) to
    one level; skipped where the CPU lacks it or nothing is built."""
    try:
        from qcc.runtime import _norm
    except ImportError:
        pytest.skip("qcc.runtime._norm is not built")
    if request.param not in _norm._variants():
        pytest.skip(f"this CPU does not run the {request.param} build")
    old = _norm._set_variant(request.param)
    yield request.param
    _norm._set_variant(old)
