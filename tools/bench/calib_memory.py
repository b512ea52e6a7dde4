"""Peak memory of calibration against plain float inference.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/calib_memory.py

On the ResNet-18 for 32x32 inputs (qcc.testing.models.resnet18_cifar) at batch 32:
the peak of Python/numpy allocations (tracemalloc, which numpy reports to) above
the loaded model while (a) running one float batch and (b) calibrating 256
samples (8 batches, default observers: IFMR histograms). The ratio b/a is what
the post-training issue bounds (at most 1.5): observers keep statistics, never
tensors, and the runtime frees every value after its last use.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from qcc import ir, passes
from qcc.frontends.onnx import load_onnx
from qcc.passes.calibrate import calibrate
from qcc.passes.insert_quant import insert_observers
from qcc.quant.calib_data import model_batches
from qcc.quant.config import resolve
from qcc.runtime import compile_module, execute
from qcc.testing.models import resnet18_cifar


def peak_above_baseline(fn) -> tuple[float, float]:
    """(peak MiB above the allocations live before `fn`, seconds)."""
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    t = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t
    return (tracemalloc.get_traced_memory()[1] - base) / 2**20, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=256)
    args = ap.parse_args()
    module = load_onnx(resnet18_cifar(batch=args.batch))
    passes.run(module, "canonicalize,qcc-fuse-bn")
    rng = np.random.default_rng(0)
    name = ir.io_names(ir.main_func(module))[0][0]
    data = {name: rng.standard_normal((args.samples, 3, 32, 32)).astype(np.float32)}
    batches = list(model_batches(module, data))
    plan = compile_module(module)
    tracemalloc.start()
    infer_mib, infer_s = peak_above_baseline(lambda: execute(plan, batches[0]))
    insert_observers(module, resolve(module, None))
    calib_mib, calib_s = peak_above_baseline(lambda: calibrate(module, batches))
    tracemalloc.stop()
    print(f"resnet18_cifar batch {args.batch}, {len(batches) * args.batch} calibration samples")
    print(f"float inference, one batch: peak {infer_mib:8.1f} MiB  ({infer_s:.2f} s)")
    print(f"calibration, all batches:   peak {calib_mib:8.1f} MiB  ({calib_s:.2f} s)")
    print(f"ratio calibration / inference: {calib_mib / infer_mib:.2f} (bound 1.5)")


if __name__ == "__main__":
    main()
