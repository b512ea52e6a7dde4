"""qcc's passes and the Python pass API.

    qcc.passes.run(module, "canonicalize,qcc-fuse-bn{...}", remarks=Remarks())
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import PassPipeline

from qcc import registry
from qcc.passes.remarks import Remarks, collecting

__all__ = ["Remarks", "available", "run"]


def run(module: ModuleOp, pipeline: str, *, verify: bool = True,
        remarks: Remarks | None = None) -> ModuleOp:
    """Apply a `qcc-opt -p` pipeline to `module` in place and return it. The passes'
    remarks go to `remarks` (None: to the caller's current `Remarks`, if any)."""
    ctx = registry.make_context()

    def callback(previous, mod, following) -> None:
        if verify:
            mod.verify()

    spec = PassPipeline.parse_spec(registry.all_passes(), pipeline, callback)
    if remarks is None:
        spec.apply(ctx, module)
        return module
    with collecting(remarks):
        spec.apply(ctx, module)
    return module


def available() -> list[str]:
    """Names of every registered pass."""
    return sorted(registry.all_passes())
