"""Build of the Cython reference runtime (runtime/*.pyx -> qcc.runtime._*)."""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = ["-O3", "-fno-strict-aliasing"]
if os.environ.get("QCC_NATIVE", "0") == "1":
    COMPILE_ARGS.append("-march=native")

EXTENSIONS = [
    Extension(
        "qcc.runtime._kernels",
        ["runtime/_kernels.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "qcc.runtime._conv",
        ["runtime/_conv.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-fno-trapping-math"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # the blocked layout's conv: explicit FMAs, epilogues without contraction
        "qcc.runtime._blocked",
        ["runtime/_blocked.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "qcc.runtime._pool",
        ["runtime/_pool.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # no FMA contraction (every ISA build of a loop gives the same bits);
        # no trapping math (selects if-convert, so that AVX2 and SSE loops vectorize)
        "qcc.runtime._norm",
        ["runtime/_norm.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off", "-fno-trapping-math"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # float16 rounding in float32 registers: no FMA contraction (see the file)
        "qcc.runtime._half",
        ["runtime/_half.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # epilogue formulas in float32 as numpy computes them: no FMA contraction
        "qcc.runtime._eltwise",
        ["runtime/_eltwise.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off", "-fno-trapping-math"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # calibration statistics (qcc.quant sits below qcc.runtime): no FMA
        "qcc.quant._stats",
        ["runtime/_stats.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # its fused epilogues round to float16 as _half does: no FMA either
        "qcc.runtime._int8",
        ["runtime/_int8.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS + ["-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
