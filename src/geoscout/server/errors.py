"""The server's JSON error: an HTTP status, a machine-readable code and a message for people."""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """Raised by a route; the app turns it into ``{"error": {"code": ..., "message": ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
