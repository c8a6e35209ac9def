"""Geolocation heads: fit on embeddings, predict distributions over places.

Built-in heads register themselves in :data:`HEADS` when their module is imported;
:func:`create_head` imports them on first use.
"""

from __future__ import annotations

import importlib

from ._registry import HEADS
from .base import Distribution, GeoHead, create_head, head_from_state, list_heads

__all__ = ["HEADS", "Distribution", "GeoHead", "create_head", "head_from_state", "list_heads"]

_BUILTIN_MODULES = (
    "geoscout.heads.classifier",
    "geoscout.heads.hybrid",
    "geoscout.heads.multitask",
    "geoscout.heads.knn",
    "geoscout.heads.contrastive",
    "geoscout.geoclip.head",
)
_loaded = False


def _load_builtin_heads() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a head module not built in this checkout
            if exc.name is None or not mod.startswith(exc.name):
                raise
    _loaded = True
