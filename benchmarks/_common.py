"""Helpers shared by the benchmark scripts: timing, peak memory, result tables."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def markdown_table(rows: list[dict], columns: Iterable[str] | None = None) -> str:
    cols = list(columns or (rows[0].keys() if rows else []))
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out.extend("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows)
    return "\n".join(out)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def need_shared() -> Path:
    if not (SHARED / "data").is_dir():
        print(f"skipped: needs {SHARED}/data", file=sys.stderr)
        raise SystemExit(0)
    return SHARED
