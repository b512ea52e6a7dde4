"""Every ratio of issue 16 in one run, as one table.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/run_all.py [--quick] [--all-isa]

Runs, in this order and in one process (the memory and whole-job benches start
their own subprocesses): runtime_fp32.py (fp32 and fake-quant against onnxruntime
fp32: light_resnet50, ResNet-18 32x32 batch 32, MobileNetV3-large, ViT-tiny),
int8.py (qcc's int8 deploy model against onnxruntime's int8 QDQ model, with the
int8 path qcc took; `--all-isa` adds each forced path), calib.py (calibration
against float inference), quantize_job.py (`qcc quantize` against onnxruntime's
quant_pre_process + quantize_static: ResNet-50 with 64 224x224 images, a BERT
encoder) and memory.py (peak RSS on light_resnet50). Each script also runs alone
and documents what it measures. `--quick` takes fewer runs and smaller jobs;
`--smoke` runs every script once on a tiny model (a check that they work, not a
measurement). The CPU (name, avx2/fma/avx512f/avx512_vnni), qcc's kernel paths and
the BLAS/OpenMP libraries are printed first; timings are medians of interleaved
runs, 2 threads per side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import calib  # noqa: E402
import int8  # noqa: E402
import memory  # noqa: E402
import quantize_job  # noqa: E402
import runtime_fp32  # noqa: E402

SCRIPTS = {"fp32": runtime_fp32, "int8": int8, "calib": calib, "job": quantize_job,
           "memory": memory}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs, smaller jobs")
    p.add_argument("--smoke", action="store_true", help="one tiny model, one run each")
    p.add_argument("--all-isa", action="store_true", help="int8: every forced QCC_ISA path")
    p.add_argument("--only", default=",".join(SCRIPTS),
                   help=f"comma-separated subset of {','.join(SCRIPTS)}")
    p.add_argument("--threads", type=int, default=c.THREADS)
    args = p.parse_args(argv)
    flags = ["--threads", str(args.threads)] + (["--quick"] if args.quick else []) + (
        ["--smoke"] if args.smoke else [])
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SCRIPTS]
    if unknown:
        p.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    first = SCRIPTS[only[0]].configure(flags) if only else argparse.Namespace(
        threads=args.threads, warmup=0, runs=0)
    c.header("issue 16: qcc / onnxruntime, every ratio measured in this run", first)
    rows: list[c.Row] = []
    failed: list[str] = []
    t = time.perf_counter()
    for key in only:
        extra = ["--all-isa"] if key == "int8" and args.all_isa else []
        sub = SCRIPTS[key].configure(flags + extra)
        c.progress(f"== {key}: {SCRIPTS[key].__file__}")
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        try:
            got = SCRIPTS[key].rows(sub)
        except (Exception, SystemExit) as e:  # one bench failing must not lose the others
            failed.append(f"{key}: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}")
            c.progress(f"== {key} FAILED: {e}")
            continue
        for r in got:
            c.progress(f"{r.model} | {r.what} | {r.qcc:.1f} | {r.ort:.1f} | {r.ratio:.2f}")
        rows += got
        c.progress(f"== {key}: {time.perf_counter() - t0:.1f} s wall, "
                   f"{_cpu_seconds() - cpu0:.1f} s CPU (with subprocesses)")
    c.print_rows(rows)
    ok = sum(r.ok for r in rows)
    print(f"# {ok} of {len(rows)} within target; {time.perf_counter() - t:.0f} s")
    for f in failed:
        print(f"# FAILED {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
