"""QCC_ISA and qcc.runtime.isa: which SIMD variant the int8 and float conv GEMMs use.
Whole models give the same numbers on every level the CPU runs: the integers of the
numpy reference kernels (a different algorithm: int64 einsum sums), and one float
output bit for bit across levels."""

import os
import subprocess
import sys

import numpy as np
import pytest

import qcc
from qcc import passes
from qcc.examples import digits
from qcc.runtime import blocked, int8, isa, run

pytestmark = pytest.mark.skipif(int8._C is None, reason="qcc.runtime._int8 is not built")


def _current_under(env_value: str) -> tuple[dict[str, str], str]:
    env = dict(os.environ, QCC_ISA=env_value)
    code = "from qcc.runtime import isa; print(isa.current())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return eval(proc.stdout), proc.stderr


@pytest.mark.parametrize("level", isa.LEVELS)
def test_env_var_caps_every_family(level):
    if level not in isa.available():
        pytest.skip(f"this CPU has no {level} kernels")
    got, _ = _current_under(level)
    # each family takes its best variant at or below the level
    for family, table in (("int8", isa._INT8), ("conv", isa._GEMM)):
        runs = [lv for lv in isa.LEVELS[:isa.LEVELS.index(level) + 1]
                if table[lv] in (int8._C.supported_isas() if family == "int8"
                                 else isa._conv._variants())]
        assert got[family] == runs[-1]
    # the blocked layout's convs: AVX-512 or AVX2, none (scalar) below
    blocked = [lv for lv in isa.LEVELS[1:isa.LEVELS.index(level) + 1]
               if lv in isa._blocked._variants()]
    assert got["blocked"] == (blocked[-1] if blocked else "scalar")


def test_unknown_env_value_warns_and_uses_the_best():
    got, err = _current_under("sse9")
    assert "QCC_ISA='sse9' is not one of scalar, avx2, avx512" in err
    assert "Traceback" not in err
    assert got == _current_under("")[0]


def test_set_isa_rejects_unknown_levels_and_restores():
    before = isa.current()
    with pytest.raises(ValueError, match="'avx9'.*available: scalar"):
        isa.set_isa("avx9")
    with isa.forced("scalar"):
        assert isa.current() == {"int8": "scalar", "conv": "scalar", "blocked": "scalar"}
        assert not blocked.enabled()
    if "avx2" in isa.available():
        with isa.forced("avx2"):
            assert isa.current()["blocked"] == "avx2" and blocked.enabled()
    assert isa.current() == before
    with pytest.raises(ValueError, match="'avx9' does not run on this CPU"):
        isa._blocked._set_variant("avx9")


@pytest.fixture(scope="module")
def digits_modules():
    pytest.importorskip("qcc.passes.realize_int8")
    model, calib, test = digits()
    float_module = qcc.load(model)
    module = qcc.quantize(model, calib, progress=False).module
    passes.run(module, "qcc-realize-int8")
    with np.load(test) as t:
        x = t["input"][:8]
    return float_module, module, [{"input": x[i:i + 1]} for i in range(len(x))]


@pytest.mark.parametrize("level", isa.LEVELS)
def test_whole_model_identical_on_every_level(digits_modules, level, monkeypatch):
    if level not in isa.available():
        pytest.skip(f"this CPU has no {level} kernels")
    float_module, module, samples = digits_modules
    with isa.forced("scalar"):
        float_want = [run(float_module, feeds) for feeds in samples]
    monkeypatch.setattr(int8, "_C", None)   # the numpy int64 kernels
    int_want = [run(module, feeds) for feeds in samples]
    monkeypatch.undo()
    with isa.forced(level):
        int_got = [run(module, feeds) for feeds in samples]
        float_got = [run(float_module, feeds) for feeds in samples]
    for want, got in [*zip(int_want, int_got, strict=True),
                      *zip(float_want, float_got, strict=True)]:
        for name, value in want.items():
            assert np.array_equal(got[name], value), name
