"""Geolocation heads: fit on embeddings, predict distributions over places.

Built-in heads register themselves in :data:`HEADS` when their module is imported;
the registry imports them (and plugin heads from the ``geoscout.heads`` entry points) on first lookup.
"""

from __future__ import annotations

from ._registry import HEADS
from .base import Distribution, GeoHead, TrainingOptions, create_head, head_from_state, list_heads

__all__ = ["HEADS", "Distribution", "GeoHead", "TrainingOptions", "create_head", "head_from_state", "list_heads"]
