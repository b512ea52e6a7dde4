"""The reference runtime: executes qnn modules on numpy arrays.

    outputs = qcc.runtime.run(module, {"x": array})

`set_threads(n)` (or the environment variable QCC_NUM_THREADS) sets how many threads
every compiled kernel uses; the results do not depend on it.
"""

from qcc.runtime import isa, threads
from qcc.runtime.executor import Plan, RuntimeError_, compile_module, execute, run
from qcc.runtime.threads import get_threads, set_threads

isa.env_level()   # warns once about an unknown QCC_ISA
threads.apply_env()   # QCC_NUM_THREADS: every compiled module's thread count
threads.share_pool()  # calibration's histograms on the runtime's workers

__all__ = ["isa", "threads", "set_threads", "get_threads", "run", "compile_module", "execute",
           "Plan", "RuntimeError_"]
