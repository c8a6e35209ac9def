"""Bayesian fusion of the visual model's distribution with the cues read from the photo.

Over the head's support points ``i`` (cell centres or gallery points) with visual
probabilities ``p_i``::

    p_i' ∝ p_i * Π_k L_k(i) ** w_k

``L_k`` is cue ``k``'s likelihood at point ``i``: its country table at the point's country, or
for a place name ``floor + (1 - floor) * Σ_j a_j exp(-d(i, j) / (r_j + SUPPORT_KM))``. The
weights ``w_k`` (one per cue kind, the tempering exponents) are fitted on a validation split
by :meth:`CueFuser.fit`; ``w = 0`` ignores a kind, ``w = 1`` trusts it as a calibrated
likelihood. A strong place hit (``a_j >= ADD_MIN_WEIGHT``) adds its point to the support with the
prior mass of the most probable support point within reach (a uniform share if none), so a
town the head never put mass near can still win.

Independence assumed: given the place, the cues are independent of each other and of the
pixels the backbone saw. That is false in detail (a sign's script and its language come from
the same text; the backbone may have seen the sign too), which is why each kind is tempered
(``w < 1`` discounts double counting) and why one script and one language cue is counted per
photo, not one per line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput, NotFittedError
from ..geo import haversine_km
from .metadata import offset_likelihood
from .text import Evidence

__all__ = ["CUE_KINDS", "PRIOR_WEIGHTS", "WEIGHT_KINDS", "CueFuser", "Fused", "default_fuser", "weight_kind"]

#: cue kinds that carry a likelihood (``gps`` answers directly and is not fused)
CUE_KINDS = ("script", "language", "place", "phone", "domain", "currency", "utc_offset")
#: one tempering weight each: the cue kinds, with Latin script apart (Latin letters are on signs
#: everywhere, from English, brands and transliteration: it says far less than Cyrillic or Thai)
WEIGHT_KINDS = ("script", "script_latin", "language", "place", "phone", "domain", "currency", "utc_offset")
#: conservative weights a kind keeps until it is seen on at least ``min_count`` fitting photos
PRIOR_WEIGHTS = {
    "script": 0.5,
    "script_latin": 0.25,
    "language": 0.25,
    "place": 0.75,
    "phone": 0.75,
    "domain": 0.5,
    "currency": 0.5,
    "utc_offset": 0.5,
}
#: a kind seen on fewer fitting photos than this keeps its prior weight
MIN_COUNT = 8
#: place-hit distances are measured from support points that stand for areas this wide (km)
SUPPORT_KM = 100.0
POINT_FLOOR = 0.02
ADD_MIN_WEIGHT = 0.2
#: added points closer than this to one already added are the same place (a town and its region)
MERGE_KM = 25.0
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
WEIGHTS_FILE = Path(__file__).with_name("weights.json")


def weight_kind(e: Evidence) -> str:
    """The weight an evidence is tempered by: its kind, ``script_latin`` for Latin script."""
    return "script_latin" if e.kind == "script" and e.tag == "Latn" else e.kind


@dataclass
class Fused:
    """The fused distribution of one photo: support points (maybe with added ones) and probabilities."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    prob: NDArray[np.float64]
    n_visual: int  # the first n_visual points are the head's own; the rest were added by place hits
    countries: NDArray[np.object_]  # ISO alpha-2 (or None) of each point
    effects: list[dict[str, Any]]  # one per evidence, in order


def _country_likelihood(table: dict[str, float], countries: NDArray[np.object_]) -> NDArray[np.float64]:
    floor = min(table.values()) if table else 1.0
    return np.array([table.get(c, floor) if c is not None else floor for c in countries], dtype=np.float64)


