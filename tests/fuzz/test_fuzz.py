"""The fuzz suite (issue 10): mutated ONNX models, textual IR, configs and .npz
files through `qcc import/run/config/quantize` and `qcc-opt`, fixed seeds. A case
fails on a traceback, a crash of the worker process (segfault, abort), a hang, an
exit status other than 0/1/2, or output left behind (`qcc.testing.fuzz`).
`python tools/fuzz.py --cases 2000 --format onnx` runs more of the same cases."""

import pytest

from qcc.testing import fuzz

CASES = 100  # per format; about 10-25 s each on an idle core


@pytest.mark.parametrize("fmt", fuzz.FORMATS)
def test_fuzz(fmt, tmp_path):
    summary = fuzz.run_cases(fmt, CASES, seed=0, workdir=tmp_path)
    assert summary.cases == CASES
    shown = "\n".join(f"case {f.case} ({f.kind}): {' '.join(f.argv)}\n{f.detail}"
                      for f in summary.failures[:3])
    assert not summary.failures, f"{summary.line()}\n{shown}"
    # The mutations reach past the first check: some cases succeed, most fail cleanly.
    assert summary.statuses.get("1", 0) > 0


def test_harness_reports_a_crash_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("QCC_FUZZ_ABORT_AT", "1")
    summary = fuzz.run_cases("cfg", 3, seed=0, workdir=tmp_path)
    assert summary.cases == 3
    assert [(f.case, f.kind) for f in summary.failures] == [(1, "crash")]


def test_harness_reports_traceback_and_leftover(tmp_path, monkeypatch):
    from qcc.tools import cli

    seeds = fuzz.make_seeds()
    case = fuzz.make_case("cfg", 0, 0, seeds)
    system_tmp = tmp_path / "systmp"
    system_tmp.mkdir()

    def boom(argv):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "main", boom)
    result = fuzz.run_case(case, tmp_path / "a", system_tmp)
    assert result["kind"] == "traceback" and "KeyError: 'boom'" in result["detail"]

    def litter(argv):
        open("half-written.json", "w").close()
        return 1

    monkeypatch.setattr(cli, "main", litter)
    result = fuzz.run_case(case, tmp_path / "b", system_tmp)
    assert result["kind"] == "leftover" and "half-written.json" in result["detail"]
