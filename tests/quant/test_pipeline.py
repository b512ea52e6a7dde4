"""The quantize job as one pass pipeline built from the resolved config: the passes
and options each config setting gives (written out by hand), the text round trip
through `qcc-opt -p`'s parser, and replay.sh reproducing the job's IR exactly."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from qcc import ir, passes
from qcc.examples import digits
from qcc.fileio import DataFileError
from qcc.flow.quantize import quantize
from qcc.frontends.onnx import load_onnx
from qcc.passes.balance import BalancePass
from qcc.passes.calibrate import CalibratePass
from qcc.passes.canonicalize import CanonicalizePass
from qcc.passes.equalize import EqualizePass
from qcc.passes.fuse_bn import FuseBnPass
from qcc.passes.insert_quant import InsertQuantPass
from qcc.passes.legalize_ascend import LegalizeAscendPass
from qcc.quant import config as qconfig
from qcc.quant import pipeline
from qcc.runtime import run


def _cfg(text: str | None) -> dict:
    module = load_onnx(digits()[0])
    passes.run(module, "canonicalize")
    simple = qconfig.parse_simple_config(text, "<t>") if text else None
    return qconfig.resolve(module, simple)


@pytest.mark.parametrize("text, target, overrides, want", [
    (None, None, (),
     'qcc-fuse-bn,qcc-balance{data="c.npz" outlier_ratio=16.0},'
     'qcc-insert-quant{config="q.json"},qcc-calibrate{data="c.npz"}'),
    ("auto_balance: false\n", None, (),
     'qcc-fuse-bn,qcc-insert-quant{config="q.json"},qcc-calibrate{data="c.npz"}'),
    ("do_fusion: false\nbatch_num: 2\nauto_balance: false\n", None, (),
     'qcc-insert-quant{config="q.json"},qcc-calibrate{data="c.npz" batch_num=2}'),
    ('skip_fusion_layers: "conv2"\ndo_equalization: true\n'
     "dmq_balancer_param { migration_strength: 0.4 }\n", "ascend", ("min_cin",),
     'qcc-fuse-bn{skip_layers="conv2"},'
     'qcc-legalize-ascend{config="q.json" override="min_cin"},qcc-equalize,'
     'qcc-balance{alpha=0.4 data="c.npz"},qcc-insert-quant{config="q.json"},'
     'qcc-calibrate{data="c.npz"}'),
])
def test_pipeline_from_config(text, target, overrides, want):
    built = pipeline.build(_cfg(text), config="q.json", data="c.npz", target=target,
                           overrides=overrides)
    assert passes.text(built) == want
    assert passes.parse(want) == tuple(built)


def test_pipeline_passes_and_the_float_prefix():
    cfg = _cfg("do_equalization: true\ndmq_balancer_param { migration_strength: 0.5 }\n"
               "batch_num: 3\n")
    built = pipeline.build(cfg, config="q.json", data="c.npz", target="ascend")
    assert built == [FuseBnPass(), LegalizeAscendPass(config="q.json"), EqualizePass(),
                     BalancePass(alpha=0.5, data="c.npz", batch_num=3),
                     InsertQuantPass(config="q.json"),
                     CalibratePass(data="c.npz", batch_num=3)]
    assert pipeline.float_prefix(built) == 2  # fuse and legalize keep the float model
    assert pipeline.float_prefix(built[:2]) == 2
    assert pipeline.float_prefix(built[3:]) == 0


def _replay(irdir):
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    r = subprocess.run(["sh", str(irdir / "replay.sh")], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return ir.load_module(irdir / "replayed.mlir")


def test_replay_reproduces_the_job(tmp_path):
    """Every pass the config can ask for, a target and batch_num: the replay.sh's
    qcc-opt command on the saved import gives the job's IR, text-identical, and the
    same outputs on the runtime."""
    model, calib, test = digits()
    cfg = tmp_path / "c.cfg"
    cfg.write_text('skip_fusion_layers: "conv2"\ndo_equalization: true\nbatch_num: 3\n'
                   "dmq_balancer_param { migration_strength: 0.5 }\n")
    res = quantize(model, calib, cfg, tmp_path / "out", dump_ir=True, progress=False,
                   target="ascend", overrides=("min_cin",))
    irdir = tmp_path / "out" / "ir"
    script = (irdir / "replay.sh").read_text()
    argv = shlex.split(script.splitlines()[-1])
    spec = argv[argv.index("-p") + 1]
    assert [type(p) for p in passes.parse(spec)] == [
        type(p) for p in [CanonicalizePass(), FuseBnPass(), LegalizeAscendPass(), EqualizePass(),
                          BalancePass(), InsertQuantPass(), CalibratePass()]]
    replayed = _replay(irdir)
    assert ir.print_module(replayed) == ir.print_module(res.module)
    with np.load(test) as npz:
        samples = npz["input"][:4]
    for i in range(len(samples)):
        x = {"input": samples[i:i + 1]}
        want, got = run(res.module, x), run(replayed, x)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_files_supplied_in_memory_equal_files_on_disk(tmp_path):
    """A driver runs the printed pipeline with the named files in memory: the IR is
    the one the same pipeline gives reading them from disk."""
    model, calib, _ = digits()
    with np.load(calib) as npz:
        arrays = {k: npz[k][:4] for k in npz.files}
    np.savez(tmp_path / "c.npz", **arrays)
    cfg = _cfg(None)
    spec = ('canonicalize,qcc-fuse-bn,qcc-insert-quant{config="q.json"},'
            'qcc-calibrate{data="c.npz"}')
    on_disk = load_onnx(model)
    from qcc.quant import config_json

    config_json.dump_json(cfg, tmp_path / "q.json")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        passes.run(on_disk, spec)
    finally:
        os.chdir(cwd)
    in_memory = passes.run(load_onnx(model), spec, files={"q.json": cfg, "c.npz": arrays})
    assert ir.print_module(in_memory) == ir.print_module(on_disk)
    with pytest.raises(DataFileError, match="c.npz: no such calibration data file"):
        passes.run(load_onnx(model), spec, files={"q.json": cfg})


def test_calibration_progress_reaches_the_caller(capsys):
    """qcc-calibrate inside the pipeline reports its batches to the flow's progress
    (stderr is not a terminal here: a line every quarter)."""
    model, calib, _ = digits()
    with np.load(calib) as npz:
        arrays = {k: npz[k][:40] for k in npz.files}  # batch 1: 40 batches
    quantize(model, arrays, None, None, progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("calibrating")]
    assert lines == [f"calibrating: {n}/40 batches" for n in (10, 20, 30, 40)]
