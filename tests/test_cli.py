"""The `qcc` command: import and run, and its error messages."""

import subprocess
import sys

import numpy as np

from qcc import ir
from qcc.dialects import qnn


def _qcc(*args):
    return subprocess.run([sys.executable, "-m", "qcc.tools.cli", *args],
                          capture_output=True, text=True)


def _model(path):
    g = ir.Graph()
    x = g.input("x", (2, 3))
    w = g.const(np.arange(12, dtype=np.float32).reshape(4, 3), name="fc.weight")
    y = g.add(qnn.DenseOp.make(x, w, name="fc"))
    ir.print_module(g.finish({"y": g.add(qnn.ReluOp.make(y))}), path)


def test_run_mlir_matches_numpy(tmp_path):
    _model(tmp_path / "m.mlir")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    r = _qcc("run", str(tmp_path / "m.mlir"), "--inputs", str(tmp_path / "in.npz"),
             "-o", str(tmp_path / "out.npz"))
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "out.npz")["y"]
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(y, np.maximum(x @ w.T, 0), rtol=1e-6)


def test_run_lists_expected_against_given(tmp_path):
    _model(tmp_path / "m.mlir")
    np.savez(tmp_path / "in.npz", inp=np.zeros((2, 3), np.float32))
    r = _qcc("run", str(tmp_path / "m.mlir"), "--inputs", str(tmp_path / "in.npz"),
             "-o", str(tmp_path / "out.npz"))
    assert r.returncode == 1
    assert "expected inputs ['x'], given ['inp']" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.npz").exists()


def test_run_wrong_shape(tmp_path):
    _model(tmp_path / "m.mlir")
    np.savez(tmp_path / "in.npz", x=np.zeros((5, 3), np.float32))
    r = _qcc("run", str(tmp_path / "m.mlir"), "--inputs", str(tmp_path / "in.npz"),
             "-o", str(tmp_path / "out.npz"))
    assert r.returncode == 1
    assert "input 'x': expected shape (2, 3), given (5, 3)" in r.stderr


def test_import_mlir_writes_ir_and_missing_model_is_an_error(tmp_path):
    _model(tmp_path / "m.mlir")
    r = _qcc("import", str(tmp_path / "m.mlir"), "-o", str(tmp_path / "copy.mlir"))
    assert r.returncode == 0, r.stderr
    assert "qnn.dense" in (tmp_path / "copy.mlir").read_text()
    r = _qcc("import", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "x.mlir"))
    assert r.returncode == 1 and "no such file" in r.stderr
