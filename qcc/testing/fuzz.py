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

`run_cases(fmt, n, seed)` returns a `Summary`; `tools/fuzz.py` prints one. The seeds
and the mutations are in `fuzz_inputs`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from qcc.testing.fuzz_inputs import (
    CFG_SEED,
    ROOT,
    Seeds,
    make_seeds,
    mutate_bytes,
    mutate_npz,
    mutate_numbers,
    mutate_onnx,
    mutate_text,
    npz_bytes,
)

FORMATS = ("onnx", "mlir", "cfg", "npz")
CASE_SECONDS = 30

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
