"""int8 inference: qcc's int8 deploy model against onnxruntime's own int8 QDQ model.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/int8.py [--quick] [--all-isa]

The network is `qcc.testing.models.resnet18_cifar` at batch 32 (32x32 images). Both
sides quantize it on the same calibration data (`--batches` batches of random
images):
- qcc: `qcc.quantize` (the `qcc quantize` job) writes `<name>_deploy.onnx`, the
  integer graph; qcc's runtime imports it, compiles it once and runs it;
- onnxruntime: `quant_pre_process` then `quantize_static` (QDQ format, per-channel
  int8 weights, uint8 activations: onnxruntime's recommended x86 form), run with all
  graph optimizations (it fuses the QDQ pairs into QLinearConv and friends),
  `intra_op_num_threads` 2, `inter_op_num_threads` 1.
The two alternate in blocks (`_common.interleaved`, after warmup) and the medians give the ratio; issue
16's target is 1.5. A second row times onnxruntime on the same model in its exact
uint8 x int8 mode (`session.x64quantprecision=1`): on a CPU without AVX-512 VNNI
onnxruntime's default int8 kernels add pairs of products with VPMADDUBSW, which
saturates at int16 (a different, faster, inexact computation); qcc's AVX2 path is exact. The script prints which int8 path qcc's kernels took
(`qcc.runtime.isa`: avx512 = AVX-512 VNNI, avx2, scalar; "+amx": the 3x3 and
strided convs' sums on AMX tiles, where the CPU has AMX-INT8). With `--all-isa`, each
level this CPU runs is measured again in a subprocess with QCC_ISA=level (the
environment variable is read when the kernels load), and with QCC_AMX=0 (AVX-512
VNNI alone) where AMX runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TARGET = 1.5


class _Reader:
    """onnxruntime's CalibrationDataReader over the same batches qcc calibrates on."""

    def __init__(self, data: dict[str, np.ndarray], batch: int) -> None:
        n = next(iter(data.values())).shape[0] // batch
        self._items = iter([{k: v[i * batch:(i + 1) * batch] for k, v in data.items()}
                            for i in range(n)])

    def get_next(self):
        return next(self._items, None)

    def rewind(self) -> None:  # not needed by MinMax calibration
        pass


def ort_quantize(model: Path, out: Path, data: dict[str, np.ndarray], batch: int,
                 pre: Path | None = None) -> Path:
    """onnxruntime's PTQ of `model`: quant_pre_process, then quantize_static (QDQ,
    per-channel QInt8 weights, QUInt8 activations, MinMax calibration)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = pre or out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(model), str(pre))
    quantize_static(str(pre), str(out), _Reader(data, batch), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def qcc_deploy(model: Path, outdir: Path, data: dict[str, np.ndarray]) -> Path:
    """qcc's PTQ job on the same model and data; the path of its int8 deploy model."""
    import qcc

    qcc.quantize(str(model), data, None, str(outdir), progress=False)
    return outdir / f"{model.stem}_deploy.onnx"


# onnxruntime's exact uint8 x int8 mode: without it, on CPUs without VNNI its kernels
# add pairs of products with VPMADDUBSW, which saturates at int16
EXACT = {"session.x64quantprecision": "1"}


def int8_path(isa) -> str:
    """The int8 kernels' level, with "+amx" when the lanes conv's sums run on AMX."""
    from qcc.runtime import int8

    level = isa.current().get("int8", "?")
    amx = int8._C is not None and int8._C.amx()
    return f"{level}+amx" if level == "avx512" and amx else level


