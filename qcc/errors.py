"""The root of qcc's exceptions: every error qcc raises for a user's input derives
from `QccError`, so commands catch one class, print its message and exit with
status 1. This module is a leaf: it imports nothing from qcc."""

from __future__ import annotations


class QccError(Exception):
    """The user's input is wrong; the message names the file, node or layer and what
    to do."""
