"""Textual IR: inline vs resource constants, the weights sidecar, qcc-opt errors."""

import subprocess
import sys

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn


def _model(rng, big=(16, 8, 3, 3)):
    g = ir.Graph()
    x = g.input("x", (1, big[1], 6, 6))
    w = g.const(rng.standard_normal(big).astype(np.float32), name="conv1.weight")
    b = g.const(np.arange(big[0], dtype=np.float32), name="conv1.bias")
    y = g.add(qnn.ConvOp.make(x, w, b, pads=(1, 1, 1, 1), name="conv1"))
    return g.finish({"y": g.add(qnn.ReluOp.make(y))})


def _weights(module):
    return [np.array(ir.array_of(op)) for op in module.walk() if isinstance(op, qnn.ConstantOp)]


def test_small_constants_inline_large_as_resource():
    text = ir.print_module(_model(np.random.default_rng(0)))
    assert "dense<[0.000000e+00, 1.000000e+00" in text  # 16-element bias inline
    assert "dense_resource<conv1_weight> : tensor<16x8x3x3xf32>" in text
    assert "dialect_resources" in text  # no file: bytes in MLIR's resource section


def test_stdout_form_round_trips_bit_exact():
    m = _model(np.random.default_rng(1))
    text = ir.print_module(m)
    m2 = ir.parse_module(text)
    assert ir.print_module(m2) == text
    for a, b in zip(_weights(m), _weights(m2), strict=True):
        assert a.tobytes() == b.tobytes()


def test_sidecar_round_trip(tmp_path):
    m = _model(np.random.default_rng(2))
    path = tmp_path / "model.mlir"
    text = ir.print_module(m, path)
    assert (tmp_path / "model.weights").exists()
    assert 'qcc.weights = "model.weights"' in text
    assert "dialect_resources" not in text
    m2 = ir.load_module(path)
    for a, b in zip(_weights(m), _weights(m2), strict=True):
        assert a.tobytes() == b.tobytes()
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_missing_sidecar_is_a_clear_error(tmp_path):
    path = tmp_path / "model.mlir"
    ir.print_module(_model(np.random.default_rng(3)), path)
    (tmp_path / "model.weights").unlink()
    with pytest.raises(ir.IRError, match="model.weights.*does not exist"):
        ir.load_module(path)


def test_weights_are_numpy_views_not_lists():
    m = _model(np.random.default_rng(4))
    w = next(op for op in m.walk() if isinstance(op, qnn.ConstantOp))
    arr = ir.array_of(w)
    assert isinstance(arr, np.ndarray) and arr.base is not None  # a view over bytes
    assert isinstance(w.value.data.data, bytes)


def _qcc_opt(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "qcc.tools.opt", *args], input=stdin,
                          capture_output=True, text=True)


def test_qcc_opt_writes_file_and_sidecar(tmp_path):
    src = tmp_path / "in.mlir"
    ir.print_module(_model(np.random.default_rng(5)), src)
    out = tmp_path / "out.mlir"
    r = _qcc_opt(str(src), "-p", "canonicalize", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.weights").exists()
    assert ir.print_module(ir.load_module(out)) == ir.print_module(ir.load_module(src))


def test_verifier_error_is_one_diagnostic_exit_1(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("""func.func @main(%x: tensor<2x3xf32>) -> tensor<7xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 7>} : (tensor<2x3xf32>) -> tensor<7xf32>
  func.return %0 : tensor<7xf32>
}
""")
    r = _qcc_opt(str(bad))
    assert r.returncode == 1
    assert "'qnn.reshape': cannot reshape (2, 3) into (7,)" in r.stderr
    assert "Traceback" not in r.stderr


def test_parse_error_has_line_and_column(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
                   "  %0 = qnn.relu %x : (tensor<2xf32> -> tensor<2xf32>\n}\n")
    r = _qcc_opt(str(bad))
    assert r.returncode == 1
    assert f"{bad}:2:" in r.stderr
    assert "Traceback" not in r.stderr


def test_list_passes():
    r = _qcc_opt("--list-passes")
    assert r.returncode == 0
    assert "canonicalize" in r.stdout
