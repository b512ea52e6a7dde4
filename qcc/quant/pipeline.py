"""The quantize job's pass pipeline, built from its policy.

Policy apart from mechanism (as torch.ao's pt2e keeps them): the resolved config
(`qcc.quant.config.resolve`, the quant.json contract) says what to quantize and how;
`build` turns it into the passes that do it, each with its options, in the order the
job runs them:

    qcc-fuse-bn{skip_layers}          when the config fuses (do_fusion)
    qcc-legalize-ascend{target ...}   when a target is given
    qcc-equalize                      when the config equalizes
    qcc-balance{alpha data batch_num outlier_ratio} when the config balances
    qcc-insert-quant{config}
    qcc-calibrate{data batch_num}

The passes name the config and the calibration data as files, so the pipeline's
text (`qcc.passes.text`) replays with `qcc-opt -p`; a driver that holds them in
memory supplies them by those names (`qcc.passes.run(..., files=...)`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xdsl.passes import ModulePass

from qcc.passes.balance import BalancePass
from qcc.passes.calibrate import CalibratePass
from qcc.passes.equalize import EqualizePass
from qcc.passes.fuse_bn import FuseBnPass
from qcc.passes.insert_quant import InsertQuantPass
from qcc.passes.legalize_ascend import LegalizeAscendPass


def build(cfg: Mapping, *, config: str, data: str, target: str | None = None,
          overrides: Sequence[str] = ()) -> list[ModulePass]:
    """The passes that apply the resolved config `cfg`, which the passes read from
    the file `config`, with calibration data from the .npz `data`; `target` (a name or
    a .td path) adds legalization, `overrides` lifts its overridable rules."""
    batch_num = cfg.get("batch_num")
    passes: list[ModulePass] = []
    if cfg.get("do_fusion", True):
        passes.append(FuseBnPass(skip_layers=",".join(cfg.get("skip_fusion_layers", []))))
    if target is not None:
        passes.append(LegalizeAscendPass(target=target, config=config,
                                         override=",".join(overrides)))
    if cfg.get("equalize"):
        passes.append(EqualizePass())
    if cfg.get("balance"):
        passes.append(BalancePass(alpha=cfg["balance"]["alpha"], data=data,
                                  batch_num=batch_num,
                                  outlier_ratio=cfg["balance"].get("outlier_ratio", 0.0)))
    passes.append(InsertQuantPass(config=config))
    passes.append(CalibratePass(data=data, batch_num=batch_num))
    return passes


def float_prefix(passes: Sequence[ModulePass]) -> int:
    """How many leading `passes` leave the float model as the user will compare
    against it (fusion, legalization): the rest change the float computation
    (equalize, balance) or add quantizers."""
    changes = (EqualizePass, BalancePass, InsertQuantPass, CalibratePass)
    return next((i for i, p in enumerate(passes) if isinstance(p, changes)), len(passes))
