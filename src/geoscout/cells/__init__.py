"""Geocells: partitions of the globe that turn coordinates into classes.

``create_partition("geohash:4")``, ``"grid:1.0"``, ``"h3:3"``, ``"quadtree:MIN:MAX"``,
``"country"``, ``"admin1"``, ``"cities:N"``, ``"semantic"`` build an unfitted
:class:`Partition`; ``fit(lat, lon)`` learns the cells from training coordinates (degrees);
``assign`` maps points to cell indices; ``save``/``load_partition`` use GeoJSON.
"""

from __future__ import annotations

from typing import Any

from . import cities as _cities  # noqa: F401  (registers cities)
from . import fixed as _fixed  # noqa: F401  (registers geohash, grid, h3)
from . import quadtree as _quadtree  # noqa: F401  (registers quadtree)
from . import regions as _regions  # noqa: F401  (registers country, admin1)
from . import semantic as _semantic  # noqa: F401  (registers semantic)
from ._registry import PARTITIONS
from .base import Partition, load_partition

__all__ = ["PARTITIONS", "Partition", "create_partition", "list_partitions", "load_partition"]


def create_partition(spec: str, **kw: Any) -> Partition:
    """An unfitted partition from a spec string (``"geohash:4"``, ``"semantic"``...) and keyword parameters."""
    if isinstance(spec, Partition):
        return spec
    return PARTITIONS.create(spec, **kw)


def list_partitions(pattern: str = "*") -> list[str]:
    """Registered partition names matching a glob pattern, sorted."""
    return PARTITIONS.list(pattern)
