"""Train/val/test splits by location (never by image), optionally spatially blocked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geoscout.errors import InvalidInput

from .schema import SPLIT_NAMES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .dataset import Dataset

__all__ = ["parse_fractions", "split_dataset"]


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or a sequence) -> validated (train, val, test) fractions summing to 1."""
    if isinstance(text, str):
        try:
            vals = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InvalidInput(f"split fractions {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    else:
        vals = [float(x) for x in text]
    if len(vals) != 3:
        raise InvalidInput(f"split fractions {list(vals)}: expected three (train, val, test), e.g. 0.8,0.1,0.1")
    if any(not math.isfinite(v) or v < 0 for v in vals) or not math.isclose(sum(vals), 1.0, abs_tol=1e-6):
        raise InvalidInput(f"split fractions {vals}: must be non-negative and sum to 1 (got sum {sum(vals):g})")
    return vals[0], vals[1], vals[2]


def split_dataset(
    dataset_or_frame: Dataset | pd.DataFrame,
    *,
    fractions: Sequence[float] | str = (0.8, 0.1, 0.1),
    seed: int = 0,
    method: str = "location",
    block_deg: float = 1.0,
) -> pd.Series:
    """Assign each row to ``"train"``, ``"val"`` or ``"test"``; returns a Series aligned with the frame.

    ``method="location"``: whole ``location_id`` groups (views of one panorama; ``image_id`` when the
    column is absent) are shuffled with ``seed`` and dealt to the split furthest below its target share
    of images. ``method="spatial"``: the same, but the groups are lat/lon blocks of ``block_deg``
    degrees (each location counted in the block of its first view), so nearby places never straddle
    splits. Splits with fraction 0 stay empty.
    """
    import pandas as pd

    frame = dataset_or_frame if isinstance(dataset_or_frame, pd.DataFrame) else dataset_or_frame.frame
    fr = parse_fractions(fractions)
    if method not in ("location", "spatial"):
        raise InvalidInput(f"split method {method!r}: expected 'location' or 'spatial'")
    n = len(frame)
    if n == 0:
        return pd.Series([], index=frame.index, dtype=object, name="split")
    if "location_id" in frame.columns:
        loc = frame["location_id"].where(frame["location_id"].notna(), frame.get("image_id"))
    elif "image_id" in frame.columns:
        loc = frame["image_id"]
    else:
        loc = pd.Series(np.arange(n), index=frame.index)
    loc = loc.astype(str).to_numpy()
    if method == "spatial":
        if not (isinstance(block_deg, (int, float)) and math.isfinite(block_deg) and block_deg > 0):
            raise InvalidInput(f"spatial block size {block_deg!r}: expected a positive number of degrees")
        for c in ("lat", "lon"):
            if c not in frame.columns:
                raise InvalidInput(f"spatial split needs a {c!r} column; got {list(frame.columns)}")
        lat = frame["lat"].to_numpy(dtype=np.float64)
        lon = frame["lon"].to_numpy(dtype=np.float64)
        first = pd.Series(np.arange(n)).groupby(loc, sort=False).transform("first").to_numpy()
        bi = np.floor(lat[first] / block_deg).astype(np.int64)
        bj = np.floor(lon[first] / block_deg).astype(np.int64)
        keys = np.char.add(np.char.add(bi.astype(str), ":"), bj.astype(str))
    else:
        keys = loc
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    active = [k for k in range(3) if fr[k] > 0]
    target = np.array(fr, dtype=np.float64) * n
    assigned = np.zeros(3)
    group_split = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        # the split furthest below its target; ties go to the earlier split (train, val, test)
        k = max(active, key=lambda s: (target[s] - assigned[s], -s))
        group_split[g] = k
        assigned[k] += counts[g]
    names = np.array(SPLIT_NAMES, dtype=object)
    return pd.Series(names[group_split[inverse.ravel()]], index=frame.index, dtype=object, name="split")