def _point_likelihood(ev: Evidence, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    acc = np.zeros(len(lat))
    for la, lo, r, a in ev.points:
        acc += a * np.exp(-haversine_km(la, lo, lat, lon) / (r + SUPPORT_KM))
    return POINT_FLOOR + (1.0 - POINT_FLOOR) * np.minimum(acc, 1.0)


def likelihood(
    ev: Evidence, lat: NDArray[np.float64], lon: NDArray[np.float64], countries: NDArray[np.object_]
) -> NDArray[np.float64]:
    """The evidence's likelihood (up to a constant) at each support point."""
    if ev.kind == "utc_offset" and ev.utc_hours is not None:
        return np.asarray(offset_likelihood(ev.utc_hours, lon), dtype=np.float64)
    if ev.points:
        return _point_likelihood(ev, lat, lon)
    if ev.countries:
        return _country_likelihood(ev.countries, countries)
    return np.ones(len(lat))


class CueFuser:
    """Tempered Bayesian fusion of visual probabilities and cues (see the module doc).

    ``weights``: ``{kind: exponent}``; None means "fit me" (or use :func:`default_fuser` for the
    shipped weights fitted on validation data). Follows the scikit-learn estimator contract:
    ``fit`` sets ``weights_`` and returns self.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        *,
        grid: Sequence[float] = WEIGHT_GRID,
        min_count: int = MIN_COUNT,
        objective: str = "log_prob",
    ) -> None:
        self.weights = weights
        self.grid = grid
        self.min_count = min_count
        self.objective = objective

    # ---------------------------------------------------------------- fitting
    def fit(self, items: Sequence[tuple[Any, Any, Any, list[Evidence], float, float]]) -> CueFuser:
        """Fit one weight per cue kind: coordinate ascent over ``grid`` on the mean log probability
        of the true country.

        ``items``: ``(lat, lon, prob, evidence, true_lat, true_lon)`` per validation photo (the head's
        support and visual probabilities). A weight kind (:data:`WEIGHT_KINDS`) seen on fewer than
        ``min_count`` photos keeps its starting weight (``self.weights``, else :data:`PRIOR_WEIGHTS`):
        one or two lucky photos must not make a kind decisive. Those kinds are listed in ``unfitted_``.
        ``objective``: ``"log_prob"`` (mean log probability of the true country) or ``"accuracy"``
        (share of photos whose top answer is in the true country; log probability breaks ties).
        """
        if self.objective not in ("log_prob", "accuracy"):
            raise InvalidInput(f"objective must be 'log_prob' or 'accuracy', got {self.objective!r}")
        from ..places import country_of

        start = dict(self.weights or {})
        w = {k: float(start.get(k, PRIOR_WEIGHTS[k])) for k in WEIGHT_KINDS}
        prepared = []
        for lat, lon, prob, evs, tla, tlo in items:
            evs = [e for e in evs if e.kind in CUE_KINDS]
            if not evs:
                continue
            truth = country_of(np.array([tla]), np.array([tlo]))[0]
            prepared.append((np.asarray(lat, float), np.asarray(lon, float), np.asarray(prob, float), evs, truth))
        self.counts_ = {k: sum(any(weight_kind(e) == k for e in evs) for *_, evs, _ in prepared) for k in WEIGHT_KINDS}
        seen = {k for k, n in self.counts_.items() if n >= max(1, self.min_count)}

        def score(weights: dict[str, float]) -> float:
            total = 0.0
            for lat, lon, prob, evs, truth in prepared:
                f = _fuse(lat, lon, prob, evs, weights, explain=False)
                mass = float(f.prob[f.countries == truth].sum()) if truth is not None else 0.0
                if self.objective == "accuracy":  # top answer in the true country; log probability breaks ties
                    total += float(f.countries[int(np.argmax(f.prob))] == truth) + 1e-3 * math.log(mass + 1e-4)
                else:
                    total += math.log(mass + 1e-4)
            return total / max(len(prepared), 1)

        best = score(w)
        for _ in range(3):
            changed = False
            for k in WEIGHT_KINDS:
                if k not in seen:
                    continue
                for g in self.grid:
                    trial = {**w, k: float(g)}
                    s = score(trial)
                    if s > best + 1e-9:
                        best, w, changed = s, trial, True
            if not changed:
                break
        self.weights_ = w
        self.score_ = best
        self.unfitted_ = sorted(set(WEIGHT_KINDS) - seen)
        return self

    def _w(self) -> dict[str, float]:
        w = getattr(self, "weights_", None) or self.weights
        if w is None:
            raise NotFittedError("CueFuser has no weights: call fit() or pass weights={kind: exponent}")
        return w

    # ---------------------------------------------------------------- fusion
    def fuse(self, lat: Any, lon: Any, prob: Any, evidence: list[Evidence]) -> Fused:
        """Fuse one photo's visual distribution over support points with its evidence."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        prob = np.asarray(prob, dtype=np.float64)
        if not (lat.shape == lon.shape == prob.shape and lat.ndim == 1):
            raise InvalidInput(f"fuse: lat, lon and prob must be 1-D of one length, got {lat.shape} {prob.shape}")
        return _fuse(lat, lon, prob, evidence, self._w(), explain=True)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        from .._io import atomic_write_text

        body = {
            "weights": self._w(),
            "counts": getattr(self, "counts_", {}),
            "unfitted": getattr(self, "unfitted_", []),
            "score": getattr(self, "score_", None),
            **({"provenance": provenance} if provenance else {}),
        }
        return atomic_write_text(Path(path), json.dumps(body, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CueFuser:
        p = Path(path)
        try:
            body = json.loads(p.read_text(encoding="utf-8"))
            weights = {str(k): float(v) for k, v in body["weights"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"{p}: not a cue-weights file ({exc}); expected JSON with a 'weights' object") from None
        fuser = cls({**{k: v for k, v in PRIOR_WEIGHTS.items() if k not in weights}, **weights})
        fuser.counts_ = body.get("counts", {})
        fuser.unfitted_ = body.get("unfitted", [])
        return fuser


_COUNTRY_CACHE: dict[tuple[int, int, bytes], NDArray[np.object_]] = {}


def _countries_cached(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.object_]:
    """Country of each support point; cached, as the head's support is usually the same for every photo."""
    from ..places import country_of

    key = (len(lat), hash(lat.tobytes()), lon[:64].tobytes())
    hit = _COUNTRY_CACHE.get(key)
    if hit is None:
        hit = np.asarray(country_of(lat, lon), dtype=object)
        if len(_COUNTRY_CACHE) > 16:
            _COUNTRY_CACHE.clear()
        _COUNTRY_CACHE[key] = hit
    return hit


def _fuse(
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    prob: NDArray[np.float64],
    evidence: list[Evidence],
    weights: dict[str, float],
    *,
    explain: bool,
) -> Fused:
    from ..places import country_of

    evs = [e for e in evidence if e.kind in CUE_KINDS and weights.get(weight_kind(e), 0.0) > 0.0]
    n = len(lat)
    if not evs:
        return Fused(
            lat,
            lon,
            prob,
            n,
            _countries_cached(lat, lon),
            [_no_effect(e, weights) for e in evidence] if explain else [],
        )
    countries = _countries_cached(lat, lon)
    # strong place hits add their point, with the prior mass of the best support point within reach
    add_lat: list[float] = []
    add_lon: list[float] = []
    add_p: list[float] = []
    for e in evs:
        if e.kind != "place":
            continue
        for la, lo, r, a in e.points:
            if a < ADD_MIN_WEIGHT or any(haversine_km(la, lo, x, y) < MERGE_KM for x, y in zip(add_lat, add_lon)):
                continue
            d = haversine_km(la, lo, lat, lon)
            near = d < r + SUPPORT_KM
            add_lat.append(la)
            add_lon.append(lo)
            add_p.append(max(float(prob[near].max()) if near.any() else 0.0, 1.0 / max(n, 1)))
    if add_lat:
        lat = np.concatenate([lat, add_lat])
        lon = np.concatenate([lon, add_lon])
        prob = np.concatenate([prob, add_p])
        countries = np.concatenate([countries, np.asarray(country_of(np.array(add_lat), np.array(add_lon)), object)])
    prior = prob / max(float(prob.sum()), 1e-300)
    logp = np.log(np.maximum(prior, 1e-300))
    liks = []
    for e in evs:
        lik = likelihood(e, lat, lon, countries)
        liks.append(lik)
        logp = logp + weights[weight_kind(e)] * np.log(np.maximum(lik, 1e-12))
    post = np.exp(logp - logp.max())
    post /= post.sum()
    effects: list[dict[str, Any]] = []
    if explain:
        it = iter(liks)
        for e in evidence:
            if any(e is x for x in evs):
                effects.append(_effect(e, next(it), weights[weight_kind(e)], prior, post, countries))
            else:
                effects.append(_no_effect(e, weights))
    return Fused(lat, lon, post, n, countries, effects)


def _no_effect(e: Evidence, weights: dict[str, float]) -> dict[str, Any]:
    w = weights.get(weight_kind(e))
    return {"weight": w, "top": []} if w is not None else {"top": []}


def _effect(
    e: Evidence,
    lik: NDArray[np.float64],
    w: float,
    prior: NDArray[np.float64],
    post: NDArray[np.float64],
    countries: NDArray[np.object_],
) -> dict[str, Any]:
    """How this cue alone multiplies each country's probability (tempered likelihood over its prior average)."""
    tempered = lik**w
    ref = float((prior * tempered).sum())
    codes = np.array(["" if c is None else c for c in countries], dtype=object)
    out: dict[str, Any] = {"weight": w}
    ratios: dict[str, float] = {}
    for c in np.unique(codes):
        if not c:
            continue
        m = codes == c
        ratios[str(c)] = float(tempered[m].max()) / max(ref, 1e-300)
    if e.countries and not e.points:  # countries absent from the support still count in the table
        for c, v in e.countries.items():
            ratios.setdefault(c, float(v**w) / max(ref, 1e-300))
    top = sorted(ratios.items(), key=lambda kv: -kv[1])[:3]
    out["top"] = [[c, round(r, 3)] for c, r in top if r > 1.05]
    if out["top"]:
        c = out["top"][0][0]
        m = codes == c
        out["p_before"] = round(float(prior[m].sum()), 4)
        out["p_after"] = round(float(post[m].sum()), 4)
    if e.points:
        la, lo, r, _ = max(e.points, key=lambda p: p[3])
        out["point"] = [round(float(la), 5), round(float(lo), 5), round(float(r), 1)]
    return out


def default_fuser() -> CueFuser:
    """The fuser with the weights shipped in the package (fitted on a validation split; see weights.json)."""
    return CueFuser.load(WEIGHTS_FILE)
