"""Land/sea from ``global-land-mask`` (the 1 km GLOBE mask), without its 1 GB import.

``import global_land_mask`` decompresses a 21600 x 43200 boolean array (933 MB) in every
process. Here the package's ``.npz`` is streamed once into a bit-packed copy (117 MB) in
``cache_dir("landmask")`` and memory-mapped afterwards, so a lookup costs milliseconds and
only the touched pages are read. The grid indexing is the package's own (``lat_to_index`` /
``lon_to_index``), so results are identical to ``global_land_mask.globe.is_land``.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoscout._io import atomic_path, cache_dir, sha256_file
from geoscout.errors import MissingWeights

from ._cache import lazy

__all__ = ["land_mask"]

_NPZ = "globe_combined_mask_compressed.npz"
_CHUNK_ROWS = 600


def _npz_path() -> Path:
    # find_spec, not importlib.resources.files: importing the package would load the 933 MB mask
    spec = importlib.util.find_spec("global_land_mask")
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / _NPZ if spec else None
    if path is None or not path.is_file():
        raise MissingWeights(f"the land mask ({_NPZ}) is missing: `pip install global-land-mask`")
    return path


def _stream_packed(npz: Path, out: NDArray[np.uint8] | None) -> NDArray[np.uint8]:
    """Bit-pack ``mask.npy`` row block by row block (never the whole 933 MB in memory)."""
    with zipfile.ZipFile(npz) as zf, zf.open("mask.npy") as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
        if fortran or dtype != np.bool_ or len(shape) != 2:
            raise MissingWeights(f"{npz}: unexpected land mask layout {shape} {dtype} fortran={fortran}")
        rows, cols = shape
        if out is None:
            out = np.empty((rows, (cols + 7) // 8), dtype=np.uint8)
        for r0 in range(0, rows, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, rows - r0)
            block = np.frombuffer(fh.read(n * cols), dtype=np.uint8).reshape(n, cols)
            out[r0 : r0 + n] = np.packbits(block, axis=1)
    return out


@lazy
def _grid() -> tuple[NDArray[np.uint8], NDArray[np.float64], NDArray[np.float64], int]:
    """(packed water bits, lat axis, lon axis, number of columns)."""
    npz = _npz_path()
    with np.load(npz) as z:  # NpzFile reads members lazily: only the two small axes here
        lat = np.asarray(z["lat"], dtype=np.float64)
        lon = np.asarray(z["lon"], dtype=np.float64)
    cols = lon.size
    try:
        target = cache_dir("landmask") / f"globe_packed_{sha256_file(npz)[:16]}.npy"
        if not target.is_file():
            with atomic_path(target) as tmp:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(lat.size, (cols + 7) // 8))
                _stream_packed(npz, mm)
                mm.flush()
                del mm
        packed = np.load(target, mmap_mode="r")
    except OSError:  # read-only cache: keep the packed copy in memory (117 MB)
        packed = _stream_packed(npz, None)
    return packed, lat, lon, cols


def land_mask(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.bool_]:
    """True where the GLOBE mask says land (lakes included). Inputs: valid degrees, same shape."""
    packed, glat, glon, _ = _grid()
    la = np.clip(np.asarray(lat, dtype=np.float64), glat.min(), glat.max())
    lo = np.clip(np.asarray(lon, dtype=np.float64), glon.min(), glon.max())
    li = ((la - glat[0]) / (glat[1] - glat[0])).astype(np.int64)
    ci = ((lo - glon[0]) / (glon[1] - glon[0])).astype(np.int64)
    water = (packed[li, ci >> 3] >> (7 - (ci & 7))) & 1
    return water == 0
