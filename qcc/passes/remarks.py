"""Remarks: why a pass left something alone, for the user's report.

Passes print nothing; they `emit(op, message)` and the driver (or a test) collects
them with `take()`:

    passes.run(module, "qcc-fuse-bn")
    for line in remarks.take():
        print(line)
"""

from __future__ import annotations

from xdsl.ir import Operation

from qcc.passes.common import op_label

_REMARKS: list[str] = []


def emit(op: Operation, message: str) -> None:
    """Record `message` about `op` as "<op kind> '<name>': <message>"."""
    _REMARKS.append(f"{op_label(op)}: {message}")


def take() -> list[str]:
    """The remarks emitted since the last `take()`, oldest first; clears them."""
    out = list(_REMARKS)
    _REMARKS.clear()
    return out
