"""The files a pipeline names (`config=`, `data=`), supplied in memory by the driver
that runs it.

A pass option names a file, so the pipeline's text replays with `qcc-opt`. A driver
that already holds the file's contents (the quantize flow: the resolved config it
just built, calibration arrays the caller passed) runs the very same pipeline with
`qcc.passes.run(module, pipeline, files={name: contents})`; passes read their files
through `npz` and `config`, which look there before the disk. Like the remarks,
what is supplied belongs to one pipeline run, never to the module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcc.fileio import read_npz
from qcc.passes.common import scoped


@dataclass(frozen=True)
class Supply:
    """File contents by the name a pass option gives, and a progress callback
    (`progress(done, total)`) for passes that loop over batches."""

    files: Mapping[str, Any] = field(default_factory=dict)
    progress: Callable[[int, int], None] | None = None


_CURRENT: ContextVar[Supply | None] = ContextVar("qcc_supply", default=None)


def supplying(supply: Supply) -> AbstractContextManager[Supply]:
    """Make `supply` current for the `with` body."""
    return scoped(_CURRENT, supply)


def _current() -> Supply:
    supply = _CURRENT.get()
    return Supply() if supply is None else supply


def npz(path: str, what: str) -> dict[str, np.ndarray]:
    """The arrays of the .npz `path` (supplied, else read from disk)."""
    supplied = _current().files.get(path)
    if supplied is not None:
        return dict(supplied)
    return read_npz(path, what)


def config(path: str) -> dict:
    """The resolved quant.json `path` (supplied, else read from disk)."""
    supplied = _current().files.get(path)
    if supplied is not None:
        return supplied
    from qcc.quant import config_json

    return config_json.load_json(path)


def progress(total: int) -> Callable[[int], None] | None:
    """`callback(done)` for a loop of `total` batches, if the driver asked for one."""
    report = _current().progress
    if report is None:
        return None
    return lambda done: report(done, total)
