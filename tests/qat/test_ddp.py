"""QAT under DistributedDataParallel: two CPU processes launched by torchrun
(`python -m torch.distributed.run --nproc_per_node=2 --standalone`, gloo), each training
on its own data; afterwards both ranks hold identical weights, ranges and buffers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.run")

from qcc.examples import digits  # noqa: E402

SCRIPT = Path(__file__).with_name("ddp_train.py")


def test_ddp_ranks_hold_identical_weights_and_ranges(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(SCRIPT), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"torchrun failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys()
    scales = [k for k in r0 if k.endswith(".scale")]
    assert scales, "no quantizer ranges in the state dict"
    import qcc

    model, calib, _ = digits()
    fresh = qcc.qat.prepare(model, calib, {"weight_bits": 4, "act_bits": 4, "bn_fold": True})
    moved = [k for k in scales if not torch.equal(fresh.state_dict()[k], r0[k])]
    assert moved, "training left every range where calibration put it"
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between the ranks"
