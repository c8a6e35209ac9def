"""Read the pretrained GeoCLIP files shipped in the ``geoclip`` wheel without importing its package.

``import geoclip`` pulls torchvision (its training code); we only need its data files, so we locate
the installed folder with :func:`importlib.util.find_spec` (which does not run ``geoclip/__init__``)
and read the weights with ``torch.load(weights_only=True)`` and the gallery CSV with numpy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingWeights

__all__ = ["load_gallery_csv", "load_wheel_weights", "weights_digest", "wheel_dir", "wheel_gallery"]

_FILES = {
    "location_encoder": "weights/location_encoder_weights.pth",
    "image_mlp": "weights/image_encoder_mlp_weights.pth",
    "logit_scale": "weights/logit_scale_weights.pth",
    "gallery": "gps_gallery/coordinates_100K.csv",
}


def wheel_dir() -> Path:
    """The installed ``geoclip/model`` folder; raises MissingWeights if the wheel is absent."""
    locs: list[str] = list(getattr(sys.modules.get("geoclip"), "__path__", None) or [])
    if not locs:
        try:
            spec = importlib.util.find_spec("geoclip")
        except (ImportError, ValueError):
            spec = None
        locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        d = Path(loc) / "model"
        if (d / _FILES["location_encoder"]).is_file():
            return d
    raise MissingWeights(
        "GeoCLIP's pretrained location encoder ships in the 'geoclip' wheel, which is not installed; "
        "run: pip install --no-deps geoclip   (or pip install 'geoscout[geoclip]')"
    )


def wheel_file(key: str) -> Path:
    p = wheel_dir() / _FILES[key]
    if not p.is_file():
        raise MissingWeights(
            f"the geoclip wheel is incomplete: {p} is missing; reinstall it (pip install --no-deps --force-reinstall geoclip)"
        )
    return p


def _load_tensor_file(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file or a pickle that is not plain tensors
        raise MissingWeights(f"{path}: cannot read as plain tensors ({exc}); reinstall the geoclip wheel") from None


@cache
def load_wheel_weights(key: str) -> Any:
    """``location_encoder`` / ``image_mlp``: a ``{name: tensor}`` state dict; ``logit_scale``: a 0-d tensor (log scale)."""
    import torch

    path = wheel_file(key)
    obj = _load_tensor_file(path)
    if key == "logit_scale":
        if not (torch.is_tensor(obj) and obj.ndim == 0):
            raise MissingWeights(f"{path}: expected a scalar tensor, got {type(obj).__name__}")
        return obj.float()
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())):
        raise MissingWeights(f"{path}: expected a plain state dict of tensors, got {type(obj).__name__}")
    return {k: v.float() for k, v in obj.items()}


def load_gallery_csv(path: str | Path) -> np.ndarray:
    """A GPS gallery CSV with ``LAT,LON`` (or ``lat,lon``) columns -> (M, 2) float64 degrees."""
    import pandas as pd

    from ..errors import InvalidInput
    from ..geo import validate_latlon

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read the GPS gallery CSV ({exc})") from None
    cols = {c.lower(): c for c in frame.columns}
    if "lat" not in cols or "lon" not in cols:
        raise InvalidInput(f"{path}: a GPS gallery needs LAT and LON columns, found {list(frame.columns)}")
    arr = frame[[cols["lat"], cols["lon"]]].to_numpy(dtype=np.float64)
    if len(arr) == 0:
        raise InvalidInput(f"{path}: the GPS gallery is empty")
    validate_latlon(arr[:, 0], arr[:, 1], what=str(path))
    return arr


@lru_cache(maxsize=1)
def wheel_gallery() -> np.ndarray:
    """GeoCLIP's 100k GPS gallery, (100000, 2) float64 degrees, rounded through float32 as GeoCLIP does."""
    arr = load_gallery_csv(wheel_file("gallery"))
    return arr.astype(np.float32).astype(np.float64)


def weights_digest(state: dict[str, Any]) -> str:
    """Short SHA-256 of a state dict's names, shapes and bytes (stable across file formats)."""
    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        arr = t.detach().cpu().contiguous().numpy() if torch.is_tensor(t) else np.ascontiguousarray(t)
        h.update(k.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.astype(np.float32).tobytes())
    return h.hexdigest()[:16]
