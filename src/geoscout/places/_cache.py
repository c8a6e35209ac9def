"""A tiny thread-safe lazy cache for the module-level geography tables."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def lazy(fn: Callable[[], T]) -> Callable[[], T]:
    """Run ``fn`` once, on first call, under a lock; later calls return the cached value.

    ``wrapper.clear()`` forgets the value (tests, or after files changed on disk).
    """
    lock = threading.Lock()
    box: list[T] = []

    @functools.wraps(fn)
    def wrapper() -> T:
        if box:
            return box[0]
        with lock:
            if not box:
                box.append(fn())
            return box[0]

    def clear() -> None:
        with lock:
            box.clear()

    wrapper.clear = clear  # type: ignore[attr-defined]
    return wrapper
