"""Errors caused by what a user asked for, as opposed to bugs.

Each carries a stable snake_case `code` from DESIGN.md so the command line can print one line and
exit 2, and the WebSocket protocol can send `{"type": "error", "code": ...}` without guessing.
"""

from __future__ import annotations


class InputError(ValueError):
    """A request the engine cannot honour because of its input (never because of a bug)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):
        # Pickled with both arguments: a stage or a session in another process raises it, and
        # the default (the message alone) could not be unpickled there.
        return type(self), (self.code, self.message)
