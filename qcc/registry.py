"""One place where qcc's dialects and passes are registered, lazily.

Dialects and passes are named here with a factory that imports their module
only when needed (the habit of `xdsl/universe.py`). Third-party packages add
their own through the `qcc.plugins` entry-point group: each entry point names a
callable `register(registry)` that calls `add_dialect` / `add_pass`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Dialect, Operation
from xdsl.passes import ModulePass

DialectFactory = Callable[[], Dialect]
PassFactory = Callable[[], type[ModulePass]]

Hook = Callable[..., object]
"""`hook(kernel, op, *arrays)` runs in place of `op`'s kernel (and may call it)."""
BatchRunner = Callable[[Mapping[str, Any]], object]
"""Runs the module on one batch (one array per model input)."""
Executor = Callable[[ModuleOp, Mapping[Operation, Hook]], BatchRunner]
"""What passes that execute the graph (qcc-calibrate, qcc-balance) are given:
`executor(module, hooks)` prepares the module once and returns a `BatchRunner`."""


def _lazy(module: str, name: str) -> Callable[[], object]:
    return lambda: getattr(import_module(module), name)


_DIALECTS: dict[str, DialectFactory] = {
    "qnn": _lazy("qcc.dialects.qnn", "QNN"),  # type: ignore[dict-item]
    "quant": _lazy("qcc.dialects.quant", "Quant"),  # type: ignore[dict-item]
    "ascend": _lazy("qcc.dialects.ascend", "Ascend"),  # type: ignore[dict-item]
}

_XDSL_DIALECTS = ("builtin", "func", "arith")

_PASSES: dict[str, PassFactory] = {
    "canonicalize": _lazy("qcc.passes.canonicalize", "CanonicalizePass"),  # type: ignore[dict-item]
    "qcc-fuse-bn": _lazy("qcc.passes.fuse_bn", "FuseBnPass"),  # type: ignore[dict-item]
    "qcc-balance": _lazy("qcc.passes.balance", "BalancePass"),  # type: ignore[dict-item]
    "qcc-equalize": _lazy("qcc.passes.equalize", "EqualizePass"),  # type: ignore[dict-item]
    "qcc-insert-quant": _lazy("qcc.passes.insert_quant", "InsertQuantPass"),  # type: ignore[dict-item]
    "qcc-calibrate": _lazy("qcc.passes.calibrate", "CalibratePass"),  # type: ignore[dict-item]
    "qcc-realize-int8": _lazy("qcc.passes.realize_int8", "RealizeInt8Pass"),  # type: ignore[dict-item]
    "qcc-lower-ascend": _lazy("qcc.passes.lower_ascend", "LowerAscendPass"),  # type: ignore[dict-item]
    "qcc-legalize-ascend": _lazy("qcc.passes.legalize_ascend", "LegalizeAscendPass"),  # type: ignore[dict-item]
}

_EXECUTOR = _lazy("qcc.runtime.executor", "batch_runner")
"""The reference runtime, named here so that passes never import it (it sits above
them in the layering)."""

_plugins_loaded = False


def add_dialect(name: str, factory: DialectFactory) -> None:
    """Register a dialect under `name`; `factory()` returns the `Dialect`."""
    _DIALECTS[name] = factory


def add_pass(name: str, factory: PassFactory) -> None:
    """Register a pass under `name`; `factory()` returns the `ModulePass` class."""
    _PASSES[name] = factory


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="qcc.plugins"):
        ep.load()(__import__(__name__, fromlist=["add_pass"]))


def all_dialects() -> dict[str, DialectFactory]:
    _load_plugins()
    return dict(_DIALECTS)


def all_passes() -> dict[str, PassFactory]:
    _load_plugins()
    return dict(_PASSES)


def make_context(allow_unregistered: bool = False) -> Context:
    """A context with the xDSL dialects qcc uses and every qcc dialect, lazily loaded."""
    from xdsl.universe import Universe

    ctx = Context(allow_unregistered=allow_unregistered)
    xdsl = Universe.get_multiverse().all_dialects
    for name in _XDSL_DIALECTS:
        ctx.register_dialect(name, xdsl[name])
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx


def executor() -> Executor:
    """The executor that passes run the graph with: the reference runtime's."""
    return _EXECUTOR()  # type: ignore[return-value]
