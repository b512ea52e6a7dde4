"""qcc's passes and the Python pass API.

    qcc.passes.run(module, "canonicalize,qcc-fuse-bn{...}")
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import PassPipeline

from qcc import registry


def run(module: ModuleOp, pipeline: str, *, verify: bool = True) -> ModuleOp:
    """Apply a `qcc-opt -p` pipeline to `module` in place and return it."""
    ctx = registry.make_context()

    def callback(previous, mod, following) -> None:
        if verify:
            mod.verify()

    PassPipeline.parse_spec(registry.all_passes(), pipeline, callback).apply(ctx, module)
    return module


def available() -> list[str]:
    """Names of every registered pass."""
    return sorted(registry.all_passes())
