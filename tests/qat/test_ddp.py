"""QAT under DistributedDataParallel: two CPU processes (gloo), each training on its
own shard; afterwards both ranks hold identical weights, ranges and buffers."""

import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mp = pytest.importorskip("torch.multiprocessing")

from qcc.examples import digits  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    import qcc

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, calib, test = digits()
    qmodel = qcc.qat.prepare(model, calib, {"weight_bits": 4, "act_bits": 4,
                                            "bn_fold": True, "freeze_bn_delay": 3})
    ddp = torch.nn.parallel.DistributedDataParallel(qmodel)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    with np.load(test) as t:
        x, y = torch.from_numpy(t["input"]), torch.from_numpy(t["labels"])
    g = torch.Generator().manual_seed(rank)  # different data on each rank
    for _ in range(5):
        idx = torch.randint(0, len(x), (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx]).backward()
        opt.step()
    torch.save({k: v.detach().clone() for k, v in qmodel.state_dict().items()},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_ranks_hold_identical_weights_and_ranges(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
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
