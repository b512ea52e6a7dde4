"""fp32 inference time of qcc's runtime against onnxruntime, both on 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/runtime_fp32.py [--runs 10]

(Unset the OPENBLAS_* overrides so OpenBLAS picks the kernel for this CPU; the
script prints the BLAS libraries and kernels threadpoolctl reports.)

Models: `light_resnet50` from the installed onnx wheel
(`onnx/backend/test/data/light/light_resnet50.onnx`, weights made by
ConstantOfShape) at 1x3x224x224, and `qcc.testing.models.resnet18_cifar` at batch
1 and 32. qcc's time excludes import and planning: the module is imported and
`qcc.runtime.compile_module` is called once, then `qcc.runtime.execute(plan,
inputs)` is timed. onnxruntime runs with `intra_op_num_threads = 2`,
`inter_op_num_threads = 1`, all graph optimizations; qcc's BLAS is limited to 2
threads with threadpoolctl. Each side is warmed up (`--warmup` runs), then the
median of `--runs` runs is reported, with the largest |qcc - ort| of the outputs
(light_resnet50's weights are all 0.02, so its softmax output is uniform and its
|diff| says nothing about accuracy; tests/models checks that on real weights).
qcc is timed before the onnxruntime session exists (its pool threads spin after
a run). On a machine shared with other jobs the numbers are noisy: multithreaded
BLAS calls stall whenever one of their threads is descheduled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np

LIGHT_RESNET50 = "backend/test/data/light/light_resnet50.onnx"


def light_resnet50_path() -> Path:
    import onnx

    return Path(onnx.__file__).parent / LIGHT_RESNET50


def blas_report() -> list[str]:
    try:
        import threadpoolctl
    except ImportError:
        return ["threadpoolctl is not installed: BLAS kernel unknown"]
    import scipy.linalg  # noqa: F401  (load scipy's BLAS too, the one the kernels use)

    lines = []
    for info in threadpoolctl.threadpool_info():
        lines.append(
            f"{info.get('user_api')}: {info.get('internal_api')} {info.get('version')} "
            f"kernel={info.get('architecture', '-')} threads={info.get('num_threads')} "
            f"({Path(info.get('filepath', '?')).name})")
    return lines or ["threadpoolctl found no BLAS or OpenMP library"]


def blas_limit(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(threads, user_api="blas")


def median_ms(fn: Callable[[], object], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench(label: str, model, batch: int, args) -> dict:
    import onnxruntime as ort

    from qcc import ir
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import compile_module, execute

    source = str(model) if isinstance(model, Path) else model  # a path or a ModelProto
    proto = onnx_proto(source)
    inp = proto.graph.input[0]
    shape = [batch] + [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds = {inp.name: x}

    # qcc first, so that onnxruntime's spinning pool threads cannot steal its CPUs
    t = time.perf_counter()
    plan = compile_module(load_onnx(source, input_shapes={inp.name: shape}))
    prepare = time.perf_counter() - t
    assert [tuple(t.get_shape()) for t in plan.input_types] == [tuple(shape)]
    assert ir.numpy_dtype(plan.input_types[0].element_type) == np.float32
    with blas_limit(args.threads):
        qcc_ms = median_ms(lambda: execute(plan, feeds), args.warmup, args.runs)
        got = execute(plan, feeds)[0]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    ort_ms = median_ms(lambda: sess.run(None, feeds), args.warmup, args.runs)
    want = sess.run(None, feeds)
    diff = max(float(np.max(np.abs(got[o.name] - w)))
               for o, w in zip(sess.get_outputs(), want, strict=True))
    return {"model": label, "batch": batch, "qcc": qcc_ms, "ort": ort_ms,
            "ratio": qcc_ms / ort_ms, "diff": diff, "prepare": prepare}


def onnx_proto(source):
    import onnx

    return onnx.load(source) if isinstance(source, str) else source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="timed runs per side (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="light_resnet50,resnet18_cifar",
                   help="comma-separated subset of light_resnet50,resnet18_cifar")
    p.add_argument("--batches", default="1,32", help="resnet18_cifar batch sizes")
    args = p.parse_args(argv)

    overrides = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if overrides:
        print(f"note: {', '.join(overrides)} set; run under "
              "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for the native BLAS kernel",
              file=sys.stderr)
    print(f"threads: {args.threads}, warmup {args.warmup}, median of {args.runs} runs, "
          f"{os.cpu_count()} CPUs")
    for line in blas_report():
        print("  " + line)

    from qcc.testing.models import resnet18_cifar

    wanted = {m.strip() for m in args.models.split(",") if m.strip()}
    cases: list[tuple[str, object, int]] = []
    if "light_resnet50" in wanted:
        cases.append(("light_resnet50", light_resnet50_path(), 1))
    if "resnet18_cifar" in wanted:
        for b in (int(v) for v in args.batches.split(",")):
            cases.append(("resnet18_cifar", resnet18_cifar(batch=b), b))

    rows = []
    for label, model, batch in cases:
        r = bench(label, model, batch, args)
        rows.append(r)
        print(f"  done {label} batch {batch} (import+compile {r['prepare']:.2f} s)",
              file=sys.stderr, flush=True)

    head = (f"{'model':<16} {'batch':>5} {'qcc ms/run':>11} {'ort ms/run':>11} "
            f"{'qcc/ort':>8} {'max|diff|':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<16} {r['batch']:>5} {r['qcc']:>11.2f} {r['ort']:>11.2f} "
              f"{r['ratio']:>8.2f} {r['diff']:>10.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
