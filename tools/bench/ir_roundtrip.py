"""Print + parse time of a module holding 25 M float parameters.

    python tools/bench/ir_roundtrip.py [--params 25000000]

Builds a chain of dense layers whose weights add up to the requested count,
prints it to a temporary .mlir (+ .weights sidecar), parses it back, checks the
weights are bit-identical, and prints the times. The hex `dialect_resources`
form (used when printing to stdout) is timed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from qcc import ir
from qcc.dialects import qnn


def build(params: int, width: int = 1000):
    rng = np.random.default_rng(0)
    g = ir.Graph()
    v = g.input("x", (1, width))
    n_layers = max(1, -(-params // (width * width + width)))
    for i in range(n_layers):
        w = g.const(rng.standard_normal((width, width), dtype=np.float32), name=f"fc{i}.weight")
        b = g.const(rng.standard_normal(width, dtype=np.float32), name=f"fc{i}.bias")
        v = g.add(qnn.DenseOp.make(v, w, b, name=f"fc{i}"))
        v = g.add(qnn.ReluOp.make(v))
    return g.finish({"y": v}), n_layers * (width * width + width)


def weights(module):
    return [ir.array_of(op) for op in module.walk() if isinstance(op, qnn.ConstantOp)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=25_000_000)
    args = ap.parse_args()
    module, count = build(args.params)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.mlir"
        t0 = time.perf_counter()
        ir.print_module(module, path)
        t1 = time.perf_counter()
        back = ir.load_module(path)
        t2 = time.perf_counter()
        size = path.stat().st_size + path.with_suffix(".weights").stat().st_size
    same = all(a.tobytes() == b.tobytes() for a, b in zip(weights(module), weights(back),
                                                          strict=True))
    t3 = time.perf_counter()
    text = ir.print_module(module)
    t4 = time.perf_counter()
    ir.parse_module(text)
    t5 = time.perf_counter()
    print(f"parameters: {count:,} float32 ({count * 4 / 2**20:.0f} MiB), files {size / 2**20:.0f} MiB")
    print(f"sidecar form: print {t1 - t0:.2f} s, parse {t2 - t1:.2f} s, "
          f"total {t2 - t0:.2f} s, weights identical: {same}")
    print(f"hex resource form (stdout): print {t4 - t3:.2f} s, parse {t5 - t4:.2f} s, "
          f"total {t5 - t3:.2f} s")


if __name__ == "__main__":
    main()
