"""fp32 and fake-quant inference time of qcc's runtime against onnxruntime fp32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/runtime_fp32.py [--quick] [--models light_resnet50,resnet18_cifar,mobilenet_v3,vit_tiny,bert]

(Unset the OPENBLAS_* overrides so OpenBLAS picks the kernel for this CPU; the
script prints the CPU, its features and the BLAS/OpenMP libraries.)

Models (no download): `light_resnet50` from the installed onnx wheel (weights made
by ConstantOfShape) at 1x3x224x224; `qcc.testing.models.resnet18_cifar` at
32x3x32x32; torchvision `mobilenet_v3_large` and timm `vit_tiny_patch16_224` with
random weights at 1x3x224x224, exported here with torch.onnx.export (TorchScript
exporter, opset 14); `bert` (not in the default set): a 4-layer, 256-wide BERT
encoder from a random transformers config, batch 2, sequence 128.

Per model, three sides take turns in blocks (`_common.interleaved`, after warmup; medians):
- qcc fp32: the imported module compiled once (`qcc.runtime.compile_module`), then
  `qcc.runtime.execute(plan, inputs)` timed;
- qcc fake-quant: the module `qcc.quantize` returns after calibration (observers
  turned into fake-quant ops, one batch of random calibration data), compiled and
  executed the same way;
- onnxruntime fp32: `intra_op_num_threads` 2, `inter_op_num_threads` 1, all graph
  optimizations.
Rows: qcc fp32 / ort fp32 and qcc fake-quant / ort fp32, target 1.2 (issue 16). The
BLAS and OpenMP pools are limited to 2 threads (threadpoolctl). Planning and import
are not timed. On a machine shared with other jobs the numbers are noisy.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET = 1.2
DEFAULT = "light_resnet50,resnet18_cifar,mobilenet_v3,vit_tiny"


def model_cases(names: list[str], tmp: Path, smoke: bool
                ) -> list[tuple[str, Callable[[], tuple[object, dict]]]]:
    """(label, () -> (model path or ModelProto, one batch of inputs)); built lazily."""
    from qcc.testing.models import resnet18_cifar

    def light():
        x = c.image_batch((1, 3, 224, 224))
        import onnx

        proto = onnx.load(str(c.light_resnet50_path()))
        return proto, {proto.graph.input[0].name: x}

    def r18(batch: int):
        proto = resnet18_cifar(batch=batch)
        return proto, {proto.graph.input[0].name: c.image_batch((batch, 3, 32, 32))}

    if smoke:
        return [("tiny_cnn b2", c.smoke_model)]
    table = {
        "light_resnet50": ("light_resnet50 b1", light),
        "resnet18_cifar": ("resnet18_cifar b32", lambda: r18(32)),
        "mobilenet_v3": ("mobilenet_v3_large b1", lambda: c.mobilenet_v3(tmp / "mnv3.onnx", 1)),
        "vit_tiny": ("vit_tiny b1", lambda: c.vit_tiny(tmp / "vit.onnx", 1)),
        "bert": ("bert 4x256 b2 s128", lambda: c.bert_encoder(tmp / "bert.onnx", 2)),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"runtime_fp32.py: unknown model(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(table)}")
    return [table[n] for n in names]


def fake_quant_module(model, feeds: dict[str, np.ndarray]):
    """The fake-quant IR `qcc quantize` calibrates (one batch of calibration data)."""
    import qcc
    from qcc.frontends.onnx import load_onnx

    module = load_onnx(str(model) if isinstance(model, Path) else model)
    return qcc.quantize(module, c.calibration_set(feeds, 1), progress=False).module


def bench(label: str, model, feeds: dict[str, np.ndarray], args) -> list[c.Row]:
    c.progress(f"{label}: import, compile, calibrate")
    plan = c.qcc_plan(model, {k: v.shape for k, v in feeds.items()})
    fq_plan = c.qcc_plan(fake_quant_module(model, feeds))
    sess = c.ort_session(model, args.threads)
    want = sess.run(None, feeds)
    diff = c.max_diff(c.qcc_execute(plan, feeds), sess, want)
    fq_diff = c.max_diff(c.qcc_execute(fq_plan, feeds), sess, want)
    c.progress(f"{label}: timing")
    with c.thread_limits(args.threads):
        ms = c.interleaved({"fp32": lambda: c.qcc_execute(plan, feeds),
                            "fq": lambda: c.qcc_execute(fq_plan, feeds),
                            "ort": lambda: sess.run(None, feeds)}, args.warmup, args.runs)
    return [c.Row(label, "fp32 / ort fp32", ms["fp32"], ms["ort"], TARGET,
                  f"max|qcc - ort| {diff}"),
            c.Row(label, "fake-quant / ort fp32", ms["fq"], ms["ort"], TARGET,
                  f"max|fake-quant - ort fp32| {fq_diff}")]


def rows(args) -> list[c.Row]:
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    out: list[c.Row] = []
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        for label, build in model_cases(names, Path(tmp), args.smoke):
            model, feeds = build()
            out += bench(label, model, feeds, args)
    return out


def parser():
    p = c.arguments(__doc__)
    p.add_argument("--models", default=DEFAULT,
                   help="comma-separated subset of light_resnet50,resnet18_cifar,mobilenet_v3,"
                        "vit_tiny,bert")
    return p


def configure(argv: list[str] | None = None):
    """The options, --quick / --smoke applied."""
    return c.settle(parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = configure(argv)
    c.header("fp32 and fake-quant inference: qcc / onnxruntime fp32", args)
    c.print_rows(rows(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
