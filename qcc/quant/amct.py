"""The AMCT-style API's old name: it lives in `qcc.flow.amct` (it composes the
exporters and the runtime, so it sits with the tools); this re-export keeps
`from qcc.quant import amct` working for existing scripts."""

from qcc.flow.amct import *  # noqa: F403
from qcc.flow.amct import __all__  # noqa: F401
