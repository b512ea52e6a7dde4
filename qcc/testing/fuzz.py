"""Fuzzing qcc's commands with broken input (issue 10).

Four formats, each mutated in its bytes and in its structure from valid seeds:

- `onnx`: the digits example and a small Conv/Relu/Gemm model -> `qcc import`,
  `qcc run`, now and then `qcc quantize`;
- `mlir`: a small module and the lit test cases, half of the cases with only
  numbers changed (so that they parse and reach verifiers, passes and kernels)
  -> `qcc-opt` (random pipelines, some malformed), `qcc run`;
- `cfg`: the simplified config -> `qcc config`, now and then `qcc quantize`;
- `npz`: calibration / input data -> `qcc run`, `qcc quantize` (as `--calib` or
  `--eval`).

Every case runs in its own folder, in-process (`main(argv)` of `qcc` or `qcc-opt`),
inside worker processes that run many cases each, so a segfault or an abort in
the compiled runtime is seen as the death of the worker (the case it was running
is reported, and a new worker goes on with the next case). A case fails on:

- `traceback`: an exception escaped `main`, or "Traceback" was printed;
- `status`: an exit status other than 0 (done), 1 (user error), 2 (usage);
- `crash`: the worker died (signal or abort);
- `hang`: the case ran past its time limit;
- `leftover`: a failed run left a file behind (its folder must be as it was), or
  any run left a temporary file in its folder or in the system's temporary folder.

`run_cases(fmt, n, seed)` returns a `Summary`; `tools/fuzz.py` prints one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMATS = ("onnx", "mlir", "cfg", "npz")
ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 30

CFG_SEED = """batch_num: 2
activation_offset: true
skip_layers: "fc"
skip_layer_types: "InnerProduct"
do_fusion: true
skip_fusion_layers: "conv"
do_equalization: false
common_config {
  arq_quantize { channel_wise: true quant_bits: 8 }
  ifmr_quantize { search_range_start: 0.7 search_range_end: 1.3 search_step: 0.01
                  max_percentile: 0.999999 min_percentile: 0.999999 asymmetric: true }
}
override_layer_types { layer_type: "Gemm" calibration_config { hfmg_quantize { num_of_bins: 4096 } } }
override_layer_configs { layer_name: "conv" calibration_config { kl_quantize { } } }
"""

PIPELINES = ("canonicalize", "qcc-fuse-bn", "qcc-equalize", "canonicalize,qcc-fuse-bn",
             "qcc-fuse-bn{skip_layers=\"conv\"}", "qcc-calibrate{batch_num=abc}",
             "qcc-fuse-bn{", "qcc-fuse", "canonicalize,,", "qcc-balance{alpha=0.9}",
             "qcc-insert-quant", "qcc-realize-int8", "qcc-lower-ascend")


@dataclass
class Failure:
    case: int
    kind: str
    argv: list[str]
    detail: str


@dataclass
class Summary:
    fmt: str
    cases: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        kinds: dict[str, int] = {}
        for f in self.failures:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        return (f"{self.fmt}: {self.cases} cases in {self.seconds:.1f} s; exit status "
                + ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
                + "; failures: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
                                    or "none"))


# ------------------------------------------------------------------ seeds


def _small_onnx() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
                                     "conv.weight"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.bias"),
             numpy_helper.from_array(rng.standard_normal((3, 64)).astype(np.float32),
                                     "fc.weight"),
             numpy_helper.from_array(np.array([1, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


def _small_mlir() -> str:
    from qcc import ir
    from qcc.dialects import qnn

    g = ir.Graph()
    x = g.input("x", (1, 2, 4, 4))
    w = np.linspace(-1, 1, 72, dtype=np.float32).reshape(4, 2, 3, 3)
    c = g.add(qnn.ConvOp.make(x, g.const(w, name="conv.weight"), pads=(1, 1, 1, 1),
                              name="conv"))
    r = g.add(qnn.ReluOp.make(c, name="relu"))
    f = g.add(qnn.ReshapeOp.make(r, shape=(1, 64), name="flat"))
    d = np.linspace(-0.5, 0.5, 192, dtype=np.float32).reshape(3, 64)
    y = g.add(qnn.DenseOp.make(f, g.const(d, name="fc.weight"), name="fc"))
    return ir.print_module(g.finish({"y": y}))


def _lit_chunks() -> list[str]:
    chunks = []
    for path in sorted((ROOT / "tests" / "lit").rglob("*.mlir")):
        for chunk in path.read_text().split("// -----"):
            body = "\n".join(line for line in chunk.splitlines()
                             if not line.lstrip().startswith("//"))
            if "func.func" in body and len(body) < 6000:
                chunks.append(body)
    return chunks


@dataclass
class Seeds:
    onnx: list[bytes]
    mlir: list[str]
    small_mlir: str
    x: np.ndarray  # an input of the small models, batch 8
    digits_x: np.ndarray


def make_seeds() -> Seeds:
    from qcc.examples import digits

    model, calib, _ = digits()
    with np.load(calib) as npz:
        digits_x = npz["input"][:8]
    small = _small_mlir()
    x = np.random.default_rng(2).standard_normal((8, 2, 4, 4)).astype(np.float32)
    return Seeds([Path(model).read_bytes(), _small_onnx()], [small, *_lit_chunks()], small,
                 x, digits_x)


# -------------------------------------------------------------- mutations

_TOKENS = ["{", "}", "(", ")", "<", ">", ":", ",", "=", "%", "\"", "x", "0", "-1", "1e39",
           "nan", "inf", "9999999999", "tensor", "f32", "i8", "qnn.conv", "dense", "?", "\n"]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            b += bytes([rng.randrange(256)])
        op = rng.randrange(5)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            del b[i:i + rng.randint(1, 16)]
        elif op == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 32)]
    if rng.random() < 0.1:
        b = b[:rng.randrange(len(b) + 1)]
    return bytes(b)


def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [""]
        op = rng.randrange(6)
        i = rng.randrange(len(lines))
        line = lines[i]
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(rng.randrange(len(lines) + 1), lines[rng.randrange(len(lines))])
        elif op == 2:  # a number replaced
            nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", line))
            if nums:
                m = rng.choice(nums)
                new = rng.choice(["0", "-1", "3", "65536", "1e39", "2.5", "-0.0", "nan"])
                lines[i] = line[:m.start()] + new + line[m.end():]
        elif op == 3:  # a token inserted
            k = rng.randrange(len(line) + 1)
            lines[i] = line[:k] + rng.choice(_TOKENS) + line[k:]
        elif op == 4:  # a span deleted
            k = rng.randrange(len(line) + 1)
            lines[i] = line[:k] + line[k + rng.randint(1, 12):]
        else:  # a word replaced by another word of the text
            words = re.findall(r"[A-Za-z_][\w.]*", text)
            hits = list(re.finditer(r"[A-Za-z_][\w.]*", line))
            if words and hits:
                m = rng.choice(hits)
                lines[i] = line[:m.start()] + rng.choice(words) + line[m.end():]
    return "\n".join(lines) + "\n"


def mutate_numbers(text: str, rng: random.Random) -> str:
    """One or two numbers of the text (a shape, pad, stride, group, a constant)
    changed: the IR still parses, so verifiers, passes and kernels see it."""
    nums = list(re.finditer(_NUMBER, text))
    for _ in range(rng.randint(1, 2)):
        if not nums:
            break
        m = rng.choice(nums)
        new = rng.choice(["0", "1", "2", "3", "5", "-1", "7", "64", "0.0", "nan"])
        text = text[:m.start()] + new + text[m.end():]
        nums = list(re.finditer(_NUMBER, text))
    return text


# A number of an attribute (pads, strides, groups, dense values), not of a type's
# shape (`tensor<1x2x...>`, whose change only breaks the types' agreement).
_NUMBER = r"(?<![\w%#<])-?\d+(\.\d+)?(e-?\d+)?(?![\dx])"


def mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(data)
    g = m.graph
    names = [n for node in g.node for n in node.output] + [i.name for i in g.input] + \
        [t.name for t in g.initializer]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        node = rng.choice(g.node) if len(g.node) else None
        if op == 0 and node is not None and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(names + ["nowhere", ""])
        elif op == 1 and node is not None:
            g.node.remove(node)
        elif op == 2 and len(g.node) > 1:
            i, j = rng.randrange(len(g.node)), rng.randrange(len(g.node))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[j])
            g.node[i].CopyFrom(b)
            g.node[j].CopyFrom(a)
        elif op == 3 and node is not None and node.attribute:
            attr = rng.choice(node.attribute)
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, -1, 7, 1 << 20])
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([0, -1, 2, 1 << 20])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([0.0, -1.0, float("nan"), 1e30])
        elif op == 4 and node is not None:
            node.op_type = rng.choice(["Relu", "Conv", "Gemm", "Add", "Softmax", "Nope",
                                       "Reshape", "MaxPool", "Concat", "Transpose"])
        elif op == 5 and len(g.initializer):
            t = rng.choice(g.initializer)
            arr = numpy_helper.to_array(t).copy()
            choice = rng.randrange(4)
            if choice == 0 and arr.size and arr.dtype.kind == "f":
                arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf])
            elif choice == 1:
                arr = arr.reshape(-1)[:max(0, arr.size - rng.randint(1, 4))]
            elif choice == 2:
                arr = arr.astype(rng.choice([np.float64, np.int64, np.float16, np.int8]))
            else:
                arr = arr.reshape(-1)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
        elif op == 6 and len(g.input):
            dims = g.input[0].type.tensor_type.shape.dim
            if len(dims):
                d = dims[rng.randrange(len(dims))]
                if rng.random() < 0.5:
                    d.dim_value = rng.choice([0, 1, 3, 1000])
                else:
                    d.dim_param = rng.choice(["N", "batch", "?"])
        elif op == 7 and len(g.input):
            g.input[0].type.tensor_type.elem_type = rng.choice([0, 2, 6, 7, 9, 10, 11, 16])
        elif op == 8:
            m.opset_import[0].version = rng.choice([1, 7, 9, 13, 17, 21, 99])
        elif op == 9 and len(g.output):
            if rng.random() < 0.5:
                g.output[0].name = rng.choice(names + ["nowhere"])
            else:
                g.node.append(helper.make_node(rng.choice(["Relu", "Add", "Identity"]),
                                               [rng.choice(names)] * rng.randint(1, 2),
                                               [rng.choice(names + ["extra"])]))
    return m.SerializeToString()


def mutate_npz(arrays: dict[str, np.ndarray], rng: random.Random) -> dict[str, np.ndarray]:
    out = dict(arrays)
    key = rng.choice(list(out))
    a = out[key]
    op = rng.randrange(9)
    if op == 0:
        out[key] = a.astype(rng.choice([np.int64, np.float64, np.float16, np.bool_, np.uint8,
                                        np.complex64]))
    elif op == 1:
        out[key] = a.reshape(-1)[: a.size // 2] if rng.random() < 0.5 else a[:, :1]
    elif op == 2:
        out[rng.choice(["y", "labels", "input ", "X"])] = a
        if rng.random() < 0.5:
            del out[key]
    elif op == 3:
        b = a.copy()
        b[...] = rng.choice([np.nan, np.inf, -np.inf, 1e38, 0.0])
        out[key] = b
    elif op == 4:
        out[key] = a[:rng.choice([0, 1])]
    elif op == 5:
        out[key] = np.asarray(a.reshape(-1)[0]) if a.size else np.asarray(1.0)
    elif op == 6:
        b = a.copy()
        b.reshape(-1)[rng.randrange(a.size)] = np.nan
        out[key] = b
    elif op == 7:
        out["labels"] = rng.choice([np.arange(len(a)), np.zeros((len(a), 2)),
                                    np.array(["a"] * len(a))])
    else:
        out[key] = np.concatenate([a, a[:1]])[:, ...]
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    index: int
    files: dict[str, bytes]
    argv: list[str]  # first element "qcc" or "qcc-opt"


def make_case(fmt: str, index: int, seed: int, seeds: Seeds) -> Case:
    rng = random.Random(f"{fmt}:{seed}:{index}")
    files: dict[str, bytes] = {}
    roll = rng.random()
    if fmt == "onnx":
        base = rng.choice(seeds.onnx)
        data = mutate_bytes(base, rng) if rng.random() < 0.5 else mutate_onnx(base, rng)
        files["m.onnx"] = data
        digits_like = base is seeds.onnx[0]
        x = seeds.digits_x if digits_like else seeds.x
        files["x.npz"] = npz_bytes({"input" if digits_like else "x": x[:1]})
        files["c.npz"] = npz_bytes({"input" if digits_like else "x": x})
        if roll < 0.5:
            argv = ["qcc", "import", "m.onnx", "-o", "out.mlir"]
        elif roll < 0.9:
            argv = ["qcc", "run", "m.onnx", "--inputs", "x.npz", "-o", "out.npz"]
        else:
            argv = ["qcc", "quantize", "m.onnx", "--calib", "c.npz", "-o", "out"]
    elif fmt == "mlir":
        running = roll >= 0.7
        source = seeds.small_mlir if running or rng.random() < 0.5 else rng.choice(seeds.mlir)
        text = mutate_numbers(source, rng) if rng.random() < 0.6 else mutate_text(source, rng)
        data = text.encode()
        if rng.random() < 0.1:
            data = mutate_bytes(data, rng)
        files["m.mlir"] = data
        files["x.npz"] = npz_bytes({"x": seeds.x[:1]})
        if not running:
            pipeline = rng.choice(PIPELINES[:5] if rng.random() < 0.8 else PIPELINES)
            argv = ["qcc-opt", "m.mlir", "-p", pipeline, "-o", "out.mlir"]
        else:
            argv = ["qcc", "run", "m.mlir", "--inputs", "x.npz", "-o", "out.npz"]
    elif fmt == "cfg":
        text = mutate_text(CFG_SEED, rng)
        data = text.encode() if rng.random() < 0.8 else mutate_bytes(text.encode(), rng)
        files["q.cfg"] = data
        files["m.mlir"] = seeds.small_mlir.encode()
        files["c.npz"] = npz_bytes({"x": seeds.x})
        if roll < 0.85:
            argv = ["qcc", "config", "m.mlir", "--config", "q.cfg", "-o", "quant.json"]
        else:
            argv = ["qcc", "quantize", "m.mlir", "--calib", "c.npz", "--config", "q.cfg",
                    "-o", "out"]
    else:
        files["m.mlir"] = seeds.small_mlir.encode()
        good = {"x": seeds.x}
        data = npz_bytes(mutate_npz(good, rng)) if rng.random() < 0.7 else mutate_bytes(
            npz_bytes(good), rng)
        files["d.npz"] = data
        files["c.npz"] = npz_bytes(good)
        if roll < 0.5:
            files["d.npz"] = npz_bytes(mutate_npz({"x": seeds.x[:1]}, rng)) \
                if rng.random() < 0.7 else mutate_bytes(npz_bytes({"x": seeds.x[:1]}), rng)
            argv = ["qcc", "run", "m.mlir", "--inputs", "d.npz", "-o", "out.npz"]
        elif roll < 0.8:
            argv = ["qcc", "quantize", "m.mlir", "--calib", "d.npz", "-o", "out"]
        else:
            argv = ["qcc", "quantize", "m.mlir", "--calib", "c.npz", "--eval", "d.npz",
                    "-o", "out"]
    return Case(index, files, argv)


_HANG = "qcc fuzz: case time limit"


def _alarm(signum, frame):
    raise TimeoutError(_HANG)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_case(case: Case, folder: Path, system_tmp: Path) -> dict:
    """Run one case in-process in `folder` (created); a dict describing the result."""
    from qcc.tools import cli, opt

    folder.mkdir(parents=True)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    before = _listing(folder)
    main = cli.main if case.argv[0] == "qcc" else opt.main
    out, err = io.StringIO(), io.StringIO()
    result: dict = {"case": case.index, "argv": case.argv}
    cwd = os.getcwd()
    os.chdir(folder)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                _quiet_warnings():
            rc = main(case.argv[1:])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except TimeoutError as e:
        rc, result["kind"] = -1, "hang" if e.args == (_HANG,) else "traceback"
        result["detail"] = traceback.format_exc()[-3000:]
    except BaseException:  # noqa: BLE001 - anything escaping main is the failure we look for
        rc, result["kind"] = -1, "traceback"
        result["detail"] = traceback.format_exc()[-3000:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    result["rc"] = rc
    stderr = err.getvalue()
    result["stderr"] = stderr[-500:]
    if "kind" not in result:
        if "Traceback" in stderr or "Traceback" in out.getvalue():
            result["kind"], result["detail"] = "traceback", stderr[-3000:]
        elif rc not in (0, 1, 2):
            result["kind"], result["detail"] = "status", f"exit status {rc}: {stderr[-500:]}"
        else:
            after = _listing(folder)
            temps = [p for p in after if Path(p).name.startswith(".")]
            if rc != 0 and after != before:
                result["kind"] = "leftover"
                result["detail"] = f"failed run changed its folder: {sorted(set(after) ^ set(before))}"
            elif temps:
                result["kind"], result["detail"] = "leftover", f"temporary files: {temps}"
            elif any(system_tmp.iterdir()):
                result["kind"] = "leftover"
                result["detail"] = f"system temp: {_listing(system_tmp)}"
    for p in list(system_tmp.iterdir()):
        _remove(p)
    _remove(folder)
    return result


@contextlib.contextmanager
def _quiet_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _remove(p: Path) -> None:
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def worker(fmt: str, seed: int, start: int, stop: int, workdir: Path) -> None:
    """Run cases [start, stop) in this process, one JSON line per case on stdout
    ("start" before the case runs, the result after)."""
    system_tmp = workdir / "systmp"
    system_tmp.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(system_tmp)
    seeds = make_seeds()
    emit = sys.__stdout__
    assert emit is not None
    for i in range(start, stop):
        case = make_case(fmt, i, seed, seeds)
        print(json.dumps({"start": i, "argv": case.argv}), file=emit, flush=True)
        if os.environ.get("QCC_FUZZ_ABORT_AT") == str(i):  # the harness's own test
            os.abort()
        result = run_case(case, workdir / f"case{i}", system_tmp)
        print(json.dumps(result), file=emit, flush=True)


def run_cases(fmt: str, n: int, seed: int = 0, workdir: Path | None = None,
              jobs: int = 1, progress=None) -> Summary:
    """Run cases 0..n-1 of `fmt` in worker processes; restart after a crash."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    t0 = time.monotonic()
    summary = Summary(fmt)
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="qcc-fuzz-")) if workdir is None else workdir
    next_case = 0
    try:
        while next_case < n:
            next_case = _one_worker(fmt, seed, next_case, n, base, summary, progress)
    finally:
        if own:
            _remove(base)
    summary.seconds = time.monotonic() - t0
    return summary


