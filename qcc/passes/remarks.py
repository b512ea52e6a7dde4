"""Remarks: why a pass left something alone, for the user's report, and what a pass
computed for its caller (equalize's scales).

They belong to one pipeline run, never to the module: `qcc.passes.run(..., remarks=r)`
(and `qcc-opt`) make a `Remarks` current while the passes run; passes `emit(op,
message)` into it. With no `Remarks` current, what passes emit is dropped.

    r = Remarks()
    passes.run(module, "qcc-fuse-bn", remarks=r)
    for line in r.lines:
        print(line)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from xdsl.ir import Operation

from qcc.passes.common import op_label, scoped


@dataclass
class Remarks:
    """What the passes of one run said (`lines`, oldest first) and computed
    (`results`, by pass name)."""

    lines: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def emit(self, op: Operation, message: str) -> None:
        """Record `message` about `op` as "<op kind> '<name>': <message>"."""
        self.lines.append(f"{op_label(op)}: {message}")

    def take(self) -> list[str]:
        """The lines emitted since the last `take()`, oldest first; clears them (for a
        driver that reports after each step)."""
        out = list(self.lines)
        self.lines.clear()
        return out


_CURRENT: ContextVar[Remarks | None] = ContextVar("qcc_remarks", default=None)


def collecting(remarks: Remarks | None = None) -> AbstractContextManager[Remarks]:
    """Make `remarks` (a new `Remarks` if None) current for the `with` body."""
    return scoped(_CURRENT, Remarks() if remarks is None else remarks)


def current() -> Remarks:
    """The current `Remarks`; a throwaway one when nobody collects."""
    remarks = _CURRENT.get()
    return Remarks() if remarks is None else remarks


def emit(op: Operation, message: str) -> None:
    """Record `message` about `op` in the current `Remarks`."""
    current().emit(op, message)
