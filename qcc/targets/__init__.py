"""Target descriptions (`<name>.td`, grammar `td.lark`): the loader (`loader.py`)
and the condition language (`expr.py`).

    from qcc.targets import load_target
    ascend = load_target("ascend")      # or load_target("path/to/my.td")
"""

from qcc.targets.expr import FACTS, TargetError, layer_facts
from qcc.targets.loader import (
    QuantSpec,
    Rule,
    Target,
    TensorSpec,
    format_target,
    load_target,
    parse_target,
)

__all__ = ["FACTS", "QuantSpec", "Rule", "Target", "TargetError", "TensorSpec",
           "format_target", "layer_facts", "load_target", "parse_target"]
