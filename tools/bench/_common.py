"""Helpers shared by the benchmark scripts of tools/bench/ (issue 16's ratios).

What every script needs: the report of the CPU (model name, the features the kernels
dispatch on) and of the BLAS/OpenMP libraries (threadpoolctl), an onnxruntime session
on the same threads as qcc, interleaved timing (qcc and onnxruntime alternate, after a
warmup; medians are reported), the models (no download: the onnx wheel's
light_resnet50, qcc.testing.models, torchvision/timm/transformers models with random
weights exported here with torch.onnx.export) and the one table all scripts print.

Only qcc's public API is used: qcc.frontends.onnx.load_onnx, qcc.runtime
(compile_module / execute / run, isa), qcc.quantize and the `qcc quantize` command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2
LIGHT_RESNET50 = "backend/test/data/light/light_resnet50.onnx"
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni")
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ---------------------------------------------------------------- the machine

def cpu_report() -> list[str]:
    """The CPU's name, core count and the features qcc's kernels choose between."""
    name, flags = "unknown CPU", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    have = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in FLAGS)
    lines = [f"cpu: {name}, {os.cpu_count()} logical CPUs; {have}"]
    try:
        from qcc.runtime import int8, isa

        cur = isa.current()
        amx = "+amx" if int8._C is not None and int8._C.amx() else ""
        lines.append(f"qcc kernels: int8 {cur.get('int8')}{amx}, float conv {cur.get('conv')}, "
                     f"blocked layout {cur.get('blocked')} "
                     f"(available: {', '.join(isa.available())}; QCC_ISA="
                     f"{os.environ.get('QCC_ISA', 'unset')})")
    except (ImportError, AttributeError) as e:
        lines.append(f"qcc kernels: instruction set unknown ({e})")
    return lines


def blas_report() -> list[str]:
    """The BLAS and OpenMP libraries loaded (after numpy, scipy and qcc's runtime)."""
    try:
        import threadpoolctl
    except ImportError:
        return ["threadpoolctl is not installed: BLAS/OpenMP libraries unknown"]
    import scipy.linalg  # noqa: F401  (scipy's BLAS too)

    import qcc.runtime  # noqa: F401  (and the runtime's OpenMP)

    lines = []
    for info in threadpoolctl.threadpool_info():
        lines.append(
            f"{info.get('user_api')}: {info.get('internal_api')} {info.get('version')} "
            f"kernel={info.get('architecture', '-')} threads={info.get('num_threads')} "
            f"({Path(info.get('filepath', '?')).name})")
    return lines or ["threadpoolctl found no BLAS or OpenMP library"]


@contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """qcc's compiled kernels on `threads` threads (qcc.runtime.set_threads, the
    count onnxruntime gets), and BLAS and OpenMP pools limited to `threads` (so that
    they do not spin against each other or against the runtime's own threads)."""
    from qcc.runtime import set_threads

    try:
        from threadpoolctl import threadpool_limits
        blas: AbstractContextManager = threadpool_limits(threads)
    except ImportError:
        blas = nullcontext()
    old = set_threads(threads)
    try:
        with blas:
            yield
    finally:
        set_threads(old)


def header(title: str, args: argparse.Namespace) -> None:
    """Print what was measured, on what: the first lines of every script."""
    print(f"# {title}")
    for line in cpu_report() + blas_report():
        print(f"# {line}")
    print(f"# threads {args.threads} per side, warmup {args.warmup}, median of {args.runs} "
          "interleaved runs")
    overrides = [k for k in OPENBLAS_VARS if k in os.environ]
    if overrides:
        print(f"# note: {', '.join(overrides)} set; run under `env -u OPENBLAS_CORETYPE -u "
              "OPENBLAS_L2_SIZE` for the BLAS kernel of this CPU")
    try:
        load = os.getloadavg()[0]
        print(f"# load average {load:.2f} at the start (timings are noisy when it is above 0)")
    except OSError:
        pass
    sys.stdout.flush()


# ---------------------------------------------------------------- timing

GAP_S = 0.05
BLOCK = 3
WARM_S = 0.02
STRICT_ENV = "QCC_BENCH_STRICT"
"""Set to 1, the sides alternate call by call after a 10 ms pause, as the bench did
before (for comparing with figures measured that way)."""


def interleaved(fns: Mapping[str, Callable[[], object]], warmup: int, runs: int,
                gap: float = GAP_S, block: int = BLOCK, warm: bool = True,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median milliseconds of each callable, the sides taking turns in blocks (a, a,
    a, b, b, b, a, ...) after `warmup` untimed rounds, so that a change of machine
    load hits every side alike; `runs` timed calls per side in all.

    Each block starts with an untimed pause of `gap` seconds and untimed calls for
    WARM_S seconds (at least one):
    onnxruntime's intra-op workers spin for tens of milliseconds after a run (on 2
    cores that spinning thread took a core from the next side: qcc's MobileNetV3 ran
    at 15-18 ms right after onnxruntime against 8-10 ms on its own), and a core
    idle for a while starts slow; then `block` timed calls run back to back, as an
    evaluation or calibration loop calls a model. `warm=False` leaves out the untimed
    call (for callables that may run only once each: block 1 then).
    `clock` times the calls (time.thread_time: the calling thread's CPU time).
    QCC_BENCH_STRICT=1 in the environment restores the old strict alternation."""
    if os.environ.get(STRICT_ENV) == "1":   # the measurement before session 5
        gap, block, warm = 0.01, 1, False
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    block = max(1, block)
    for _ in range((max(runs, 1) + block - 1) // block):
        for k, fn in fns.items():
            time.sleep(gap)
            if warm:   # untimed calls for WARM_S at least: a core idle for a while starts slow
                t0 = time.perf_counter()
                fn()
                while time.perf_counter() - t0 < WARM_S:
                    fn()
            for _ in range(block):
                t = clock()
                fn()
                times[k].append(clock() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


# ---------------------------------------------------------------- the two runtimes

def ort_session(model, threads: int = THREADS, optimize: bool = True,
                config: Mapping[str, str] | None = None):
    """onnxruntime on `threads` intra-op threads, one inter-op thread, all graph
    optimizations (`model`: a path, serialized bytes or a ModelProto; `config`:
    session config entries)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    if not isinstance(model, str | bytes | os.PathLike):
        model = model.SerializeToString()
    return ort.InferenceSession(str(model) if isinstance(model, os.PathLike) else model, opts,
                                providers=["CPUExecutionProvider"])


def qcc_plan(model, input_shapes: Mapping[str, Sequence[int]] | None = None):
    """qcc's compiled plan of an ONNX model (path or ModelProto) or of an IR module."""
    from xdsl.dialects.builtin import ModuleOp

    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import compile_module

    if isinstance(model, ModuleOp):
        return compile_module(model)
    source = str(model) if isinstance(model, os.PathLike) else model
    shapes = {k: tuple(v) for k, v in input_shapes.items()} if input_shapes else None
    return compile_module(load_onnx(source, input_shapes=shapes))


def qcc_execute(plan, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of one run of a plan, by name."""
    from qcc.runtime import execute

    out = execute(plan, feeds)
    return out[0] if isinstance(out, tuple) else out


def max_diff(got: Mapping[str, np.ndarray], sess, want: Sequence[np.ndarray]) -> str:
    """max |got - want| over the outputs, and relative to max |want| (random-weight
    models can have tiny outputs, where the absolute figure says nothing)."""
    diff = scale = 0.0
    for o, w in zip(sess.get_outputs(), want, strict=True):
        w = np.asarray(w, np.float64)
        diff = max(diff, float(np.max(np.abs(np.asarray(got[o.name], np.float64) - w))))
        scale = max(scale, float(np.max(np.abs(w))))
    return f"{diff:.2e} ({diff / scale if scale else 0.0:.1e} of max|output| {scale:.2e})"


# ---------------------------------------------------------------- the table

@dataclass
class Row:
    model: str
    what: str
    qcc: float
    ort: float
    target: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.qcc / self.ort if self.ort > 0 else float("inf")

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


COLUMNS = ("model", "what", "qcc ms", "ort ms", "ratio", "target", "ok")


def _num(v: float) -> str:
    """A time or size for the table: one decimal, three below 1 (a tiny model's
    onnxruntime run takes 0.04 ms)."""
    return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"


def table(rows: Sequence[Row]) -> str:
    """The markdown table of the rows (memory rows hold MiB and say so in `what`)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r.model} | {r.what} | {_num(r.qcc)} | {_num(r.ort)} | {r.ratio:.2f} | "
                     f"<= {r.target:g} | {'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def print_rows(rows: Sequence[Row]) -> None:
    print(table(rows))
    for r in rows:
        if r.note:
            print(f"#   {r.model}, {r.what}: {r.note}")
    sys.stdout.flush()


def arguments(doc: str, runs: int = 10, warmup: int = 2) -> argparse.ArgumentParser:
    """The options every script takes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--runs", type=int, default=runs, help="timed runs per side (median)")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed runs per side first")
    p.add_argument("--threads", type=int, default=THREADS, help="threads per side")
    p.add_argument("--quick", action="store_true", help="3 runs, 1 warmup, smaller jobs")
    p.add_argument("--smoke", action="store_true",
                   help="one tiny model, one run: checks that the script works, measures nothing")
    return p


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Apply --quick / --smoke to the run counts."""
    if args.smoke:
        args.runs, args.warmup = 1, 0
    elif args.quick:
        args.runs, args.warmup = min(args.runs, 3), min(args.warmup, 1)
    return args


def progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- models

def light_resnet50_path() -> Path:
    import onnx

    return Path(onnx.__file__).parent / LIGHT_RESNET50


def image_batch(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def import_torchvision():
    """torchvision beside the CPU torch: its compiled extension does not load, and its
    Python half needs the schemas of `torchvision::nms` / `qnms` to import (the
    trick of tests/models/_torchvision.py; nms itself is never called)."""
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018
    except (AttributeError, RuntimeError):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(lib)
    return importlib.import_module("torchvision")


_LIBRARIES: list[object] = []


def export_torch(model, example: Sequence[np.ndarray], names: Sequence[str], path: Path) -> Path:
    """torch.onnx.export with the TorchScript exporter (opset 14), static shapes."""
    import warnings

    import torch

    torch.manual_seed(0)
    args = tuple(torch.from_numpy(a) for a in example)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-level branches
        torch.onnx.export(model.eval(), args, str(path), input_names=list(names),
                          output_names=["output"], dynamo=False, opset_version=14)
    return path


def mobilenet_v3(path: Path, batch: int, size: int = 224) -> tuple[Path, dict[str, np.ndarray]]:
    """torchvision mobilenet_v3_large, random weights (seed 0)."""
    import torch

    tv = import_torchvision()
    torch.manual_seed(0)
    x = image_batch((batch, 3, size, size))
    return export_torch(tv.models.mobilenet_v3_large(), [x], ["x"], path), {"x": x}


def resnet50(path: Path, batch: int, size: int = 224) -> tuple[Path, dict[str, np.ndarray]]:
    """torchvision resnet50, random weights (seed 0)."""
    import torch

    tv = import_torchvision()
    torch.manual_seed(0)
    x = image_batch((batch, 3, size, size))
    return export_torch(tv.models.resnet50(), [x], ["x"], path), {"x": x}


def vit_tiny(path: Path, batch: int, size: int = 224) -> tuple[Path, dict[str, np.ndarray]]:
    """timm vit_tiny_patch16_224, random weights (seed 0), no download."""
    import torch

    import_torchvision()
    timm = importlib.import_module("timm")
    torch.manual_seed(0)
    x = image_batch((batch, 3, size, size))
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    return export_torch(model, [x], ["x"], path), {"x": x}


def bert_encoder(path: Path, batch: int, seq: int = 128, layers: int = 4, hidden: int = 256
                 ) -> tuple[Path, dict[str, np.ndarray]]:
    """A BERT encoder from a small random config (transformers, no download): input_ids
    and attention_mask, `layers` layers of width `hidden`, 4 heads."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = importlib.import_module("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=1000, hidden_size=hidden,
                                     num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=4 * hidden, max_position_embeddings=seq)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = transformers.BertModel(config, add_pooling_layer=False)

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    rng = np.random.default_rng(0)
    ids = rng.integers(2, 1000, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq * 3 // 4:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    return export_torch(Encoder(), [ids, mask], list(feeds), path), feeds


def calibration_set(feeds: Mapping[str, np.ndarray], batches: int, seed: int = 1
                    ) -> dict[str, np.ndarray]:
    """`batches` batches like `feeds`, stacked on the first axis: floats drawn anew,
    integer inputs (token ids, masks) repeated."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in feeds.items():
        if np.issubdtype(v.dtype, np.floating):
            out[k] = rng.standard_normal((batches * v.shape[0], *v.shape[1:])).astype(v.dtype)
        else:
            out[k] = np.concatenate([v] * batches)
    return out


def tiny_cnn(batch: int = 2):
    """A 2-conv CNN on 3x16x16 (the --smoke model: every script runs it in seconds)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32),
                                       name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["output"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 10])],
        [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 8, 3, 3), init("b2", 8),
         init("w3", 10, 8), init("b3", 10)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def smoke_model(batch: int = 2) -> tuple[Any, dict[str, np.ndarray]]:
    """tiny_cnn and one batch of inputs."""
    return tiny_cnn(batch), {"x": image_batch((batch, 3, 16, 16))}
