"""The export zoo: transformers, torchvision and timm models as users export them,
through qcc's ONNX frontend and runtime, checked against onnxruntime.

Each architecture of `zoo.ZOO` is built from a tiny random config in the test (no
download), exported with `torch.onnx.export` by the TorchScript exporter
(`dynamo=False`, opset 14) and the dynamo exporter (`dynamo=True`, opset 18) with a
dynamic batch axis (one export per architecture and exporter per session), imported
by qcc at batch 1 and 3 (`input_shapes`; qcc's shapes are static), and run on the
same random inputs by qcc's runtime and by onnxruntime with graph optimizations off
(the oracle). The deviations measured are around 1e-6 (the largest, 1.7e-6, on the
GroupNorm ResNet-18); the tolerance is rtol = atol = 1e-4.
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


@pytest.mark.parametrize("exporter", list(zoo.EXPORTERS))
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_export_matches_onnxruntime(zoo_export, name, exporter):
    path = zoo_export(name, exporter)
    arch = zoo.ZOO[name]
    for batch in BATCHES:
        feeds = arch.inputs(batch, 1)
        module = load_onnx(path, input_shapes={k: v.shape for k, v in feeds.items()})
        got, want = run(module, feeds), ort_run(path, feeds)
        assert sorted(got) == sorted(want) == sorted(arch.outputs)
        for out, expected in want.items():
            assert got[out].shape == expected.shape and expected.shape[0] == batch, out
            assert np.abs(expected).max() > 1e-3, "a degenerate output checks nothing"
            np.testing.assert_allclose(got[out], expected, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name} ({exporter}) batch {batch}")


@pytest.mark.parametrize("name,exporter", [
    ("roberta", "torchscript"),  # CumSum, GatherElements at run time
    ("bert", "dynamo"),  # GatherND of the attention mask
    ("tv_resnet18_groupnorm", "torchscript"),  # InstanceNormalization
])
def test_quantize_writes_exports_onnxruntime_runs(zoo_export, tmp_path, name, exporter):
    """`qcc.quantize` on exports with the new ops writes every file; onnxruntime runs
    the fake-quant model and agrees with qcc's runtime on the quantized module."""
    from qcc import quantize

    arch = zoo.ZOO[name]
    calib = arch.inputs(4, 2)
    shapes = {k: v.shape for k, v in calib.items()}
    result = quantize(zoo_export(name, exporter), calib, outdir=tmp_path / "out",
                      input_shapes=shapes, progress=False, name=name)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"{name}_fake_quant.onnx", f"{name}_deploy.onnx", "record.txt",
            "encodings.json", "report.json"} <= written
    feeds = arch.inputs(4, 5)
    want = ort_run(os.fspath(tmp_path / "out" / f"{name}_fake_quant.onnx"), feeds)
    got = run(result.module, feeds)
    for out, expected in want.items():
        # a rounding tie may flip one quantization step; the bulk agrees closely
        close = np.isclose(got[out], expected, rtol=1e-3, atol=1e-3)
        assert close.mean() > 0.99, f"{name}: {close.mean():.4f} of {out} agree"
