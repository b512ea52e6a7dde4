"""Run ONNX's node test cases (`onnx.backend.test.case.node`) through
`qcc.frontends.onnx.load_onnx` and `qcc.runtime.run`, and compare with the expected
outputs.

    python tools/onnx_node_conformance.py [--verbose] [OP ...]

A case counts for op X when its model is one X node (the `_expanded` variants test
function bodies made of other ops and are left out). Each case ends as one of:

- passed: imported as is and every output matches (shape, dtype, values with the
  case's rtol/atol);
- passed-frozen: qcc fixes shapes and parameters at import, and the case feeds such
  an operand (a Reshape shape, Slice starts, Clip min...) as a run-time input. The
  case is retried with those inputs turned into initializers holding the test data,
  as an exporter would write them; it passed that way. Not counted in the strict
  rate;
- failed: an import error, a runtime error or a mismatch (the reason is kept). The
  table splits failures into "no qnn type" (a tensor whose element type qnn lacks:
  int16, uint16/32/64, bfloat16, float8, int4, string, or a sequence) and "other".

Prints a markdown table and the pass rates (strict, and counting frozen passes).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass

import numpy as np

OPS = [
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip",
    "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Erf", "Gelu", "HardSwish", "HardSigmoid",
    "Softmax", "LayerNormalization", "LRN", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg",
    "Reciprocal", "Floor", "Min", "Max", "Sum", "Mean", "Concat", "Split", "Slice",
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Pad", "Resize",
    "Upsample", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
    "ReduceL2", "ReduceSumSquare", "Dropout", "Identity",
    "Constant", "Shape", "ConstantOfShape", "Range", "Expand", "Cast", "Equal", "Less",
    "Greater", "Where", "And", "Or", "Not", "IsNaN", "Size", "GatherElements", "GatherND",
    "CumSum", "InstanceNormalization", "If",
]
"""The op types the ONNX frontend supports (the conformance denominator)."""

PASSED, FROZEN, FAILED = "passed", "passed-frozen", "failed"


@dataclass
class Result:
    op: str
    case: str
    status: str
    reason: str = ""


def collect(ops: list[str]) -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    wanted = set(ops)
    return [c for c in cases
            if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in wanted]


def _freeze(model, names: set[str], feeds: dict[str, np.ndarray]):
    """A copy of `model` where the inputs `names` are initializers holding `feeds`."""
    from onnx import numpy_helper

    frozen = type(model)()
    frozen.CopyFrom(model)
    keep = [i for i in frozen.graph.input if i.name not in names]
    del frozen.graph.input[:]
    frozen.graph.input.extend(keep)
    for name in sorted(names):
        frozen.graph.initializer.append(numpy_helper.from_array(feeds[name], name))
    return frozen


def _check(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
           rtol: float, atol: float) -> str:
    """'' when `outputs` match `expected`, else why not."""
    for name, want in expected.items():
        got = outputs.get(name)
        if got is None:
            return f"missing output {name}"
        got = np.asarray(got)
        if got.shape != want.shape:
            return f"{name}: shape {got.shape}, expected {want.shape}"
        if got.dtype != want.dtype:
            return f"{name}: dtype {got.dtype}, expected {want.dtype}"
        if want.dtype.kind not in "biuUSO" and want.dtype.kind != "c":
            # float, including ml_dtypes' narrow floats (kind 'V'): compare as float64
            ok = np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                             atol=atol, equal_nan=True)
        elif want.dtype.kind == "c":
            ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        else:
            ok = np.array_equal(got, want)
        if not ok:
            err = np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))
            return f"{name}: values differ (max abs err {err:.3g})"
    return ""


def _array(v):
    """Test data as numpy (TensorProto and numpy scalars); other kinds unchanged."""
    from onnx import TensorProto, numpy_helper

    if isinstance(v, TensorProto):
        return numpy_helper.to_array(v)
    return np.asarray(v) if isinstance(v, np.generic) else v


def run_case(case) -> Result:
    from qcc.frontends.errors import NotConstantError
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import run

    model = case.model
    op = model.graph.node[0].op_type
    init = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in init]
    frozen: set[str] = set()
    for inputs, outputs in case.data_sets:
        feeds = {k: _array(v) for k, v in zip(input_names, inputs, strict=False)}
        if not all(isinstance(v, np.ndarray) for v in feeds.values()):
            return Result(op, case.name, FAILED, "an input is not a tensor")
        expected = {o.name: _array(v) for o, v in zip(model.graph.output, outputs,
                                                           strict=False)}
        while True:
            m = _freeze(model, frozen, feeds) if frozen else model
            shapes = {k: v.shape for k, v in feeds.items() if k not in frozen}
            try:
                module = load_onnx(m, input_shapes=shapes)
                break
            except NotConstantError as e:
                if e.value_name in frozen or e.value_name not in feeds:
                    return Result(op, case.name, FAILED, f"import: {e}")
                frozen.add(e.value_name)
            except Exception as e:
                return Result(op, case.name, FAILED, f"import: {type(e).__name__}: {e}")
        try:
            with np.errstate(all="ignore"):
                got = run(module, {k: v for k, v in feeds.items() if k not in frozen})
        except Exception as e:
            return Result(op, case.name, FAILED, f"run: {type(e).__name__}: {e}")
        why = _check(got, expected, case.rtol, case.atol)
        if why:
            return Result(op, case.name, FAILED, why)
    return Result(op, case.name, FROZEN if frozen else PASSED)


def run_all(ops: list[str] | None = None) -> list[Result]:
    return [run_case(c) for c in collect(ops or OPS)]


def rates(results: list[Result]) -> tuple[float, float]:
    """(strict pass rate, pass rate counting frozen-input passes)."""
    n = len(results) or 1
    strict = sum(r.status == PASSED for r in results)
    frozen = sum(r.status == FROZEN for r in results)
    return strict / n, (strict + frozen) / n


NO_TYPE = ("which qnn does not support", "qnn has no element type", "not a tensor")


def no_qnn_type(r: Result) -> bool:
    """A failure because a tensor has an element type qnn lacks."""
    return r.status == FAILED and any(s in r.reason for s in NO_TYPE)


def table(results: list[Result], ops: list[str]) -> str:
    lines = ["| op | cases | passed | passed-frozen | failed: no qnn type | failed: other |",
             "|---|---:|---:|---:|---:|---:|"]
    for op in ops:
        rs = [r for r in results if r.op == op]
        no_type = sum(no_qnn_type(r) for r in rs)
        counts = [sum(r.status == PASSED for r in rs), sum(r.status == FROZEN for r in rs),
                  no_type, sum(r.status == FAILED for r in rs) - no_type]
        lines.append(f"| {op} | {len(rs)} | " + " | ".join(map(str, counts)) + " |")
    strict, frozen = rates(results)
    n = len(results)
    lines += ["", f"{n} cases: strict pass rate {strict:.1%} "
              f"({sum(r.status == PASSED for r in results)}/{n}); with frozen inputs "
              f"{frozen:.1%} ({sum(r.status != FAILED for r in results)}/{n})"]
    typed = [r for r in results if not no_qnn_type(r)]
    lines.append(f"over the {len(typed)} cases whose tensors have qnn element types, with "
                 f"frozen inputs: {sum(r.status != FAILED for r in typed) / len(typed):.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", help="op types (default: all supported)")
    parser.add_argument("--verbose", "-v", action="store_true", help="list failures")
    args = parser.parse_args(argv)
    ops = args.ops or OPS
    results = run_all(ops)
    print(table(results, ops))
    if args.verbose:
        print("\nFailures:")
        for r in results:
            if r.status == FAILED:
                print(f"- {r.case} ({r.op}): {r.reason.splitlines()[0][:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
