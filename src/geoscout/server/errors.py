"""The server's JSON error: an HTTP status, a machine-readable code and a message for people."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError"]


class ApiError(Exception):
    """Raised by a route; the app turns it into ``{"error": {"code": ..., "message": ...}}`` with ``status``.

    ``failures``: when the request failed because no photo could be read, one
    ``{"image_id", "kind", "message"}`` object per photo (added to the error as ``failures``).
    """

    def __init__(self, status: int, code: str, message: str, *, failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.failures = failures
