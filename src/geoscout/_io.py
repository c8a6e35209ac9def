"""Atomic file writing, bounded reading of users' files, and the user cache directory.

Every read of a file a user names goes through :func:`open_user_file` (or
:func:`read_user_file`): it refuses anything but a regular file (a named pipe would hang,
``/dev/zero`` would never end) before reading a byte, and never reads past a size limit.

Every file geoscout writes goes through :func:`atomic_path` (or the helpers built on
it): data lands in a temporary file in the same directory, is flushed and fsynced,
then renamed over the target, so a killed process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import UnreadableInput

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "check_user_file",
    "cpu_threads",
    "json_digest",
    "open_user_file",
    "read_user_file",
    "safe_name",
    "sha256_file",
]

#: File name endings taken as photos by every folder walk (import, locate, watch, open datasets).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".heic", ".heif"})


def _not_a_file(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file; geoscout reads only regular files"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file; geoscout reads only regular files"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file; geoscout reads only regular files"
    return "is not a regular file; geoscout reads only regular files"


def _os_failure(name: str, exc: OSError) -> UnreadableInput:
    import errno

    if isinstance(exc, FileNotFoundError):
        return UnreadableInput.of(name, "file not found; check the path", "missing")
    if exc.errno == errno.ELOOP:
        return UnreadableInput.of(
            name, "symlink loop (the link points back at itself); fix or remove the link", "unreadable"
        )
    if isinstance(exc, PermissionError):
        return UnreadableInput.of(name, "permission denied; check the file's permissions", "unreadable")
    return UnreadableInput.of(name, f"cannot read the file ({exc.strerror or exc})", "unreadable")


def check_user_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of a user's file after checking it is a regular file within ``max_bytes``.

    Raises :class:`~geoscout.errors.UnreadableInput` (``"<path>: <reason>"``, with its kind) for a missing file,
    a folder, a FIFO, a device, a socket, a symlink loop or an over-large file. Opens nothing.
    """
    name = str(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_failure(name, exc) from None
    _check_stat(name, st, max_bytes)
    return st


def _check_stat(name: str, st: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableInput.of(name, _not_a_file(st.st_mode), "not_a_file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnreadableInput.of(name, f"file is {st.st_size} bytes, over the {max_bytes}-byte limit", "too_large")


def open_user_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> BinaryIO:
    """Open a user's file for binary reading, refusing anything but a regular file within ``max_bytes``.

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so a
    FIFO cannot hang the caller and a file swapped after a check is still caught. Reading past
    ``max_bytes`` is the caller's to avoid (:func:`read_user_file` does).
    """
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_failure(name, exc) from None
    try:
        _check_stat(name, os.fstat(fd), max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_user_file(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """All bytes of a user's regular file, never more than ``max_bytes`` (a growing file is refused)."""
    with open_user_file(path, max_bytes=max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnreadableInput.of(str(path), f"file grew past the {max_bytes}-byte limit while being read", "too_large")
    return data


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success, fsync and rename it over ``target``.

    On an exception the temporary file is removed and ``target`` is left untouched.
    ``suffix`` defaults to the target's suffix (some writers choose a format by it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=(target.suffix if suffix is None else suffix) + ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, target)
        with contextlib.suppress(OSError):  # make the rename durable
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as pretty JSON to ``target`` atomically."""
    return atomic_write_text(target, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def cache_dir(*parts: str) -> Path:
    """geoscout's cache folder: ``$GEOSCOUT_HOME``, else ``$XDG_CACHE_HOME/geoscout``, else ``~/.cache/geoscout``."""
    root = os.environ.get("GEOSCOUT_HOME")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geoscout"
    p = base.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open_user_file(path) as fh:  # regular files only: a FIFO or a device must not hang or run forever
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cpu_threads() -> int:
    """CPU cores this process may use (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def safe_name(name: str) -> str:
    """A component name usable as a file/folder name (``hf:openai/clip`` -> ``hf_openai_clip``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "backbone"


def json_digest(obj: Any, length: int = 16) -> str:
    """Short stable hash of a JSON-able object (keys sorted), e.g. a backbone fingerprint naming its caches."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]
