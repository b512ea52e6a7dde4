"""The whole post-training job: `qcc quantize` against onnxruntime's quant_pre_process +
quantize_static on the same model and calibration data.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/quantize_job.py [--quick] [--models resnet50,bert]

Models (random weights, exported here with torch.onnx.export, no download):
`resnet50`, torchvision's ResNet-50 at 8x3x224x224 with 64 calibration images
(8 batches); `bert`, a 4-layer, 256-wide BERT encoder from a random transformers
config at batch 8, sequence 128, with 64 calibration sequences.

Each job runs in a fresh Python process (alternating qcc and onnxruntime, after
`--warmup` untimed pairs; medians). The process first imports its entry point and
the libraries it runs on (qcc: the CLI, `qcc.flow.quantize`, the ONNX frontend, the
runtime and the ONNX exporters; onnxruntime: `onnx` and `onnxruntime.quantization`,
which loads onnxruntime), then times the job from reading the model and the .npz to
the last file written (modules the job imports on the way are timed):
- qcc: the `qcc quantize MODEL --calib CALIB.npz -o OUT` command through its Python
  entry (`qcc.tools.cli.main`): import, fusion, observers, calibration, integer
  realization, report, the fake-quant and deploy ONNX files;
- onnxruntime: `quant_pre_process` (shape inference and the onnx optimizer) then
  `quantize_static` (QDQ, per-channel QInt8 weights, QUInt8 activations, MinMax
  calibration over the same batches), writing its QDQ model.
Issue 16's target for qcc / onnxruntime is 1.0. onnxruntime's calibration sessions
use its default thread count; qcc's BLAS/OpenMP pools are limited to `--threads`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET = 1.0
DEFAULT = "resnet50,bert"


def child(side: str, model: Path, calib: Path, out: Path, threads: int) -> float:
    """Seconds of one job, its entry point imported first."""
    if side == "qcc":
        # the job's modules and their libraries, as onnx and onnxruntime are below
        import qcc.exporters.deploy  # noqa: F401
        import qcc.exporters.onnx  # noqa: F401
        import qcc.flow.quantize  # noqa: F401
        import qcc.frontends.onnx  # noqa: F401
        import qcc.runtime  # noqa: F401
        from qcc.tools import cli

        with c.thread_limits(threads):
            t = time.perf_counter()
            status = cli.main(["quantize", str(model), "--calib", str(calib), "-o", str(out)])
            elapsed = time.perf_counter() - t
        if status not in (0, None):
            raise SystemExit(f"quantize_job.py: `qcc quantize {model}` exited with {status}")
        return elapsed
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t = time.perf_counter()
    with np.load(calib) as f:
        data = {k: f[k] for k in f.files}
    proto = onnx.load(str(model), load_external_data=False)
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    n = next(iter(data.values())).shape[0] // batch
    items = iter([{k: v[i * batch:(i + 1) * batch] for k, v in data.items()} for i in range(n)])

    class Reader:
        def get_next(self):
            return next(items, None)

    out.mkdir()
    pre = out / "pre.onnx"
    quant_pre_process(str(model), str(pre))
    quantize_static(str(pre), str(out / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return time.perf_counter() - t


def _run_child(side: str, model: Path, calib: Path, out: Path, threads: int) -> float:
    cmd = [sys.executable, __file__, "--child", side, str(model), str(calib), str(out),
           "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"quantize_job.py: the {side} job on {model.name} failed:\n"
                         f"{done.stderr.strip()[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def cases(names: list[str], tmp: Path, args):
    """(label, model path, calibration .npz)."""
    import onnx

    def save(feeds_batches: tuple[Path, dict[str, np.ndarray]], n: int, stem: str):
        path, feeds = feeds_batches
        data = tmp / f"{stem}_calib.npz"
        np.savez(data, **c.calibration_set(feeds, n))
        return path, data

    if args.smoke:
        proto, feeds = c.smoke_model(2)
        path = tmp / "tiny_cnn.onnx"
        onnx.save(proto, str(path))
        yield ("tiny_cnn b2, 2 images", *save((path, feeds), 1, "tiny"))
        return
    for name in names:
        if name == "resnet50":
            c.progress("exporting torchvision resnet50")
            yield ("resnet50 b8, 64 images",
                   *save(c.resnet50(tmp / "resnet50.onnx", 8), 8, "resnet50"))
        elif name == "bert":
            c.progress("exporting the BERT encoder")
            yield ("bert 4x256 b8 s128, 64 seqs",
                   *save(c.bert_encoder(tmp / "bert.onnx", 8), 8, "bert"))
        else:
            raise SystemExit(f"quantize_job.py: unknown model {name}; choose from {DEFAULT}")


def rows(args) -> list[c.Row]:
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    out: list[c.Row] = []
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp_:
        tmp = Path(tmp_)
        for label, model, calib in cases(names, tmp, args):
            times: dict[str, list[float]] = {"qcc": [], "ort": []}
            for i in range(args.warmup + args.runs):
                for side in ("qcc", "ort"):
                    c.progress(f"{label}: {side} job {i + 1}/{args.warmup + args.runs}")
                    s = _run_child(side, model, calib, tmp / f"{model.stem}_{side}_{i}",
                                   args.threads)
                    if i >= args.warmup:
                        times[side].append(s * 1e3)
            out.append(c.Row(label, "whole PTQ job / ort pre_process+quantize_static",
                             float(np.median(times["qcc"])), float(np.median(times["ort"])),
                             TARGET, "each job in a fresh process, imports not timed"))
    return out


def parser():
    p = c.arguments(__doc__, runs=3, warmup=0)
    p.add_argument("--models", default=DEFAULT, help=f"comma-separated subset of {DEFAULT}")
    p.add_argument("--child", nargs=4, metavar=("SIDE", "MODEL", "CALIB", "OUT"),
                   help="(internal) run one job and print its seconds as JSON")
    return p


def configure(argv: list[str] | None = None):
    """The options, --quick / --smoke applied (--quick: one job per side)."""
    args = c.settle(parser().parse_args(argv))
    if args.quick:
        args.runs = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = configure(argv)
    if args.child:
        side, model, calib, out = args.child
        seconds = child(side, Path(model), Path(calib), Path(out), args.threads)
        print(json.dumps({"seconds": seconds}))
        return 0
    c.header("the whole job: qcc quantize / onnxruntime quant_pre_process + quantize_static",
             args)
    c.print_rows(rows(args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
