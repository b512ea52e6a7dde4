"""The reference runtime: executes qnn modules on numpy arrays.

    outputs = qcc.runtime.run(module, {"x": array})
"""

from qcc.runtime import isa
from qcc.runtime.executor import Plan, RuntimeError_, compile_module, execute, run

isa.env_level()   # warns once about an unknown QCC_ISA

__all__ = ["isa", "run", "compile_module", "execute", "Plan", "RuntimeError_"]
