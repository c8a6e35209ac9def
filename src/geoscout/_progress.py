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
