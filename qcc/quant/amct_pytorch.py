"""The PyTorch AMCT-style API's old name: it lives in `qcc.flow.amct_pytorch`; this
re-export keeps `from qcc.quant import amct_pytorch` working for existing scripts."""

from qcc.flow.amct_pytorch import *  # noqa: F403
from qcc.flow.amct_pytorch import __all__  # noqa: F401
