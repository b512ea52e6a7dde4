"""qcc's passes and the Python pass API.

    qcc.passes.run(module, "canonicalize,qcc-fuse-bn{...}", remarks=Remarks())
    qcc.passes.run(module, [CanonicalizePass(), FuseBnPass(skip_layers="conv2")])

A pipeline is its text (what `qcc-opt -p` parses) or a sequence of `ModulePass`
instances; `text(passes)` prints the latter as the former, so a driver that builds
passes in Python can still say how to replay them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass, PassPipeline

from qcc import registry
from qcc.passes.remarks import Remarks, collecting
from qcc.quant.inputs import Supply, supplying

__all__ = ["Remarks", "available", "parse", "run", "text"]

AfterPass = Callable[[ModulePass, ModuleOp], None]


def parse(pipeline: str) -> tuple[ModulePass, ...]:
    """The passes of a `qcc-opt -p` pipeline text, with their options."""
    return PassPipeline.parse_spec(registry.all_passes(), pipeline).passes


def text(passes: Sequence[ModulePass]) -> str:
    """The `qcc-opt -p` text of `passes` (options at their defaults are left out);
    `parse(text(p)) == tuple(p)`."""
    return ",".join(str(p.pipeline_pass_spec()) for p in passes)


def run(module: ModuleOp, pipeline: str | Sequence[ModulePass], *, verify: bool = True,
        remarks: Remarks | None = None, files: Mapping[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        after: AfterPass | None = None) -> ModuleOp:
    """Apply a pipeline (its text or its passes) to `module` in place and return it.
    The passes' remarks go to `remarks` (None: to the caller's current `Remarks`, if
    any). `files` supplies the contents of files the passes name (see
    `qcc.quant.inputs`), `progress(done, total)` hears about batch loops, and
    `after(pass, module)` runs after each pass (after verification)."""
    ctx = registry.make_context()

    def callback(previous, mod, following) -> None:
        if verify:
            mod.verify()
        if after is not None and previous is not None:
            after(previous, mod)

    passes = parse(pipeline) if isinstance(pipeline, str) else tuple(pipeline)
    spec = PassPipeline(passes, callback)
    with supplying(Supply(dict(files or {}), progress)), collecting(remarks) if (
            remarks is not None) else nullcontext():
        spec.apply(ctx, module)
    return module


def available() -> list[str]:
    """Names of every registered pass."""
    return sorted(registry.all_passes())
