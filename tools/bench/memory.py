"""Peak memory (RSS) of running light_resnet50: qcc's runtime against onnxruntime.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/memory.py [--quick]

Each side runs in its own fresh Python process: import its runtime, load
`light_resnet50` from the installed onnx wheel (1x3x224x224), prepare it (qcc:
`load_onnx` + `compile_module`; onnxruntime: an InferenceSession with all graph
optimizations, 2 intra-op threads) and run it `--runs` times on one random image;
then the process reports its peak resident set size (VmHWM in
/proc/self/status: `ru_maxrss` would also do, but Linux carries it over fork and
exec, so a child of a big parent would report the parent's peak), which includes the
interpreter and the imported libraries. The sides alternate; the median over `--repeats` pairs is kept. Issue
16's target for qcc / onnxruntime is 1.5. The table's "ms" columns hold MiB here.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET = 1.5


def child(side: str, model: Path, runs: int, threads: int) -> float:
    """Peak RSS in MiB of loading, preparing and running `model` `runs` times."""
    if side == "qcc":
        from qcc.frontends.onnx import load_onnx
        from qcc.runtime import compile_module, execute

        with c.thread_limits(threads):
            module = load_onnx(str(model))
            plan = compile_module(module)
            del module
            name, shape = model_input(model)
            x = c.image_batch(shape)
            for _ in range(runs):
                execute(plan, {name: x})
    else:
        sess = c.ort_session(model, threads)
        inp = sess.get_inputs()[0]
        x = c.image_batch(tuple(inp.shape))
        for _ in range(runs):
            sess.run(None, {inp.name: x})
    return peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status, else ru_maxrss. (On Linux
    ru_maxrss survives fork and exec: a child started by a big parent reports at
    least the parent's peak. VmHWM belongs to the address space exec made.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_input(model: Path) -> tuple[str, tuple[int, ...]]:
    """The name and static shape of the model's (first) input."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    return inp.name, tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)


def _run_child(side: str, model: Path, args) -> float:
    cmd = [sys.executable, __file__, "--child", side, str(model), "--runs", str(args.runs),
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory.py: the {side} run failed:\n{done.stderr.strip()[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["mib"])


def rows(args) -> list[c.Row]:
    if not args.smoke:
        return _rows(c.light_resnet50_path(), "light_resnet50 b1", args)
    import onnx

    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        model = Path(tmp) / "tiny_cnn.onnx"
        onnx.save(c.tiny_cnn(2), str(model))
        return _rows(model, "tiny_cnn b2", args)


def _rows(model: Path, label: str, args) -> list[c.Row]:
    peaks: dict[str, list[float]] = {"qcc": [], "ort": []}
    for i in range(args.repeats):
        for side in ("qcc", "ort"):
            c.progress(f"{label}: {side} process {i + 1}/{args.repeats}")
            peaks[side].append(_run_child(side, model, args))
    return [c.Row(label, "peak RSS, MiB (not ms)", float(np.median(peaks["qcc"])),
                  float(np.median(peaks["ort"])), TARGET,
                  f"whole process (interpreter, libraries, model), {args.runs} runs each")]


def parser():
    p = c.arguments(__doc__, runs=3, warmup=0)
    p.add_argument("--repeats", type=int, default=3, help="process pairs (median)")
    p.add_argument("--child", nargs=2, metavar=("SIDE", "MODEL"),
                   help="(internal) run one side and print its peak RSS as JSON")
    return p


def configure(argv: list[str] | None = None):
    """The options, --quick / --smoke applied (one process pair, one run)."""
    args = parser().parse_args(argv)
    if args.smoke or args.quick:
        args.repeats, args.runs = 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = configure(argv)
    if args.child:
        side, model = args.child
        print(json.dumps({"mib": child(side, Path(model), args.runs, args.threads)}))
        return 0
    c.header("memory: peak RSS of qcc / onnxruntime running light_resnet50", args)
    c.print_rows(rows(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
