"""GeoCLIP (Vivanco et al., NeurIPS 2023) pieces inside geoscout, without importing the ``geoclip`` package.

- :class:`LocationEncoder`: GeoCLIP's location encoder re-implemented (loads the wheel's weights strictly);
- :mod:`geoscout.geoclip._wheel`: the published weights and 100k GPS gallery read from the ``geoclip`` wheel.

The components built on them live with their kind: the ``geoclip`` backbone in
:mod:`geoscout.backbones.geoclip`, the ``geoclip`` head in :mod:`geoscout.heads.geoclip`.
"""

from __future__ import annotations

from .location_encoder import LocationEncoder, equal_earth_projection

__all__ = ["LocationEncoder", "equal_earth_projection"]
