"""Calibration time against a float inference of the same batches.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/calib.py [--quick] [--batches 8]

On `qcc.testing.models.resnet18_cifar` at batch 32, after `canonicalize,qcc-fuse-bn`
(the float model calibration sees), with `--batches` batches of random 32x32 images
in an .npz file. The two sides alternate (interleaved, after warmup; medians), each
from the file to the last batch:
- calibration: `qcc-calibrate{data=FILE}` (the pass `qcc quantize` runs) on a fresh
  copy of the module with observers inserted by `qcc-insert-quant` (default config:
  IFMR activations, ARQ per-channel weights); it loads the file, compiles the plan,
  runs every batch with the observers on and turns them into fake-quant ops;
- float inference: load the same file, compile the float module's plan
  (`qcc.runtime.compile_module`) and `execute` it on every batch.
Issue 16's target for calibration / float is 1.3. Inserting the observers (a copy
of the module) is not timed. The BLAS and OpenMP pools are limited to 2 threads.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET = 1.3


def rows(args) -> list[c.Row]:
    from qcc import passes
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import compile_module
    from qcc.testing.models import resnet18_cifar

    batch = 2 if args.smoke else 32
    nbatches = 1 if args.smoke else (4 if args.quick else args.batches)
    proto = c.tiny_cnn(batch) if args.smoke else resnet18_cifar(batch=batch)
    name = proto.graph.input[0].name
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    module = load_onnx(proto)
    passes.run(module, "canonicalize,qcc-fuse-bn")
    label = f"{'tiny_cnn' if args.smoke else 'resnet18_cifar'} b{batch} x{nbatches}"
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        data = Path(tmp) / "calib.npz"
        np.savez(data, **c.calibration_set({name: c.image_batch(shape)}, nbatches))

        def infer() -> None:
            with np.load(data) as f:
                x = f[name]
            plan = compile_module(module)
            for i in range(nbatches):
                c.qcc_execute(plan, {name: x[i * batch:(i + 1) * batch]})

        observed = []

        def fresh() -> None:
            m = module.clone()
            passes.run(m, "qcc-insert-quant")
            observed.append(m)

        def calibrate() -> None:
            passes.run(observed.pop(), f'qcc-calibrate{{data="{data}"}}')

        c.progress(f"{label}: timing calibration and float inference")
        times: dict[str, list[float]] = {"calib": [], "float": []}
        with c.thread_limits(args.threads):
            for i in range(args.warmup + args.runs):
                fresh()
                ms = c.interleaved({"calib": calibrate, "float": infer}, 0, 1, gap=0.01,
                                   block=1, warm=False)
                if i >= args.warmup:
                    for k, v in ms.items():
                        times[k].append(v)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return [c.Row(label, "calibration pass / float inference", med["calib"], med["float"],
                  TARGET, "both sides include loading the .npz and compiling the plan")]


def parser():
    p = c.arguments(__doc__, runs=5, warmup=1)
    p.add_argument("--batches", type=int, default=8, help="calibration batches (of 32)")
    return p


def configure(argv: list[str] | None = None):
    """The options, --quick / --smoke applied."""
    return c.settle(parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = configure(argv)
    c.header("calibration: qcc-calibrate / float inference of the same batches", args)
    c.print_rows(rows(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
