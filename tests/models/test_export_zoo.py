"""The export zoo: transformers, torchvision and timm models as users export them,
through qcc's ONNX frontend, runtime and `qcc.quantize`, checked against onnxruntime.

Each architecture of `zoo.ZOO` is built from a tiny random config in the test (no
download), exported with `torch.onnx.export` by the TorchScript exporter
(`dynamo=False`, opset 14) and the dynamo exporter (`dynamo=True`, opset 18) with a
dynamic batch axis (one export per architecture and exporter per session), imported
once with its symbolic batch (`tensor<?x...>`) and run at batch 1 and 3 by qcc's
runtime and by onnxruntime with graph optimizations off (the oracle), on the same
random inputs. The exports of `zoo.STATIC_BATCH` are still refused with a symbolic
batch (one message naming the node); they are imported at each batch
(`input_shapes`). The deviations measured are
around 1e-6 (the largest, 2.5e-6, on ResNet-18 at batch 3); the tolerance is
rtol = atol = 1e-4.

`qcc.quantize` runs on every architecture's two exports (W8A8 default, random
calibration data): every file is written (the deploy model included), and
onnxruntime runs the fake-quant export (see `test_quantize_writes_every_file`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

import zoo  # noqa: E402
from _torchvision import import_timm  # noqa: E402

try:
    import_timm()  # torchvision through the shim, then timm
    zoo._import_transformers()
except ImportError as e:
    pytest.skip(f"the zoo needs torchvision, timm and transformers: {e}",
                allow_module_level=True)

import onnx  # noqa: E402

from qcc import ir  # noqa: E402
from qcc.frontends.errors import FrontendError  # noqa: E402
from qcc.frontends.onnx import load_onnx  # noqa: E402
from qcc.runtime import run  # noqa: E402

BATCHES = (1, 3)
RTOL = ATOL = 1e-4


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory):
    """(architecture, exporter) -> path of its ONNX export, made once per session."""
    made: dict[tuple[str, str], str] = {}
    folder = tmp_path_factory.mktemp("zoo")

    def get(name: str, exporter: str) -> str:
        key = (name, exporter)
        if key not in made:
            path = os.fspath(folder / f"{name}_{exporter}.onnx")
            zoo.export(zoo.ZOO[name], exporter, path)
            made[key] = path
        return made[key]

    return get


def ort_run(path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _symbolic_import(path: str, name: str, exporter: str):
    """The module imported with its symbolic batch, or None for an export of
    `zoo.STATIC_BATCH` that the frontend still refuses so, with one message naming
    the node and the `--input-shape` to pass. (An entry that imports is checked
    like the others.)"""
    if (name, exporter) not in zoo.STATIC_BATCH:
        return load_onnx(path)
    try:
        return load_onnx(path)
    except FrontendError as e:
        assert "node '" in str(e) and "--input-shape" in str(e), str(e)
        return None


@pytest.mark.parametrize("exporter", list(zoo.EXPORTERS))
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_export_matches_onnxruntime(zoo_export, name, exporter):
    path = zoo_export(name, exporter)
    arch = zoo.ZOO[name]
    module = _symbolic_import(path, name, exporter)  # one module for every batch
    static = module is None
    if module is not None:
        batch_dims = {str(a.type).split("x")[0] for a in ir.main_func(module).args}
        assert batch_dims == {"tensor<?"}, f"{name} ({exporter}): batch not symbolic"
    for batch in BATCHES:
        feeds = arch.inputs(batch, 1)
        if static:
            module = load_onnx(path, input_shapes={k: v.shape for k, v in feeds.items()})
        got = run(module, feeds)
        want = ort_run(path, feeds)
        assert sorted(got) == sorted(want) == sorted(arch.outputs)
        for out, expected in want.items():
            assert got[out].shape == expected.shape and expected.shape[0] == batch, out
            assert np.abs(expected).max() > 1e-3, "a degenerate output checks nothing"
            np.testing.assert_allclose(got[out], expected, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name} ({exporter}) batch {batch}")


@pytest.mark.parametrize("exporter", list(zoo.EXPORTERS))
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_quantize_writes_every_file(zoo_export, tmp_path, name, exporter):
    """`qcc.quantize` on the export writes the fake-quant ONNX, the deploy
    model, record, encodings, reports and the replay script. onnxruntime (graph
    optimizations off) runs the fake-quant export and agrees with qcc's runtime on
    the quantized module as two runtimes of one fake-quant graph can: float sums in
    another order move a few values across a rounding edge, one quantization step
    apart, and deep nets carry that on (onnxruntime with and without its basic graph
    optimizations differs by as much on ResNet-18). So the runtimes must agree far
    more closely than either does with the float model (mean difference under half
    the quantization error's), within 5 % of the output's range, and with a cosine of
    0.999 on every sample. Measured: within 1e-6 on 31 of the 35 of each exporter;
    flips on ResNet-18, MobileNetV2, timm's EfficientNet, and MobileViT (TorchScript)
    or DeiT (dynamo): mean ratio 0.27 at most, largest difference 1.7 % of the
    range."""
    from qcc import quantize

    arch = zoo.ZOO[name]
    path = zoo_export(name, exporter)
    calib = arch.inputs(4, 2)
    out = tmp_path / "out"
    try:
        result = quantize(path, calib, outdir=out, progress=False, name=name, dump_ir=True)
    except FrontendError:
        if (name, exporter) not in zoo.STATIC_BATCH:
            raise
        result = quantize(path, calib, outdir=out, progress=False, name=name, dump_ir=True,
                          input_shapes={k: v.shape for k, v in calib.items()})
    written = {p.name for p in out.iterdir()}
    assert {f"{name}_fake_quant.onnx", f"{name}_deploy.onnx", "record.txt", "encodings.json",
            "report.json", "report.md"} <= written, f"{name}: {result.report.get('deploy')}"
    assert (out / "ir" / "replay.sh").is_file()
    fake_quant = onnx.load(out / f"{name}_fake_quant.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in fake_quant.graph.node)
    deploy = onnx.load(out / f"{name}_deploy.onnx")
    assert any(n.op_type == "AscendQuant" for n in deploy.graph.node)

    feeds = arch.inputs(4, 5)
    want = ort_run(os.fspath(out / f"{name}_fake_quant.onnx"), feeds)
    got, float_out = run(result.module, feeds), run(result.float_module, feeds)
    assert sorted(got) == sorted(want)
    for k, expected in want.items():
        q, f, w = (np.asarray(a, np.float64).reshape(len(expected), -1)
                   for a in (got[k], float_out[k], expected))
        runtimes, quantization = np.abs(q - w), np.abs(f - w)
        assert runtimes.mean() <= 0.5 * quantization.mean(), (
            f"{name} {k}: runtimes differ by {runtimes.mean():.3g} on average, "
            f"quantization by {quantization.mean():.3g}")
        assert runtimes.max() <= 0.05 * np.abs(w).max(), f"{name} {k}: {runtimes.max():.3g}"
        cosine = np.sum(q * w, 1) / np.linalg.norm(q, axis=1) / np.linalg.norm(w, axis=1)
        assert cosine.min() >= 0.999, f"{name} {k}: cosine {cosine.min():.6f}"
