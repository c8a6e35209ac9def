"""How far apart were two photos taken? (GeoTrainr's photo-to-photo distance.)

Each photo gets the model's distribution over places (cell centroids, a GPS gallery...). If the
two places are independent draws from those distributions, the distance between them has a
distribution too: :func:`compare` gives its median and a central interval, computed exactly over
all pairs of support points with haversine (or, when there are too many pairs, over a fixed-seed
sample), and the probability that both places lie in the same country. When both photos are close
in embedding space to photos of the model's retrieval index, the same is done over their nearest
training photos' known places (a second, often sharper, estimate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidInput
from .geo import haversine_km, l2_normalize

__all__ = ["Comparison", "DistanceEstimate", "compare", "compare_embeddings", "distance_distribution"]

#: points of a distribution dropped as negligible: the smallest set holding 1 - PRUNE_MASS is kept
PRUNE_MASS = 1e-6


@dataclass(slots=True)
class DistanceEstimate:
    """Distance (km) between the two photos' places: median and the central ``level`` interval."""

    median_km: float
    low_km: float
    high_km: float
    level: float
    method: str  # "distributions" or "retrieval"
    pairs: int  # point pairs the numbers were computed over
    exact: bool  # False when a fixed-seed sample of pairs was used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Comparison:
    """The answer for one pair of photos.

    ``same_country`` is the probability that the two places lie in the same country (over the mass
    of both distributions that falls in some country). ``retrieval`` is None unless both photos are
    near training photos (best similarity >= ``near_similarity``); ``similarity_a``/``_b`` say how
    near they were.
    """

    a: str
    b: str
    distance: DistanceEstimate
    same_country: float
    country_a: str | None
    country_a_probability: float
    country_b: str | None
    country_b_probability: float
    retrieval: DistanceEstimate | None = None
    similarity_a: float | None = None
    similarity_b: float | None = None
    near_similarity: float | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["distance"] = self.distance.to_dict()
        d["retrieval"] = self.retrieval.to_dict() if self.retrieval is not None else None
        return d


# --------------------------------------------------------------------------- pure numerics
def _weighted_quantiles(values: NDArray[np.float64], weights: NDArray[np.float64], qs: Sequence[float]) -> list[float]:
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    cum /= cum[-1]
    return [float(v[min(int(np.searchsorted(cum, q - 1e-12)), len(v) - 1)]) for q in qs]


def _prune(lat: NDArray[np.float64], lon: NDArray[np.float64], p: NDArray[np.float64]) -> tuple[Any, Any, Any]:
    """Drop the least probable points holding at most PRUNE_MASS of the mass (renormalised)."""
    p = np.clip(np.asarray(p, np.float64), 0.0, None)
    total = float(p.sum())
    if not np.isfinite(total) or total <= 0:
        raise InvalidInput("a distribution with no probability mass cannot be compared")
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(p[order]) / total
    keep = order[: int(np.searchsorted(cum, 1.0 - PRUNE_MASS)) + 1]
    return lat[keep], lon[keep], p[keep] / p[keep].sum()


