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

__all__ = ["parse_fractions", "split_dataset", "split_for_training"]


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


def split_for_training(
    frame: pd.DataFrame,
    *,
    val_fraction: float,
    seed: int = 0,
    dataset_column: str = "dataset",
    group_column: str = "location_id",
) -> tuple[np.ndarray, str]:
    """Each row's split (train / val / test) for training on one or more datasets, and how it was chosen.

    No dataset is ever left out silently: a row keeps its manifest ``split`` (test rows are left out of
    training by the caller); rows without one (a dataset with no split column, or empty cells) are split
    by ``group_column`` with ``val_fraction`` of their groups held out for validation. When no row is
    given as val, validation groups are drawn from the given train rows too. Any split value other than
    train / val / test raises :class:`InvalidInput` naming the dataset (``dataset_column``).
    """
    import pandas as pd

    given = frame["split"] if "split" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    known = given.notna() & given.astype(str).str.strip().ne("")
    bad = known & ~given.astype(str).isin(SPLIT_NAMES)
    names = frame[dataset_column] if dataset_column in frame.columns else pd.Series("dataset", index=frame.index)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        values = sorted(set(given[bad].astype(str)))
        raise InvalidInput(
            f"dataset {names.iloc[i]!r}: split column has value(s) {', '.join(map(repr, values[:5]))}; expected "
            f"{', '.join(SPLIT_NAMES)}: rename them (e.g. validation -> val) or drop the column to split by location"
        )
    split = np.asarray(np.where(known, given.astype(str), None), dtype=object)
    has_val = bool((split == "val").any())
    pool = ~known.to_numpy()
    if not has_val and val_fraction > 0:
        pool |= split == "train"
    parts = []
    with_column = list(dict.fromkeys(names[known]))
    if with_column:
        parts.append(f"{', '.join(map(str, with_column))}: the manifest's split column (test rows left out)")
    if pool.any():
        sub = frame.loc[pool]
        if val_fraction > 0:
            groups = sub.assign(location_id=sub[group_column]) if group_column in sub.columns else sub
            split[pool] = split_dataset(
                groups, fractions=(1.0 - val_fraction, val_fraction, 0.0), seed=seed, method="location"
            ).to_numpy()
            how = f"by location, {val_fraction:.0%} of locations held out for validation (seed {seed})"
        else:
            split[pool] = "train"
            how = "all images used for training (no validation)"
        unset = list(dict.fromkeys(names[~known.to_numpy()]))
        reused = list(dict.fromkeys(names[pool & known.to_numpy()]))
        what = []
        if unset:
            what.append(f"the {'rows without a split' if with_column else 'images'} of {', '.join(map(str, unset))}")
        if reused:
            what.append(f"the train rows of {', '.join(map(str, reused))} (no val rows given)")
        parts.append(f"{how}: {' and '.join(what)}")
    return split, "; ".join(parts)