def _one_worker(fmt, seed, start, stop, base: Path, summary: Summary, progress) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    code = ("import sys; from pathlib import Path; from qcc.testing.fuzz import worker; "
            f"worker({fmt!r}, {seed}, {start}, {stop}, Path({str(base / f'w{start}')!r}))")
    base.mkdir(parents=True, exist_ok=True)
    log = base / f"w{start}.stderr"
    with open(log, "w") as err:  # a file, not a pipe: a chatty worker never blocks
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
    assert proc.stdout is not None
    current: dict | None = None
    deadline = [time.monotonic() + CASE_SECONDS * 3 + 60]

    def watchdog():
        import threading

        def check():
            while proc.poll() is None:
                if time.monotonic() > deadline[0]:
                    proc.kill()
                    return
                time.sleep(0.5)
        threading.Thread(target=check, daemon=True).start()

    watchdog()
    for line in proc.stdout:
        msg = json.loads(line)
        if "start" in msg:
            current = msg
            deadline[0] = time.monotonic() + CASE_SECONDS * 2 + 10
            continue
        current = None
        summary.cases += 1
        rc = str(msg["rc"])
        summary.statuses[rc] = summary.statuses.get(rc, 0) + 1
        if "kind" in msg:
            summary.failures.append(Failure(msg["case"], msg["kind"], msg["argv"],
                                            msg.get("detail", "")))
        if progress is not None:
            progress(summary)
    proc.wait()
    stderr = log.read_text(errors="replace")
    if current is None:
        if proc.returncode != 0:
            raise RuntimeError(f"fuzz worker failed outside a case: {stderr[-2000:]}")
        return stop
    summary.cases += 1
    timed_out = time.monotonic() > deadline[0]
    kind = "hang" if timed_out else "crash"
    summary.statuses[kind] = summary.statuses.get(kind, 0) + 1
    summary.failures.append(Failure(current["start"], kind, current["argv"],
                                    f"worker ended with {proc.returncode}: {stderr[-2000:]}"))
    return current["start"] + 1
