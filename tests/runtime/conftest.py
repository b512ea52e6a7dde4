"""Fixtures shared by the runtime's tests."""

import pytest

from qcc.runtime import isa


def _forced(module, name, level, what):
    """Run the fixture's test with `module` (qcc.runtime.<name>) forced to `level`;
    skipped where the CPU lacks it or nothing is built."""
    if module is None:
        pytest.skip(f"qcc.runtime.{name} is not built")
    if level not in module._variants():
        pytest.skip(f"this CPU does not run the {level} {what}")
    old = module._set_variant(level)
    yield level
    module._set_variant(old)


@pytest.fixture(params=["plain", "avx2", "avx512"])
def variant(request):
    """Force the float conv GEMM variant (and the depthwise and epilogue paths that
    follow it) to one level; skipped where the CPU lacks it or nothing is built."""
    yield from _forced(isa._conv, "_conv", request.param, "GEMM")


@pytest.fixture(params=["plain", "avx2", "avx512"])
def build(request):
    """Force the build of erf, GELU, softmax and layer norm (qcc.runtime._norm) to
    one level; skipped where the CPU lacks it or nothing is built."""
    try:
        from qcc.runtime import _norm
    except ImportError:
        _norm = None
    yield from _forced(_norm, "_norm", request.param, "build")


@pytest.fixture(params=["avx2", "avx512"])
def blocked_build(request):
    """Force the blocked layout's kernels (qcc.runtime._blocked) to one build; skipped
    where the CPU lacks it or nothing is built."""
    from qcc.runtime import blocked

    yield from _forced(blocked.B, "_blocked", request.param, "blocked kernels")
