"""canonicalize: xDSL's canonicalization driver plus qnn patterns (filled below)."""
from dataclasses import dataclass

from xdsl.transforms.canonicalize import CanonicalizePass as XdslCanonicalize


@dataclass(frozen=True)
class CanonicalizePass(XdslCanonicalize):
    """Drop identity/dropout, merge reshapes and transposes, fold constants, dead code."""
