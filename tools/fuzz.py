"""Fuzz qcc's commands with mutated ONNX models, textual IR, configs and .npz files.

    python tools/fuzz.py --cases 2000 --format onnx [--seed 0] [--show 5]

Prints a summary (cases, exit statuses, failures by kind) and the first failures
with their command and traceback; exit status 1 when any case failed. The cases
are those of `tests/fuzz/` (same generator, `qcc.testing.fuzz`), more of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcc.testing.fuzz import FORMATS, run_cases  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--format", choices=FORMATS + ("all",), default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=5, help="failures to print in full")
    args = ap.parse_args()
    failed = 0
    for fmt in FORMATS if args.format == "all" else (args.format,):
        def progress(s):
            if s.cases % 100 == 0:
                print(f"  {s.line()}", file=sys.stderr, flush=True)

        summary = run_cases(fmt, args.cases, args.seed, progress=progress)
        print(summary.line(), flush=True)
        for f in summary.failures[:args.show]:
            print(f"--- case {f.case} ({f.kind}): {' '.join(f.argv)}\n{f.detail}")
        failed += len(summary.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
