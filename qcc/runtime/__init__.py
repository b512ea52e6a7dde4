"""The reference runtime: executes qnn modules on numpy arrays.

    outputs = qcc.runtime.run(module, {"x": array})
"""

from qcc.runtime.executor import Plan, RuntimeError_, compile_module, execute, run

__all__ = ["run", "compile_module", "execute", "Plan", "RuntimeError_"]