def distance_distribution(
    lat_a: Any,
    lon_a: Any,
    p_a: Any,
    lat_b: Any,
    lon_b: Any,
    p_b: Any,
    *,
    level: float = 0.8,
    max_pairs: int = 4_000_000,
    samples: int = 200_000,
    seed: int = 0,
    method: str = "distributions",
) -> DistanceEstimate:
    """Median and central ``level`` interval of the haversine distance between independent draws
    from two discrete distributions (support points in degrees, probabilities summing to 1).

    Exact over all point pairs (points below a 1e-6 tail of mass dropped) while there are at most
    ``max_pairs`` of them; otherwise over ``samples`` independent pairs drawn with ``seed``.
    """
    if not 0.0 < level < 1.0:
        raise InvalidInput(f"interval level must be between 0 and 1 (e.g. 0.8), got {level}")
    la, oa, pa = _prune(*(np.asarray(x, np.float64).reshape(-1) for x in (lat_a, lon_a, p_a)))
    lb, ob, pb = _prune(*(np.asarray(x, np.float64).reshape(-1) for x in (lat_b, lon_b, p_b)))
    qs = (0.5, (1 - level) / 2, (1 + level) / 2)
    if len(pa) * len(pb) <= max_pairs:
        d = haversine_km(la[:, None], oa[:, None], lb[None, :], ob[None, :]).reshape(-1)
        w = (pa[:, None] * pb[None, :]).reshape(-1)
        med, lo, hi = _weighted_quantiles(d, w, qs)
        return DistanceEstimate(med, lo, hi, level, method, int(d.size), True)
    rng = np.random.default_rng(seed)
    ia = rng.choice(len(pa), size=samples, p=pa)
    ib = rng.choice(len(pb), size=samples, p=pb)
    d = haversine_km(la[ia], oa[ia], lb[ib], ob[ib])
    med, lo, hi = (float(x) for x in np.quantile(d, qs))
    return DistanceEstimate(med, lo, hi, level, method, samples, False)


def _country_mass(codes: NDArray[np.object_], p: NDArray[np.float64]) -> dict[str, float]:
    """Probability per country (points outside every country left out, the rest renormalised)."""
    mass: dict[str, float] = {}
    for c, q in zip(codes, p):
        if c is not None:
            mass[str(c)] = mass.get(str(c), 0.0) + float(q)
    total = sum(mass.values())
    return {c: q / total for c, q in mass.items()} if total > 0 else {}


# --------------------------------------------------------------------------- model side
class _Index:
    """The locator's retrieval index (L2-normalised training embeddings + places) and its 'near' threshold."""

    def __init__(self, locator: Any) -> None:
        ref = getattr(locator, "_refiner", None)
        self.vectors = None if ref is None else ref.vectors
        self.lat = None if ref is None else ref.lat
        self.lon = None if ref is None else ref.lon

    @property
    def available(self) -> bool:
        return self.vectors is not None and len(self.vectors) > 1

    def default_near(self, seed: int = 0) -> float:
        """Median similarity of a training photo to its most similar training photo of another place.

        Derived from the index alone (up to 2,000 rows against up to 20,000, fixed seed): a photo at least
        this similar to some training photo is as close to the training data as a typical training photo.
        """
        assert self.vectors is not None and self.lat is not None and self.lon is not None
        n = len(self.vectors)
        rng = np.random.default_rng(seed)
        rows = rng.choice(n, size=min(n, 2000), replace=False)
        cols = rng.choice(n, size=min(n, 20000), replace=False)
        sims = self.vectors[rows] @ self.vectors[cols].T
        same = haversine_km(self.lat[rows][:, None], self.lon[rows][:, None], self.lat[cols], self.lon[cols]) < 1.0
        sims = np.where(same, -np.inf, sims)
        best = sims.max(axis=1)
        return float(np.median(best[np.isfinite(best)]))

    def neighbours(self, x: NDArray[np.float32], k: int, temperature: float) -> tuple[float, Any, Any, Any]:
        """Best similarity and the ``k`` nearest training places with softmax weights."""
        assert self.vectors is not None and self.lat is not None and self.lon is not None
        sims = self.vectors @ x
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        w = np.exp((sims[top] - sims[top].max()) / temperature)
        return float(sims[top].max()), self.lat[top], self.lon[top], w / w.sum()


