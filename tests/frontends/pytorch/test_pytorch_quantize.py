"""qcc.quantize on a torch.nn.Module, `qcc quantize model.pt2`, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import models  # noqa: E402

import qcc  # noqa: E402
from qcc import runtime  # noqa: E402
from qcc.tools.cli import main  # noqa: E402

BATCH = 4


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return models.ResNet().eval()


@pytest.fixture(scope="module")
def calib():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((16, 3, 16, 16)).astype(np.float32)}


@pytest.fixture(scope="module")
def quantized(resnet, calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "out"
    x = torch.from_numpy(calib["x"][:BATCH])
    result = qcc.quantize(resnet, calib, outdir=out, example_inputs=(x,), progress=False)
    return result, out


def test_writes_every_file_the_onnx_flow_writes(quantized, tmp_path, calib):
    from qcc.exporters.onnx import export_onnx

    result, out = quantized
    export_onnx(result.float_module, tmp_path / "resnet.onnx")
    onnx_out = tmp_path / "onnx_out"
    qcc.quantize(tmp_path / "resnet.onnx", calib, outdir=onnx_out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in onnx_out.iterdir())
    assert (out / "resnet_fake_quant.onnx").exists() and (out / "resnet_deploy.onnx").exists()
    # Reports and records speak the module paths.
    record = (out / "record.txt").read_text()
    assert 'layer2.0.shortcut.0' in record and 'layer1.0.conv1' in record


def test_onnxruntime_runs_the_fake_quant_export(quantized, resnet, calib):
    result, out = quantized
    x = calib["x"][8:8 + BATCH]
    from qcc.testing import ort as qort

    sess = qort.session(out / "resnet_fake_quant.onnx")   # QDQ as written, on every CPU
    theirs = sess.run(None, {"x": x})[0]
    ours = runtime.run(result.module, {"x": x})["output"]
    with torch.no_grad():
        ref = resnet(torch.from_numpy(x)).numpy()
    # Same fake-quant graph on two runtimes: equal up to float rounding that moves a
    # value across a rounding boundary, which the scale of the logits bounds.
    assert np.abs(ours - theirs).max() <= 0.02 * np.abs(ref).max()
    cos = np.sum(theirs * ref, 1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99


def test_command_line_quantizes_a_pt2_file(tmp_path, resnet, calib, capsys):
    x = torch.from_numpy(calib["x"][:BATCH])
    program = torch.export.export(resnet, (x,))
    torch.export.save(program, tmp_path / "resnet.pt2")
    np.savez(tmp_path / "calib.npz", **calib)
    code = main(["quantize", str(tmp_path / "resnet.pt2"), "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "resnet_fake_quant.onnx").exists()
    assert "layer1.0.conv1" in (tmp_path / "out" / "record.txt").read_text()


@pytest.mark.parametrize("ext", [".pt", ".pth"])
def test_pickles_are_refused(tmp_path, resnet, capsys, ext):
    path = tmp_path / f"model{ext}"
    torch.save(resnet, path)
    code = main(["import", str(path), "-o", str(tmp_path / "m.mlir")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert f"model{ext}: qcc does not load {ext} pickles" in err
    assert "torch.export.save" in err
    assert not (tmp_path / "m.mlir").exists()


def test_fake_quant_export_runs_at_any_batch(quantized, resnet, calib):
    """Dim.AUTO's batch stays symbolic: the fake-quant ONNX has a `batch` input dim and
    onnxruntime (graph optimizations off) runs it at batch 1, 3 and 64, matching qcc's
    runtime on the quantized module."""
    import onnx

    from qcc.testing import ort as qort

    result, out = quantized
    model = onnx.load(out / "resnet_fake_quant.onnx")
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 16, 16]
    deploy = onnx.load(out / "resnet_deploy.onnx")
    assert [d.dim_param or d.dim_value
            for d in deploy.graph.input[0].type.tensor_type.shape.dim] == dims
    session = qort.session(model)
    rng = np.random.default_rng(5)
    for batch in (1, 3, 64):
        x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
        (theirs,) = qort.run(session, {"x": x}).values()
        ours = runtime.run(result.module, {"x": x})["output"]
        with torch.no_grad():
            ref = resnet(torch.from_numpy(x)).numpy()
        assert theirs.shape == ours.shape == (batch, ref.shape[1])
        assert np.abs(ours - theirs).max() <= 0.02 * np.abs(ref).max(), batch
