"""Progress bars on stderr (tqdm), the one way long library calls report progress.

``enabled``: True shows the bar, False hides it, None shows it only when stderr is a terminal
(so logs and pipes stay clean). Bars never write to stdout, which may carry machine-readable output.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool | None = None) -> Any:
    """A tqdm bar on stderr for ``total`` steps (a no-op bar when disabled); use it as a context manager."""
    if enabled is False or (enabled is None and not _isatty(sys.stderr)):
        return _NoBar()  # no tqdm import for a bar nobody sees (a one-photo ``locate`` starts faster)
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None if enabled is None else not enabled,
        smoothing=0.1,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class _NoBar:
    """What a disabled tqdm bar does: nothing (``update``, ``set_postfix``, ``close``, context manager)."""

    n: float = 0

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None