def compare_embeddings(
    locator: Any,
    X_a: NDArray[np.float32],
    X_b: NDArray[np.float32],
    *,
    ids_a: Sequence[str] | None = None,
    ids_b: Sequence[str] | None = None,
    level: float = 0.8,
    near_similarity: float | None = None,
    k: int = 8,
    temperature: float = 0.05,
    seed: int = 0,
) -> list[Comparison]:
    """Compare row ``i`` of ``X_a`` with row ``i`` of ``X_b`` (embeddings of the locator's backbone)."""
    from .places import country_of

    X_a = np.asarray(X_a, np.float32)
    X_b = np.asarray(X_b, np.float32)
    if X_a.shape != X_b.shape or X_a.ndim != 2:
        raise InvalidInput(f"compare needs two (n, D) embedding matrices of one shape, got {X_a.shape} and {X_b.shape}")
    n = len(X_a)
    ids_a = list(ids_a) if ids_a is not None else [f"a{i}" for i in range(n)]
    ids_b = list(ids_b) if ids_b is not None else [f"b{i}" for i in range(n)]
    dist = locator.head.predict_distribution(np.concatenate([X_a, X_b]))
    codes_shared = None
    if dist.lat.ndim == 1:  # one support for all inputs: look countries up once
        codes_shared = country_of(dist.lat, dist.lon, coast_km=50.0)
    index = _Index(locator)
    near = near_similarity
    if index.available and near is None:
        near = index.default_near(seed)
    out: list[Comparison] = []
    for i in range(n):
        sides = []
        for j in (i, n + i):
            lat, lon = dist.points(j)
            codes = codes_shared if codes_shared is not None else country_of(lat, lon, coast_km=50.0)
            sides.append((lat, lon, dist.prob[j], _country_mass(codes, dist.prob[j])))
        (la, oa, pa, ca), (lb, ob, pb, cb) = sides
        est = distance_distribution(la, oa, pa, lb, ob, pb, level=level, seed=seed)
        same = float(sum(q * cb.get(c, 0.0) for c, q in ca.items()))
        top_a = max(ca.items(), key=lambda kv: kv[1]) if ca else (None, 0.0)
        top_b = max(cb.items(), key=lambda kv: kv[1]) if cb else (None, 0.0)
        comp = Comparison(
            a=str(ids_a[i]),
            b=str(ids_b[i]),
            distance=est,
            same_country=same,
            country_a=top_a[0],
            country_a_probability=float(top_a[1]),
            country_b=top_b[0],
            country_b_probability=float(top_b[1]),
            near_similarity=near,
            model=getattr(locator, "name", None),
        )
        if index.available and near is not None:
            xa, xb = l2_normalize(X_a[i]), l2_normalize(X_b[i])
            sa, rla, rloa, wa = index.neighbours(xa, k, temperature)
            sb, rlb, rlob, wb = index.neighbours(xb, k, temperature)
            comp.similarity_a, comp.similarity_b = sa, sb
            if sa >= near and sb >= near:
                comp.retrieval = distance_distribution(
                    rla, rloa, wa, rlb, rlob, wb, level=level, seed=seed, method="retrieval"
                )
        out.append(comp)
    return out


def compare(
    a: Any,
    b: Any,
    model: Any = "geoscout-lite",
    *,
    level: float = 0.8,
    near_similarity: float | None = None,
    seed: int = 0,
) -> Comparison:
    """How far apart photos ``a`` and ``b`` (paths, bytes or PIL images) were probably taken.

    ``model`` is a model name, a bundle folder or a loaded :class:`~geoscout.locator.Locator`.
    ``level`` is the interval's coverage (0.8: from the 10th to the 90th percentile).
    """
    from .locator import Locator, _name_of, _named, load_model

    loc = model if isinstance(model, Locator) else load_model(model)
    names = [_name_of(a, 0), _name_of(b, 1)]
    X, failures = loc.embed([a, b])
    if failures:
        reasons = "; ".join(_named(f, [a, b][i], names[i]).message for i, f in sorted(failures.items()))
        raise InvalidInput(f"cannot compare: {reasons}")
    return compare_embeddings(
        loc, X[:1], X[1:], ids_a=names[:1], ids_b=names[1:], level=level, near_similarity=near_similarity, seed=seed
    )[0]
