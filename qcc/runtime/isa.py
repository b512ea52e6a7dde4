"""Which instruction set the runtime's SIMD kernels use.

Two kernel families have variants that can be chosen at run time: the int8 GEMM
(`runtime/_int8.pyx`: AVX-512 VNNI, AVX2, baseline x86-64) and the float conv GEMM
(`runtime/_gemm_impl.h`: AVX-512, AVX2+FMA, plain C). Both give the same numbers on
every variant (exact int32 sums; float sums as FMAs in ascending k). A level names
the highest variant allowed:

| level | int8 GEMM | float conv GEMM |
|---|---|---|
| `avx512` | AVX-512 VNNI | AVX-512 (F, VL, BW, DQ) |
| `avx2` | AVX2 | AVX2 + FMA |
| `scalar` | baseline x86-64 | plain C |

The float16 kernels (`runtime/_half_impl.h`: the Ascend quant / dequant stages and
float16 casts, also inside the int8 layers' fused output stages) follow the same
level: AVX-512 (F, BW, VL, DQ), AVX2 + F16C, or scalar C, with numpy's bits on each;
so does the dense layer's matrix-vector kernel (`runtime/_gemv_impl.h`, for up to 4
rows: dots in 16 lanes added in a fixed order, the same bits on each) and the
blocked layout's convs (`runtime/_blocked_isa.h`: AVX-512 or AVX2 + FMA, none at
scalar, where plans stay NCHW).

Each family takes the best variant the CPU runs at or below the level: the
environment variable `QCC_ISA` sets it for the process (read when the kernels are
imported), `set_isa(level)` / `forced(level)` change it for tests. Unset, every
family takes the best variant the CPU runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

try:
    from qcc.runtime import _blocked, _conv, _half, _int8, _kernels
except ImportError:  # an uncompiled checkout: only the numpy kernels, no variants
    _blocked = _conv = _half = _int8 = _kernels = None  # type: ignore[assignment]

ENV = "QCC_ISA"
LEVELS = ("scalar", "avx2", "avx512")
"""Levels, lowest first."""

_INT8 = {"scalar": "baseline", "avx2": "avx2", "avx512": "avx512vnni"}
_GEMM = {"scalar": "plain", "avx2": "avx2", "avx512": "avx512"}


def env_level() -> str | None:
    """The level QCC_ISA names, or None when it is unset; an unknown value is
    ignored with a warning that lists the valid ones."""
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    if value not in LEVELS:
        warnings.warn(f"{ENV}={value!r} is not one of {', '.join(LEVELS)}; using the best "
                      "instruction set of this CPU", stacklevel=2)
        return None
    return value


def available() -> list[str]:
    """The levels at which this CPU runs a variant of its own (lowest first): `scalar`
    always, `avx2` and `avx512` where the CPU has them (avx512 for either family)."""
    if _int8 is None or _conv is None:
        return ["scalar"]
    int8, gemm = set(_int8.supported_isas()), set(_conv._variants())
    return [lv for lv in LEVELS if _INT8[lv] in int8 or _GEMM[lv] in gemm]


def current() -> dict[str, str]:
    """The level of the variant each family uses now: {"int8": ..., "conv": ...,
    "blocked": ...} (the blocked layout's convs: "scalar" when they are off)."""
    if _int8 is None or _conv is None:
        return {"int8": "scalar", "conv": "scalar", "blocked": "scalar"}
    return {"int8": _level(_INT8, _int8.isa()), "conv": _level(_GEMM, _conv._variant()),
            "blocked": _blocked._variant() or "scalar"}


def _level(table: dict[str, str], variant: str) -> str:
    return next(lv for lv, v in table.items() if v == variant)


def set_isa(level: str | None) -> dict[str, str]:
    """Use the best variant at or below `level` in every family (None: back to the
    default of QCC_ISA or the CPU); returns the previous `current()`."""
    old = current()
    if _int8 is None or _conv is None:
        if level not in (None, "scalar"):
            raise ValueError(f"instruction set level {level!r}: the compiled kernels are "
                             "not built (available: scalar)")
        return old
    if level is None:
        _int8.set_isa(None)
        _conv._set_variant(None)
        _half.set_isa(None)
        _kernels._set_gemv_isa(None)
        _blocked._set_variant("default")
        return old
    if level not in available():
        raise ValueError(f"instruction set level {level!r} does not run on this CPU "
                         f"(available: {', '.join(available())})")
    allowed = LEVELS[:LEVELS.index(level) + 1]
    int8, gemm = _int8.supported_isas(), _conv._variants()
    _int8.set_isa([_INT8[lv] for lv in allowed if _INT8[lv] in int8][-1])
    _conv._set_variant([_GEMM[lv] for lv in allowed if _GEMM[lv] in gemm][-1])
    # the float16 kernels (runtime/_half_impl.h) follow, with the level names themselves
    _half.set_isa([lv for lv in allowed if lv in _half.supported_isas()][-1])
    # and the dense layer's matrix-vector kernel (runtime/_gemv_impl.h)
    _kernels._set_gemv_isa(level)
    # and the blocked layout's convs (runtime/_blocked_isa.h; none at scalar)
    _set_blocked(level)
    return old


def _set_blocked(level: str) -> None:
    _blocked._set_variant(next((lv for lv in reversed(LEVELS[:LEVELS.index(level) + 1])
                                if lv in _blocked._variants()), None))


def _restore(old: dict[str, str]) -> None:
    if _int8 is None or _conv is None:
        return
    _int8.set_isa(_INT8[old["int8"]])
    _conv._set_variant(_GEMM[old["conv"]])
    _kernels._set_gemv_isa(old["conv"])
    _set_blocked(old["blocked"])


@contextmanager
def forced(level: str) -> Iterator[None]:
    """Run a block with `set_isa(level)`, then restore the variants in use before."""
    old_half = _half.isa() if _half is not None else None
    old = set_isa(level)
    try:
        yield
    finally:
        _restore(old)
        if _half is not None:
            _half.set_isa(old_half)
