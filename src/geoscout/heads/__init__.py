"""Geolocation heads: fit on embeddings, predict distributions over places.

Built-in heads register themselves in :data:`HEADS` when their module is imported;
:func:`create_head` imports them on first use.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _load_builtin_heads() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
