"""The geoscout exception tree.

Every error a user can cause derives from :class:`GeoscoutError` and says what was
expected, what came, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "GeoscoutError",
    "InvalidInput",
    "MissingDependency",
    "MissingWeights",
    "NotFittedError",
    "ProviderError",
    "UnknownName",
]


class GeoscoutError(Exception):
    """Base class of every error geoscout raises on purpose."""


class InvalidInput(GeoscoutError, ValueError):
    """An input (file, coordinate, argument) is malformed or out of range."""


class MissingDependency(InvalidInput, ImportError):
    """An optional Python package is not installed; the message says what to install."""


class UnknownName(GeoscoutError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NotFittedError(GeoscoutError, RuntimeError):
    """``predict`` or ``transform`` was called before ``fit``."""


class MissingWeights(GeoscoutError, FileNotFoundError):
    """Model weights are not on disk and cannot be downloaded."""


class ProviderError(GeoscoutError, RuntimeError):
    """An imagery provider refused a request for good (denied key, bad request)."""
