"""How many threads the runtime's compiled kernels use.

Each compiled module (`_conv`: the float conv GEMM and depthwise; `_blocked`: the
convs of the blocked layout; `_kernels`: dense /
matmul; `_eltwise`; `_norm`: erf, GELU, softmax, layer norm; `_int8`; `_half`;
`qcc.quant._stats`: calibration histograms)
keeps its own count, by default the CPUs this process may run on (at most 8).
`set_threads(n)` sets them all at once and returns the old count; the environment
variable `QCC_NUM_THREADS` does the same for the process (read when qcc.runtime is
imported; a value that is not a positive integer is ignored with a warning). The
results do not depend on the count: every kernel gives the same bits on any number
of threads. The modules share one pool of worker threads (runtime/_common.h); a
worker spins for QCC_SPIN_US microseconds (default 200) after a job before it
sleeps, so it is there for the next short kernel. While a plan runs, BLAS is held
at one thread (`blas_one_thread`); OpenMP pools are not touched (limit them with
threadpoolctl).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

ENV = "QCC_NUM_THREADS"
MAX_THREADS = 64
_SETTERS = (("qcc.runtime._conv", "_set_threads"), ("qcc.runtime._blocked", "_set_threads"),
            ("qcc.runtime._kernels", "_set_threads"),
            ("qcc.runtime._eltwise", "_set_threads"), ("qcc.runtime._norm", "_set_threads"),
            ("qcc.runtime._int8", "set_threads"),
            ("qcc.runtime._half", "set_threads"), ("qcc.quant._stats", "_set_threads"))


def _modules() -> list[tuple[ModuleType, str]]:
    found = []
    for name, setter in _SETTERS:
        try:
            found.append((importlib.import_module(name), setter))
        except ImportError:  # an uncompiled checkout: the numpy kernels only
            continue
    return found


def default_threads() -> int:
    """The count the compiled modules start with: the CPUs this process may run on,
    at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_current = default_threads()


def get_threads() -> int:
    """The thread count last set by `set_threads` (or QCC_NUM_THREADS, or the default)."""
    return _current


def set_threads(n: int) -> int:
    """Set the thread count of every compiled kernel module to `n` (1 to 64); returns
    the old count."""
    global _current
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_threads: the thread count must be an integer from 1 to "
                         f"{MAX_THREADS}, got {n!r}")
    old, _current = _current, n
    for module, setter in _modules():
        getattr(module, setter)(n)
    return old


def env_threads() -> int | None:
    """The count QCC_NUM_THREADS names, or None when it is unset; a value that is not
    an integer from 1 to 64 is ignored with a warning."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_THREADS:
        warnings.warn(f"{ENV}={value!r} is not an integer from 1 to {MAX_THREADS}; using "
                      f"{_current} threads (the CPUs this process may run on)", stacklevel=2)
        return None
    return n


def share_pool() -> None:
    """Run calibration's histograms (qcc.quant._stats, which may not import
    qcc.runtime) on the runtime's thread pool, so one set of workers serves both."""
    try:
        from qcc.quant import _stats
        from qcc.runtime import _kernels
    except ImportError:  # an uncompiled checkout
        return
    _stats._bind_pool(_kernels._pool_capsule)


def apply_env() -> None:
    """Set every module's count from QCC_NUM_THREADS when it is set."""
    n = env_threads()
    if n is not None:
        set_threads(n)


_BLAS: list[Any] = []
"""The BLAS libraries' threadpoolctl controllers, found at the first run (then a
None marks the search as done)."""


def _blas_libraries() -> list[Any]:
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.extend(c for c in ThreadpoolController().lib_controllers
                         if c.user_api == "blas")
        except ImportError:  # without threadpoolctl BLAS keeps its threads
            pass
        _BLAS.append(None)
    return [c for c in _BLAS if c is not None]


@contextmanager
def blas_one_thread() -> Iterator[None]:
    """BLAS on one thread while a plan runs: dense and matmul share their blocks of
    rows on the runtime's own thread pool (runtime/_kernels.pyx), like the conv,
    and OpenBLAS's idle threads would otherwise spin against those threads (and
    stall a call when one of them is kept off its core). A few microseconds: the
    libraries are found once, and only those not on one thread are set and restored."""
    changed = []
    for lib in _blas_libraries():
        n = lib.get_num_threads()
        if n != 1:
            lib.set_num_threads(1)
            changed.append((lib, n))
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)
