"""Trains the digits CNN with QAT under DistributedDataParallel; launched by
tests/qat/test_ddp.py as `torchrun --nproc_per_node=2 --standalone ddp_train.py OUT`.
Each rank trains on its own data and saves its state dict to OUT/rank<RANK>.pt."""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import qcc
from qcc.examples import digits


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # rank, world size and rendezvous from torchrun
    rank = dist.get_rank()
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
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
