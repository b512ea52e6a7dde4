"""Bad input never crashes qcc or corrupts an output (issue 10): each case of the
audit, run in-process through the commands' `main(argv)`."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qcc import ir
from qcc.dialects import qnn
from qcc.examples import digits
from qcc.fileio import OutputError, check_output, write_file, write_folder
from qcc.quant.report import report_json
from qcc.tools import cli, opt


def _call(main, capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _tiny(path, weight=None):
    """conv (2 -> 3 channels, 1x1) + relu + dense: x (1, 2, 2, 2) -> y (1, 4)."""
    g = ir.Graph()
    x = g.input("x", (1, 2, 2, 2))
    w = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1) / 6 if weight is None else weight
    c = g.add(qnn.ConvOp.make(x, g.const(w, name="conv.weight"), name="conv"))
    r = g.add(qnn.ReluOp.make(c, name="relu"))
    f = g.add(qnn.ReshapeOp.make(r, shape=(1, 12), name="flat"))
    d = np.linspace(-1, 1, 48, dtype=np.float32).reshape(4, 12)
    y = g.add(qnn.DenseOp.make(f, g.const(d, name="fc.weight"), name="fc"))
    ir.print_module(g.finish({"y": y}), path)
    return path


def _data(path, n=4, dtype=np.float32, fill=None, **extra):
    x = np.random.default_rng(0).standard_normal((n, 2, 2, 2)).astype(dtype)
    if fill is not None:
        x[...] = fill
    np.savez(path, x=x, **extra)
    return path


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("command", ["import", "run", "config", "quantize"])
def test_output_in_missing_folder_is_one_message_before_any_work(tmp_path, capsys,
                                                                 monkeypatch, command):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    out = tmp_path / "nowhere" / ("out" if command == "quantize" else "out.x")
    import qcc

    def no_work(*a, **k):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(qcc, "load", no_work)
    args = {"import": ["import", model, "-o", out],
            "run": ["run", model, "--inputs", calib, "-o", out],
            "config": ["config", model, "-o", out],
            "quantize": ["quantize", model, "--calib", calib, "-o", out]}[command]
    rc, _, err = _call(cli.main, capsys, *args)
    assert rc == 1
    assert err.strip().splitlines() == [
        f"qcc {command}: error: {out}: the folder '{out.parent}' does not exist; "
        "create it first"]
    assert _listing(tmp_path) == ["c.npz", "m.mlir"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["import", "run", "config", "quantize"])
def test_output_in_read_only_folder(tmp_path, capsys, command):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    out = ro / "out"
    args = {"import": ["import", model, "-o", out],
            "run": ["run", model, "--inputs", calib, "-o", out],
            "config": ["config", model, "-o", out],
            "quantize": ["quantize", model, "--calib", calib, "-o", out]}[command]
    try:
        rc, _, err = _call(cli.main, capsys, *args)
    finally:
        ro.chmod(0o755)
    assert rc == 1
    assert "is not writable" in err and len(err.strip().splitlines()) == 1
    assert _listing(ro) == []


def test_write_failure_is_one_message(tmp_path, capsys):
    # /proc takes no new files, even from root: the rename path's error.
    model = _tiny(tmp_path / "m.mlir")
    rc, _, err = _call(cli.main, capsys, "import", model, "-o", "/proc/qcc-out.mlir")
    assert rc == 1
    assert err.startswith("qcc import: error: /proc/qcc-out.mlir: cannot write")


def test_quantize_refuses_to_replace_a_file_by_a_folder(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    (tmp_path / "out").write_text("keep me")
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert rc == 1
    assert "is a file, not a folder" in err
    assert (tmp_path / "out").read_text() == "keep me"
    assert not [p for p in _listing(tmp_path) if p.startswith(".")]


def test_import_refuses_to_replace_a_folder_by_a_file(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    (tmp_path / "out.mlir").mkdir()
    rc, _, err = _call(cli.main, capsys, "import", model, "-o", tmp_path / "out.mlir")
    assert rc == 1
    assert "is a folder, not a file" in err
    assert (tmp_path / "out.mlir").is_dir()


def test_write_file_interrupted_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def half(tmp):
        Path(tmp).write_text("ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file(target, half)
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["a.txt"]
    write_file(target, "new")
    assert target.read_text() == "new" and _listing(tmp_path) == ["a.txt"]


def test_write_folder_swaps_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), write_folder(out) as work:
        (work / "new.txt").write_text("new")
        raise RuntimeError("failed half way")
    assert _listing(out) == ["old.txt"] and _listing(tmp_path) == ["out"]
    with write_folder(out) as work:
        (work / "new.txt").write_text("new")
    assert _listing(out) == ["new.txt"] and _listing(tmp_path) == ["out"]
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(tmp_path / "f", "folder")


def test_quantize_into_the_current_folder_is_refused(tmp_path, capsys, monkeypatch):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), ".."):
        rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o", out)
        assert rc == 1 and "is the current folder (or holds it)" in err
    assert _listing(tmp_path) == ["c.npz", "m.mlir"]


def test_quantize_into_a_folder_holding_its_inputs_is_refused(tmp_path, capsys):
    """The output folder is replaced as a whole: a folder that holds the model or the
    calibration data (directly or deeper) would lose them, so the job stops first."""
    models = tmp_path / "models"
    (models / "data").mkdir(parents=True)
    model = _tiny(models / "m.mlir")
    calib = _data(models / "data" / "c.npz")
    for out in (models, tmp_path):
        rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o", str(out))
        assert rc == 1 and "holds the input" in err and "name a folder of its own" in err
    assert _listing(models) == ["data", "m.mlir"] and _listing(models / "data") == ["c.npz"]
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       str(models / "data" / "out"))
    assert rc == 0, err
    assert (models / "data" / "c.npz").exists() and (models / "m.mlir").exists()


def test_quantize_leaves_nothing_in_the_system_temp_folder(tmp_path, capsys, monkeypatch):
    system_tmp = tmp_path / "systmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.chdir(tmp_path)
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert rc == 0, err
    assert _listing(system_tmp) == []
    assert "quant.json" in _listing(tmp_path / "out")
    assert not [p for p in _listing(tmp_path) if p.startswith(".")]


def test_ctrl_c_during_quantize(tmp_path, capsys, monkeypatch):
    from qcc import registry

    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "previous.txt").write_text("previous run")

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    # Ctrl-C in the first calibration batch (the passes run the graph through it)
    monkeypatch.setattr(registry, "executor", lambda: lambda module, hooks: interrupt)
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert (rc, err) == (130, "interrupted\n")
    assert _listing(tmp_path / "out") == ["previous.txt"]
    assert not [p for p in _listing(tmp_path) if p.startswith(".")]


def test_report_json_is_strict_json():
    text = report_json({"sqnr": float("inf"), "worst": [np.float32("nan"), 1.5],
                        "deep": {"x": -np.inf, "n": np.int64(3)}})

    def reject(c):
        raise AssertionError(f"non-JSON constant {c}")

    assert json.loads(text, parse_constant=reject) == {
        "sqnr": None, "worst": [None, 1.5], "deep": {"x": None, "n": 3}}


# --------------------------------------------------------------- data files


def test_pickled_npz(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    np.savez(tmp_path / "p.npz", x=np.array([{"a": 1}], dtype=object))
    rc, _, err = _call(cli.main, capsys, "run", model, "--inputs", tmp_path / "p.npz",
                       "-o", tmp_path / "o.npz")
    assert rc == 1
    assert "array 'x' holds Python objects" in err
    assert not (tmp_path / "o.npz").exists()


def test_text_file_named_npz(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    (tmp_path / "t.npz").write_text("x,y\n1,2\n")
    rc, _, err = _call(cli.main, capsys, "run", model, "--inputs", tmp_path / "t.npz",
                       "-o", tmp_path / "o.npz")
    assert rc == 1
    assert f"{tmp_path / 't.npz'}: not an .npz file" in err
    assert "pickle" not in err


def test_run_allows_non_finite_inputs(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    x = np.ones((1, 2, 2, 2), np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 1, 1] = np.inf
    np.savez(tmp_path / "i.npz", x=x)
    rc, _, err = _call(cli.main, capsys, "run", model, "--inputs", tmp_path / "i.npz",
                       "-o", tmp_path / "o.npz")
    assert rc == 0, err
    w = np.arange(6, dtype=np.float32).reshape(3, 2) / 6
    c = np.maximum(np.einsum("oc,nchw->nohw", w, x.astype(np.float64)), 0)
    d = np.linspace(-1, 1, 48, dtype=np.float32).reshape(4, 12).astype(np.float64)
    with np.errstate(invalid="ignore"):
        expect = c.reshape(1, 12) @ d.T
    got = np.load(tmp_path / "o.npz")["y"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expect))
    np.testing.assert_allclose(got[np.isfinite(expect)], expect[np.isfinite(expect)],
                               rtol=1e-5)


def test_int64_calibration_data_for_a_float_input(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz", dtype=np.int64)
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert rc == 1
    assert "input 'x': expected dtype float32, given int64" in err
    assert not (tmp_path / "out").exists()


def test_eval_data_checked_before_calibration(tmp_path, capsys, monkeypatch):
    from qcc.passes import calibrate as calibrate_pass

    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    ev = tmp_path / "e.npz"
    np.savez(ev, inp=np.zeros((4, 2, 3, 3), np.float32))
    monkeypatch.setattr(calibrate_pass, "calibrate", lambda *a, **k: pytest.fail("calibrated"))
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "--eval", ev,
                       "-o", tmp_path / "out")
    assert rc == 1
    assert f"{ev}: evaluation data does not fit the model: expected inputs ['x'], " \
        "given ['inp']" in err


def test_eval_data_wrong_shape_and_dtype(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz")
    ev = tmp_path / "e.npz"
    np.savez(ev, x=np.zeros((4, 2, 3, 3), np.int64), labels=np.zeros(4, np.int64))
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "--eval", ev,
                       "-o", tmp_path / "out")
    assert rc == 1
    assert "evaluation data does not fit the model: input 'x': expected samples of " \
        "shape (2, 2, 2) (batch first), given (4, 2, 3, 3)" in err


# ------------------------------------------------------------ non-finite


def test_all_nan_calibration_data_names_tensor_and_layer(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    calib = _data(tmp_path / "c.npz", fill=np.nan)
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert rc == 1
    # 4 samples x 8 values NaN enter conv; the relu output (fc's input) is NaN too.
    assert ("tensor the input of layer 'conv' (quantizer 'conv.input', layer 'conv') "
            "holds no finite value in the calibration data (32 NaN, 0 +inf, 0 -inf)") in err
    assert not (tmp_path / "out").exists()


def test_partly_nan_calibration_data_is_allowed(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    x = np.random.default_rng(0).standard_normal((4, 2, 2, 2)).astype(np.float32)
    x[0] = np.nan
    np.savez(tmp_path / "c.npz", x=x)
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", tmp_path / "c.npz",
                       "-o", tmp_path / "out")
    assert rc == 0, err
    text = (tmp_path / "out" / "report.json").read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    rows = {r["layer"]: r for r in report["layers"]}
    # Sample 0 is NaN: its 2x2x2 values entering conv, and the 3x2x2 = 12 of the
    # relu (flattened) entering fc, are left out and counted.
    assert rows["conv"]["input"]["skipped_values"] == 8
    assert rows["fc"]["input"]["skipped_values"] == 12
    # The report's activation SQNR is taken on the first batch, all NaN: no finite
    # value, no noise, so inf dB, which strict JSON writes as null.
    assert rows["conv"]["input"]["sqnr_db"] is None


def test_nan_weight_is_named(tmp_path, capsys):
    w = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1)
    w[1, 0, 0, 0] = np.nan
    model = _tiny(tmp_path / "m.mlir", weight=w)
    calib = _data(tmp_path / "c.npz")
    rc, _, err = _call(cli.main, capsys, "quantize", model, "--calib", calib, "-o",
                       tmp_path / "out")
    assert rc == 1
    assert "non-finite weights: 'conv.weight' of layer 'conv' (1 of 6 values NaN or inf)" \
        in err


def test_nan_weight_in_onnx_model_is_named(tmp_path, capsys):
    model_path, calib, _ = digits()
    m = onnx.load(model_path)
    for init in m.graph.initializer:
        if init.name == "conv2.weight":
            w = numpy_helper.to_array(init).copy()
            w.flat[5] = np.inf
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(m, tmp_path / "nan.onnx")
    rc, _, err = _call(cli.main, capsys, "quantize", tmp_path / "nan.onnx", "--calib", calib,
                       "-o", tmp_path / "out")
    assert rc == 1
    assert "of layer 'conv2' (1 of 4608 values NaN or inf)" in err


# ------------------------------------------------------------------ models


def test_onnx_input_that_nothing_produces(tmp_path, capsys):
    model_path, _, _ = digits()
    m = onnx.load(model_path)
    m.graph.node[3].input[0] = "relu_one"
    onnx.save(m, tmp_path / "bad.onnx")
    rc, _, err = _call(cli.main, capsys, "import", tmp_path / "bad.onnx", "-o",
                       tmp_path / "bad.mlir")
    assert rc == 1
    assert "node 'conv2' (Conv) reads tensor 'relu_one', but no graph input, " \
        "initializer or node produces it" in err
    assert not (tmp_path / "bad.mlir").exists()


def _unverifiable(path):
    path.write_text(
        "func.func @main(%x: tensor<2x3xf32>) -> tensor<7xf32> {\n"
        "  %0 = qnn.reshape %x {shape = array<i64: 7>} : (tensor<2x3xf32>) -> tensor<7xf32>\n"
        "  func.return %0 : tensor<7xf32>\n}\n")
    return path


def test_run_and_import_of_ir_that_fails_verification(tmp_path, capsys):
    bad = _unverifiable(tmp_path / "bad.mlir")
    np.savez(tmp_path / "i.npz", x=np.zeros((2, 3), np.float32))
    for argv in (["run", bad, "--inputs", tmp_path / "i.npz", "-o", tmp_path / "o.npz"],
                 ["import", bad, "-o", tmp_path / "o.mlir"]):
        rc, _, err = _call(cli.main, capsys, *argv)
        assert rc == 1
        assert "'qnn.reshape': cannot reshape (2, 3) into (7,)" in err
        assert err.startswith(f"qcc {argv[0]}: error: {bad}")
    assert _listing(tmp_path) == ["bad.mlir", "i.npz"]


# ------------------------------------------------------------------ qcc-opt


@pytest.mark.parametrize("pipeline,expected", [
    ("qcc-fuse-bn{", "error: pipeline 'qcc-fuse-bn{' does not parse:"),
    ("qcc-fuse-bm", "error: unknown pass 'qcc-fuse-bm'; did you mean 'qcc-fuse-bn'?"),
    ("qcc-calibrate{batch_num=abc}",
     "error: pass 'qcc-calibrate': option 'batch_num' expects int, given 'abc'"),
    ("qcc-calibrate{batch=3}",
     "error: pass 'qcc-calibrate': no option 'batch' (did you mean 'batch_num'?"),
])
def test_qcc_opt_pipeline_errors(tmp_path, capsys, pipeline, expected):
    model = _tiny(tmp_path / "m.mlir")
    rc, _, err = _call(opt.main, capsys, model, "-p", pipeline, "-o", tmp_path / "o.mlir")
    assert rc == 1
    assert err.startswith(expected)
    assert not (tmp_path / "o.mlir").exists()


def test_qcc_opt_verifier_error_names_file_and_line(tmp_path, capsys):
    bad = _unverifiable(tmp_path / "bad.mlir")
    rc, _, err = _call(opt.main, capsys, bad, "-p", "canonicalize")
    assert rc == 1
    assert err == f"error: {bad}:2: 'qnn.reshape': cannot reshape (2, 3) into (7,)\n"


def test_qcc_opt_output_is_written_atomically(tmp_path, capsys):
    model = _tiny(tmp_path / "m.mlir")
    (tmp_path / "o.mlir").mkdir()
    rc, _, err = _call(opt.main, capsys, model, "-p", "canonicalize", "-o",
                       tmp_path / "o.mlir")
    assert rc == 1 and "is a folder, not a file" in err
    rc, _, err = _call(opt.main, capsys, model, "--split-input-file", "-p", "canonicalize",
                       "-o", tmp_path / "p.mlir")
    assert rc == 0, err
    assert "qnn.dense" in (tmp_path / "p.mlir").read_text()
    assert not [p for p in _listing(tmp_path) if p.startswith(".")]


def test_qcc_opt_split_input_writes_nothing_when_a_chunk_fails(tmp_path, capsys):
    good = _tiny(tmp_path / "m.mlir").read_text()
    bad = _unverifiable(tmp_path / "bad.mlir").read_text()
    both = tmp_path / "both.mlir"
    both.write_text(good + "\n// -----\n" + bad)
    (tmp_path / "o.mlir").write_text("previous")
    rc, _, err = _call(opt.main, capsys, both, "--split-input-file", "-p", "canonicalize",
                       "-o", tmp_path / "o.mlir")
    assert rc == 1 and "'qnn.reshape': cannot reshape (2, 3) into (7,)" in err
    assert (tmp_path / "o.mlir").read_text() == "previous"
    assert not [p for p in _listing(tmp_path) if p.startswith(".")]


def test_embedded_example_leaves_nothing_in_the_system_temp_folder(tmp_path, capsys,
                                                                   monkeypatch):
    # The W4A8 run of the example used to write its .cfg there, and every run a
    # quant.json.
    system_tmp = tmp_path / "systmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    rc, out, err = _call(cli.main, capsys, "quantize", "-o", tmp_path / "out")
    assert rc == 0, err
    assert "W4A8 (4-bit per-channel weights): top-1" in out
    assert _listing(system_tmp) == []
    assert _listing(tmp_path) == ["out", "systmp"]