def time_pair(deploy: Path, ort_model: Path, feeds: dict[str, np.ndarray], args, label: str,
              exact: bool = False) -> list[c.Row]:
    """qcc running its deploy model against onnxruntime running its QDQ model (and,
    with `exact`, against onnxruntime in its exact u8s8 mode)."""
    from qcc.runtime import isa

    plan = c.qcc_plan(deploy)
    sess = c.ort_session(ort_model, args.threads)
    want = sess.run(None, feeds)
    diff = c.max_diff(c.qcc_execute(plan, feeds), sess, want)
    level = int8_path(isa)
    sides = {"qcc": lambda: c.qcc_execute(plan, feeds), "ort": lambda: sess.run(None, feeds)}
    if exact:
        sess_x = c.ort_session(ort_model, args.threads, config=EXACT)
        sides["ort_exact"] = lambda: sess_x.run(None, feeds)
    with c.thread_limits(args.threads):
        ms = c.interleaved(sides, args.warmup, args.runs)
    rows = [c.Row(label, f"int8 deploy / ort int8 QDQ [qcc {level}]", ms["qcc"],
                  ms["ort"], TARGET, f"max|qcc int8 - ort int8| {diff}: two quantizations")]
    if exact:
        rows.append(c.Row(label, f"int8 deploy / ort int8 QDQ, exact u8s8 [qcc {level}]",
                          ms["qcc"], ms["ort_exact"], TARGET,
                          "onnxruntime with session.x64quantprecision=1 (no int16 "
                          "saturation: what qcc computes on every CPU)"))
    return rows


def rows(args) -> list[c.Row]:
    import onnx

    from qcc.runtime import isa
    from qcc.testing.models import resnet18_cifar

    batch = 2 if args.smoke else 32
    nbatches = 1 if args.smoke else (2 if args.quick else args.batches)
    if args.smoke:
        proto, stem = c.tiny_cnn(batch), "tiny_cnn"
    else:
        proto, stem = resnet18_cifar(batch=batch), "resnet18_cifar"
    label = f"{stem} b{batch}"
    inp = proto.graph.input[0]
    feeds = {inp.name: c.image_batch([d.dim_value for d in inp.type.tensor_type.shape.dim])}
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp_:
        tmp = Path(tmp_)
        model = tmp / f"{stem}.onnx"
        onnx.save(proto, str(model))
        data = c.calibration_set(feeds, nbatches)
        c.progress(f"{label}: qcc quantize, onnxruntime quantize_static "
                   f"({nbatches} calibration batches)")
        deploy = qcc_deploy(model, tmp / "qcc", data)
        ort_model = ort_quantize(model, tmp / "ort_int8.onnx", data, batch)
        c.progress(f"{label}: timing")
        out = time_pair(deploy, ort_model, feeds, args, label, exact=not args.smoke)
        if not args.all_isa:
            return out
        np.savez(tmp / "feeds.npz", **feeds)
        for level in isa.available():
            c.progress(f"{label}: QCC_ISA={level} in a subprocess")
            out.append(_isa_child(level, deploy, ort_model, tmp / "feeds.npz", args, label))
        if int8_path(isa).endswith("+amx"):   # AVX-512 VNNI alone too
            c.progress(f"{label}: QCC_AMX=0 in a subprocess")
            out.append(_isa_child("avx512", deploy, ort_model, tmp / "feeds.npz", args, label,
                                  amx=False))
    return out


def _isa_child(level: str, deploy: Path, ort_model: Path, feeds: Path, args, label: str,
               amx: bool = True) -> c.Row:
    cmd = [sys.executable, __file__, "--child", str(deploy), str(ort_model), str(feeds),
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads",
           str(args.threads)]
    env = dict(os.environ, QCC_ISA=level, **({} if amx else {"QCC_AMX": "0"}))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"int8.py: the QCC_ISA={level} run failed:\n{done.stderr.strip()}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["model"] = f"{label} QCC_ISA={level}" + ("" if amx else " QCC_AMX=0")
    return c.Row(**row)


def parser():
    p = c.arguments(__doc__)
    p.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    p.add_argument("--all-isa", action="store_true",
                   help="also run every int8 path this CPU has, forced with QCC_ISA")
    p.add_argument("--child", nargs=3, metavar=("DEPLOY", "ORT_MODEL", "FEEDS"),
                   help=argparse.SUPPRESS)
    return p


def configure(argv: list[str] | None = None):
    """The options, --quick / --smoke applied."""
    return c.settle(parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = configure(argv)
    if args.child:
        deploy, ort_model, feeds = (Path(p) for p in args.child)
        with np.load(feeds) as f:
            arrays = {k: f[k] for k in f.files}
        (row,) = time_pair(deploy, ort_model, arrays, args, "child")
        print(json.dumps(row.__dict__))
        return 0
    c.header("int8: qcc int8 deploy model / onnxruntime int8 QDQ model", args)
    c.print_rows(rows(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
