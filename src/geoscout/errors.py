"""The geoscout exception tree.

Every error a user can cause derives from :class:`GeoscoutError` and says what was
expected, what came, and how to fix it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "FAILURE_KINDS",
    "FailureKind",
    "GeoscoutError",
    "InvalidInput",
    "MissingDependency",
    "MissingWeights",
    "NotFittedError",
    "PhotoFailure",
    "ProviderError",
    "UnknownName",
    "UnreadableInput",
    "failure_of",
]

#: Why a photo could not be used. ``missing``: no such file; ``not_a_file``: a folder, FIFO, device or
#: socket; ``unreadable``: the file exists but cannot be read (permissions, a symlink loop, an I/O error);
#: ``empty``: 0 bytes; ``too_large``: over the byte or pixel limit; ``not_an_image``: not a format
#: Pillow reads; ``decode_error``: truncated or corrupt image data; ``out_of_memory``: decoding ran out of
#: memory; ``invalid``: refused for another stated reason (a dataset row left out when the dataset was read,
#: with bad coordinates or no path; a strip that cannot be split);
#: ``internal``: an unexpected error in geoscout or a library; ``unknown``: read from a file that
#: predates the kinds.
FailureKind = Literal[
    "missing",
    "not_a_file",
    "unreadable",
    "empty",
    "too_large",
    "not_an_image",
    "decode_error",
    "out_of_memory",
    "invalid",
    "internal",
    "unknown",
]
FAILURE_KINDS: tuple[str, ...] = get_args(FailureKind)


@dataclass(frozen=True, slots=True)
class PhotoFailure:
    """Why one photo (file, upload, in-memory image) could not be used: made once, where it failed.

    ``source`` names the input (a path, an upload's file name; ``None`` when unknown), ``reason``
    says in words what is wrong and what to do, ``kind`` is one of :data:`FAILURE_KINDS`, and
    ``image_id`` is the caller's id for the photo once known. :attr:`message` (also ``str()``) is the
    one-line text ``"<source>: <reason>"`` that the ``error`` field of every output format holds.
    """

    kind: FailureKind
    reason: str
    source: str | None = None
    image_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"PhotoFailure kind {self.kind!r}: choose one of {', '.join(FAILURE_KINDS)}")

    @property
    def message(self) -> str:
        """``"<source>: <reason>"`` (just the reason when the source is unknown)."""
        return f"{self.source}: {self.reason}" if self.source else self.reason

    def __str__(self) -> str:
        return self.message

    def named(self, image_id: str, *, source: str | None = None) -> PhotoFailure:
        """This failure for the photo the caller calls ``image_id`` (and, when given, names ``source``)."""
        return dataclasses.replace(self, image_id=image_id, source=self.source if source is None else source)

    @classmethod
    def from_text(
        cls, text: str, *, kind: str | None = None, source: str | None = None, image_id: str | None = None
    ) -> PhotoFailure:
        """The failure whose :attr:`message` is ``text`` (a predictions file's ``error``, ``error_kind`` and
        ``error_source`` fields; files written before the kinds carry the text alone: kind ``unknown``)."""
        k = kind if kind in FAILURE_KINDS else "unknown"
        if source and text.startswith(f"{source}: "):  # the inverse of ``message``
            return cls(k, text[len(source) + 2 :], source, image_id)  # type: ignore[arg-type]
        return cls(k, text, None, image_id)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "reason": self.reason, "image_id": self.image_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | str, *, image_id: str | None = None) -> PhotoFailure:
        """The inverse of :meth:`to_dict`; a plain string (a record written before the kinds) is the
        failure's message, of kind ``unknown``."""
        if isinstance(d, str):
            return cls.from_text(d, image_id=image_id)
        kind = d.get("kind") if d.get("kind") in FAILURE_KINDS else "unknown"
        return cls(kind, str(d.get("reason", "")), d.get("source"), d.get("image_id") or image_id)  # type: ignore[arg-type]


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


class UnreadableInput(InvalidInput):
    """A file or upload that cannot be read or decoded; :attr:`failure` says which, why and of what kind."""

    def __init__(self, failure: PhotoFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure

    @classmethod
    def of(cls, source: str, reason: str, kind: FailureKind) -> UnreadableInput:
        return cls(PhotoFailure(kind, reason, source))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray ships exceptions between processes)
        return (type(self), (self.failure,))


def failure_of(exc: BaseException, *, source: str | None = None, image_id: str | None = None) -> PhotoFailure:
    """The :class:`PhotoFailure` that ``exc``, raised while reading a photo, stands for.

    An :class:`UnreadableInput` carries its own (made where it failed); another :class:`InvalidInput`
    is kind ``invalid``, a :class:`MemoryError` ``out_of_memory``, anything else ``internal``.
    ``source`` names the input when the exception does not; ``image_id`` is the caller's id.
    """
    if isinstance(exc, UnreadableInput):
        f = exc.failure
        return f if image_id is None else f.named(image_id)
    if isinstance(exc, InvalidInput):
        return PhotoFailure("invalid", str(exc), source, image_id)
    if isinstance(exc, MemoryError):
        return PhotoFailure("out_of_memory", "out of memory while decoding", source, image_id)
    return PhotoFailure("internal", f"{type(exc).__name__}: {exc}", source, image_id)
