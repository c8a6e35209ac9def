"""Command-line shells over the library. Each command lives in its own module."""

from __future__ import annotations

import importlib
import sys

from ._app import app

# Each module registers its commands on ``app`` when imported.
COMMAND_MODULES = (
    "import_cmd",
    "label_cmd",
    "embed_cmd",
    "train_cmd",
    "finetune_cmd",
    "locate_cmd",
    "evaluate_cmd",
    "collect_cmd",
    "serve_cmd",
    "watch_cmd",
    "list_cmd",
    "hub_cmd",
    "compare_cmd",
    "play_cmd",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main() -> None:
    """Entry point of the ``geoscout`` console script."""
    from geoscout.errors import GeoscoutError

    try:
        app()
    except GeoscoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
