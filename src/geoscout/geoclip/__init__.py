"""GeoCLIP (Vivanco et al., NeurIPS 2023) inside geoscout, without importing the ``geoclip`` package.

- :class:`LocationEncoder`: GeoCLIP's location encoder re-implemented (loads the wheel's weights strictly).
- backbone ``geoclip`` (:class:`GeoCLIPBackbone`): CLIP ViT-L/14 + GeoCLIP's image MLP -> 512-d features.
- head ``geoclip`` (:class:`GeoCLIPHead`): the pretrained location encoder over the 100k GPS gallery,
  gallery features cached on disk; :func:`load_geoclip_head` returns it ready.

Importing this package registers the backbone in ``BACKBONES`` and the head in ``HEADS``.
"""

from __future__ import annotations

from .location_encoder import LocationEncoder, equal_earth_projection

__all__ = [
    "GeoCLIPBackbone",
    "GeoCLIPHead",
    "LocationEncoder",
    "build_geoclip_backbone",
    "equal_earth_projection",
    "load_geoclip_head",
]

from .backbone import GeoCLIPBackbone, build_geoclip_backbone
from .head import GeoCLIPHead, load_geoclip_head
