"""Exceptions that mean "the user's input is wrong": commands print them as one
message and exit with status 1."""

from __future__ import annotations

from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException

from qcc.fileio import DataFileError, OutputError
from qcc.ir import IRError
from qcc.runtime.executor import RuntimeError_


def _frontend_errors() -> tuple[type[Exception], ...]:
    try:
        from qcc.frontends.errors import FrontendError
    except ImportError:
        return ()
    return (FrontendError,)


def _quant_errors() -> tuple[type[Exception], ...]:
    from qcc.passes.balance import BalanceError
    from qcc.passes.calibrate import CalibrationError
    from qcc.quant.algorithms import AlgorithmError
    from qcc.quant.config import ConfigError
    from qcc.targets.expr import TargetError

    return (ConfigError, CalibrationError, AlgorithmError, BalanceError, TargetError)


def _export_errors() -> tuple[type[Exception], ...]:
    try:
        from qcc.exporters.onnx import ExportError
    except ImportError:  # onnx is missing: nothing exports
        return ()
    return (ExportError,)


USER_ERRORS: tuple[type[Exception], ...] = (
    IRError, RuntimeError_, ParseError, VerifyException, DiagnosticException,
    OutputError, DataFileError,
    *_frontend_errors(), *_quant_errors(), *_export_errors(),
)
