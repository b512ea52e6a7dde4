"""Errors raised by the frontends: user-facing messages naming the model, the node
and what to do."""

from __future__ import annotations

from qcc.errors import QccError


class FrontendError(QccError):
    """A model cannot be imported; the message says why and what to do."""


class NotConstantError(FrontendError):
    """An operand that qcc fixes at import (a shape, axes, pads...) is computed at
    run time. `value_name` is the model's name for that operand."""

    def __init__(self, message: str, value_name: str) -> None:
        super().__init__(message)
        self.value_name = value_name
