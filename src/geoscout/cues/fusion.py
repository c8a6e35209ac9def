"""Bayesian fusion of the visual model's distribution with the cues read from the photo.

Over the head's support points ``i`` (cell centres or gallery points) with visual
probabilities ``p_i``::

    p_i' ∝ p_i * Π_k L_k(i),    L_k(i) = e_k + (1 - e_k) * t_k(i)

``t_k`` is cue ``k``'s table, scaled to at most 1: its country table at the point's country, or
for a place name ``Σ_j a_j exp(-d(i, j) / (r_j + SUPPORT_KM))`` (capped at 1). ``e_k`` is the
cue kind's **error rate**: the likelihood is a mixture of the cue being about where the photo
was taken (share ``1 - e_k``) and the cue saying nothing about it (share ``e_k``: a uniform
component, the same at every place). Latin letters on a brand or an English notice, Chinese on a
restaurant in San Francisco, a surname that is also a Belgian town, a misread: all are the
uniform part. A cue can then multiply a place's odds by at most ``1 / e_k``, so it overturns a
confident visual answer only when its kind has proved precise. The rates (one per kind, Latin
script apart: :data:`RATE_KINDS`) are fitted on validation data by :meth:`CueFuser.fit`
(maximum a posteriori: the log probability of the true country plus a Beta prior of
:data:`PRIOR_STRENGTH` pseudo-photos at :data:`PRIOR_ERROR_RATES`, so a kind seen on a few photos
stays near its conservative prior). ``e = 1`` ignores a kind.

A cue read from text the recogniser was unsure of counts less: with recognition score ``s``
(:attr:`Evidence.reading_score`; 1 for metadata) the reading is taken to be right with probability
``s``, and a wrong reading says nothing, so the cue's rate is ``1 - s * (1 - e_k)``
(:func:`error_rate_of`): a blurred sign read at score 0.6 moves the odds far less than a crisp one at
0.99. (This takes the score for the probability that the reading is right; PP-OCR's is the mean of
its characters' probabilities.)

A strong place hit (``a_j >= ADD_MIN_WEIGHT``) adds its point to the support with the prior mass
of the most probable support point within reach (a uniform share if none), so a town the head
never put mass near can still win.

Independence assumed: given the place, the cues are independent of each other and of the
pixels the backbone saw. That is false in detail (a sign's script and its language come from
the same text; the backbone may have seen the sign too); the fitted error rates absorb part of
the double counting, and one script and one language cue is counted per photo, not one per line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput, NotFittedError
from ..geo import haversine_km
from .metadata import offset_likelihood
from .text import Evidence

__all__ = [
    "CUE_KINDS",
    "PRIOR_ERROR_RATES",
    "RATE_KINDS",
    "CueFuser",
    "Fused",
    "default_fuser",
    "error_rate_of",
    "mixed_likelihood",
    "rate_kind",
]

#: cue kinds that carry a likelihood (``gps`` answers directly and is not fused)
CUE_KINDS = ("script", "language", "place", "phone", "domain", "currency", "utc_offset")
#: one error rate each: the cue kinds, with Latin script apart (Latin letters are on signs
#: everywhere, from English, brands and transliteration: it says far less than Cyrillic or Thai)
RATE_KINDS = ("script", "script_latin", "language", "place", "phone", "domain", "currency", "utc_offset")
#: prior error rates (the mean of each kind's Beta prior): a judgement, not fitted; conservative where
#: cues mislead often (Latin script, language, place names read off shop signs)
PRIOR_ERROR_RATES = {
    "script": 0.3,
    "script_latin": 0.7,
    "language": 0.5,
    "place": 0.5,
    "phone": 0.2,
    "domain": 0.3,
    "currency": 0.3,
    "utc_offset": 0.3,
}
#: weight of the prior in pseudo-photos: a kind seen on this many fitting photos weighs as much as its prior
PRIOR_STRENGTH = 8.0
#: place-hit distances are measured from support points that stand for areas this wide (km)
SUPPORT_KM = 100.0
ADD_MIN_WEIGHT = 0.2
#: added points closer than this to one already added are the same place (a town and its region)
MERGE_KM = 25.0
#: what :meth:`CueFuser.fit` maximises (see there)
OBJECTIVES = ("log_prob", "log_prob_country", "log_prob_near", "accuracy")
#: "near" the truth for the ``log_prob`` objective: the literature's country-scale threshold (km)
NEAR_KM = 750.0
RATE_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
RATES_FILE = Path(__file__).with_name("error_rates.json")


def rate_kind(e: Evidence) -> str:
    """The error rate an evidence is mixed with: its kind's, ``script_latin`` for Latin script."""
    return "script_latin" if e.kind == "script" and e.tag == "Latn" else e.kind


def error_rate_of(e: Evidence, rates: dict[str, float]) -> float:
    """The rate one evidence is mixed with: its kind's rate ``r``, raised for an unsure reading to
    ``1 - s * (1 - r)`` where ``s`` is its :attr:`~Evidence.reading_score` (1 for kinds without a rate)."""
    r = rates.get(rate_kind(e), 1.0)
    s = min(1.0, max(0.0, float(e.reading_score)))
    return 1.0 - s * (1.0 - r)


@dataclass
class Fused:
    """The fused distribution of one photo: support points (maybe with added ones) and probabilities."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    prob: NDArray[np.float64]
    n_visual: int  # the first n_visual points are the head's own; the rest were added by place hits
    countries: NDArray[np.object_]  # ISO alpha-2 (or None) of each point
    effects: list[dict[str, Any]]  # one per evidence, in order
    #: the product of the cues' mixed likelihoods at each point: ``prob ∝ visual prior * likelihood``
    likelihood: NDArray[np.float64] | None = None
    #: for each added point, the visual point whose prior mass it took (-1: a uniform share)
    donors: list[int] = field(default_factory=list)

    def rescored(self, visual: NDArray[np.float64]) -> NDArray[np.float64]:
        """The same cues applied once to another version of the visual distribution over the head's
        points (e.g. the untempered one an answer is chosen from): ``visual * likelihood``, renormalised;
        an added point takes the mass of the same donor point as here."""
        v = np.asarray(visual, dtype=np.float64)
        v = v / max(float(v.sum()), 1e-300)
        if self.likelihood is None:
            return v
        n = len(v)
        base = np.concatenate([v, [max(float(v[d]) if d >= 0 else 0.0, 1.0 / max(n, 1)) for d in self.donors]])
        out = base * self.likelihood
        return out / max(float(out.sum()), 1e-300)


def _country_likelihood(table: dict[str, float], countries: NDArray[np.object_]) -> NDArray[np.float64]:
    top = max(table.values()) if table else 1.0
    floor = min(table.values()) if table else 1.0
    vals = np.array([table.get(c, floor) if c is not None else floor for c in countries], dtype=np.float64)
    return vals / max(top, 1e-12)


def _point_likelihood(ev: Evidence, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    acc = np.zeros(len(lat))
    for la, lo, r, a in ev.points:
        acc += a * np.exp(-haversine_km(la, lo, lat, lon) / (r + SUPPORT_KM))
    return np.minimum(acc, 1.0)


def likelihood(
    ev: Evidence, lat: NDArray[np.float64], lon: NDArray[np.float64], countries: NDArray[np.object_]
) -> NDArray[np.float64]:
    """The evidence's table ``t`` at each support point, scaled to at most 1 (before the error-rate mixture)."""
    if ev.kind == "utc_offset" and ev.utc_hours is not None:
        return np.asarray(offset_likelihood(ev.utc_hours, lon), dtype=np.float64)
    if ev.points:
        return _point_likelihood(ev, lat, lon)
    if ev.countries:
        return _country_likelihood(ev.countries, countries)
    return np.ones(len(lat))


def mixed_likelihood(table: NDArray[np.float64], error_rate: float) -> NDArray[np.float64]:
    """``e + (1 - e) * t``: the cue is about this place with probability ``1 - e``, noise (uniform) with ``e``."""
    return error_rate + (1.0 - error_rate) * np.asarray(table, dtype=np.float64)


class CueFuser:
    """Bayesian fusion of visual probabilities and cues, each cue kind mixed with a uniform
    component by its error rate (see the module doc).

    ``error_rates``: ``{kind: e}`` over :data:`RATE_KINDS` (missing kinds take
    :data:`PRIOR_ERROR_RATES`); None means "fit me" (or use :func:`default_fuser` for the shipped
    rates fitted on validation data). Follows the scikit-learn estimator contract: ``fit`` sets
    ``error_rates_`` and returns self.
    """

    def __init__(
        self,
        error_rates: dict[str, float] | None = None,
        *,
        grid: Sequence[float] = RATE_GRID,
        prior_strength: float = PRIOR_STRENGTH,
        objective: str = "log_prob",
        near_km: float = NEAR_KM,
    ) -> None:
        self.error_rates = error_rates
        self.grid = grid
        self.prior_strength = prior_strength
        self.objective = objective
        self.near_km = near_km

    # ---------------------------------------------------------------- fitting
    def fit(self, items: Sequence[tuple[Any, Any, Any, list[Evidence], float, float]]) -> CueFuser:
        """Fit one error rate per kind (:data:`RATE_KINDS`): coordinate ascent over ``grid``.

        ``items``: ``(lat, lon, prob, evidence, true_lat, true_lon)`` per validation photo (the head's
        support and visual probabilities). ``objective="log_prob"`` maximises the mean log
        probability of the true country (what country accuracy scores) plus that of the places
        within ``near_km`` of the true place (what distance scores: a neighbour country's town
        next to the truth is nearly right; also defined for truths at sea or in a country the
        head has no cell in), plus, per kind, the log density of a Beta prior with mean
        ``self.error_rates`` (else :data:`PRIOR_ERROR_RATES`) worth ``prior_strength`` photos, divided
        by the number of photos: a kind seen on a few photos stays near its prior, one seen on many
        follows the data (maximum a posteriori). ``objective="accuracy"`` maximises the share of
        photos whose most probable point is in the true country (log probability breaks ties; no
        prior). Kinds seen on no photo keep their prior rate (listed in ``unfitted_``).
        """
        if self.objective not in OBJECTIVES:
            raise InvalidInput(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        prior = {k: float((self.error_rates or {}).get(k, PRIOR_ERROR_RATES[k])) for k in RATE_KINDS}
        rates = dict(prior)
        prepared = _prepare(items)
        self.counts_ = {k: sum(any(rate_kind(e) == k for e in p[3]) for p in prepared) for k in RATE_KINDS}
        seen = [k for k in RATE_KINDS if self.counts_[k] > 0]
        n = max(len(prepared), 1)

        def log_prior(r: dict[str, float]) -> float:
            total = 0.0
            for k in seen:
                m = min(max(prior[k], 1e-3), 1 - 1e-3)
                a, b = self.prior_strength * m, self.prior_strength * (1 - m)
                total += (a - 1) * math.log(r[k]) + (b - 1) * math.log(1 - r[k]) if 0 < r[k] < 1 else -math.inf
            return total

        def score(r: dict[str, float]) -> float:
            total = _objective_sum(prepared, r, self.objective, self.near_km)
            if self.objective == "accuracy":
                return total / n
            return (total + log_prior(r)) / n

        best = score(rates)
        for _ in range(3):
            changed = False
            for k in seen:
                for g in self.grid:
                    trial = {**rates, k: float(g)}
                    s = score(trial)
                    if s > best + 1e-9:
                        best, rates, changed = s, trial, True
            if not changed:
                break
        self.error_rates_ = rates
        self.score_ = best
        self.unfitted_ = sorted(set(RATE_KINDS) - set(seen))
        return self

    def score(self, items: Sequence[tuple[Any, Any, Any, list[Evidence], float, float]]) -> float:
        """The fitting objective (without the prior) per photo with cues, on other ``items`` (held-out
        validation data; the same tuples as :meth:`fit`); nan when no item has a cue."""
        prepared = _prepare(items)
        if not prepared:
            return float("nan")
        return _objective_sum(prepared, self._rates(), self.objective, self.near_km) / len(prepared)

    def _rates(self) -> dict[str, float]:
        r = getattr(self, "error_rates_", None) or self.error_rates
        if r is None:
            raise NotFittedError("CueFuser has no error rates: call fit() or pass error_rates={kind: rate}")
        return {**PRIOR_ERROR_RATES, **r}

    # ---------------------------------------------------------------- fusion
    def fuse(self, lat: Any, lon: Any, prob: Any, evidence: list[Evidence]) -> Fused:
        """Fuse one photo's visual distribution over support points with its evidence."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        prob = np.asarray(prob, dtype=np.float64)
        if not (lat.shape == lon.shape == prob.shape and lat.ndim == 1):
            raise InvalidInput(f"fuse: lat, lon and prob must be 1-D of one length, got {lat.shape} {prob.shape}")
        return _fuse(lat, lon, prob, evidence, self._rates(), explain=True)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        from .._io import atomic_write_text

        body = {
            "error_rates": self._rates(),
            "counts": getattr(self, "counts_", {}),
            "unfitted": getattr(self, "unfitted_", []),
            "score": getattr(self, "score_", None),
            "prior": {"error_rates": dict(PRIOR_ERROR_RATES), "strength": self.prior_strength},
            **({"provenance": provenance} if provenance else {}),
        }
        return atomic_write_text(Path(path), json.dumps(body, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CueFuser:
        p = Path(path)
        try:
            body = json.loads(p.read_text(encoding="utf-8"))
            rates = {str(k): float(v) for k, v in body["error_rates"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"{p}: not a cue error-rates file ({exc!r}); expected JSON with an 'error_rates' object "
                "(files from before error rates held tempering 'weights': refit with benchmarks/cues.py --write-weights)"
            ) from None
        bad = {k: v for k, v in rates.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise InvalidInput(f"{p}: error rates must lie in [0, 1], got {bad}")
        fuser = cls({**PRIOR_ERROR_RATES, **rates})
        fuser.counts_ = body.get("counts", {})
        fuser.unfitted_ = body.get("unfitted", [])
        return fuser


def _prepare(items: Sequence[tuple[Any, Any, Any, list[Evidence], float, float]]) -> list[tuple[Any, ...]]:
    """The items with at least one fusable cue, as arrays, with the true country."""
    from ..places import country_of

    prepared = []
    for lat, lon, prob, evs, tla, tlo in items:
        evs = [e for e in evs if e.kind in CUE_KINDS]
        if not evs:
            continue
        truth = country_of(np.array([tla]), np.array([tlo]))[0]
        prepared.append((np.asarray(lat, float), np.asarray(lon, float), np.asarray(prob, float), evs, truth, tla, tlo))
    return prepared


def _objective_sum(prepared: list[tuple[Any, ...]], rates: dict[str, float], objective: str, near_km: float) -> float:
    """The sum over photos of :meth:`CueFuser.fit`'s objective (no prior)."""
    total = 0.0
    for lat, lon, prob, evs, truth, tla, tlo in prepared:
        f = _fuse(lat, lon, prob, evs, rates, explain=False)
        mass = float(f.prob[f.countries == truth].sum()) if truth is not None else 0.0
        if objective == "accuracy":  # top answer in the true country; log probability breaks ties
            total += float(f.countries[int(np.argmax(f.prob))] == truth) + 1e-3 * math.log(mass + 1e-4)
            continue
        if objective in ("log_prob", "log_prob_country"):
            total += math.log(mass + 1e-4)
        if objective in ("log_prob", "log_prob_near"):
            near = float(f.prob[haversine_km(tla, tlo, f.lat, f.lon) < near_km].sum())
            total += math.log(near + 1e-4)
    return total


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
    rates: dict[str, float],
    *,
    explain: bool,
) -> Fused:
    from ..places import country_of

    evs = [e for e in evidence if e.kind in CUE_KINDS and error_rate_of(e, rates) < 1.0]
    n = len(lat)
    if not evs:
        return Fused(
            lat,
            lon,
            prob,
            n,
            _countries_cached(lat, lon),
            [_no_effect(e, rates) for e in evidence] if explain else [],
        )
    countries = _countries_cached(lat, lon)
    # strong place hits add their point, with the prior mass of the best support point within reach
    add_lat: list[float] = []
    add_lon: list[float] = []
    add_p: list[float] = []
    donors: list[int] = []
    prob = prob / max(float(prob.sum()), 1e-300)
    for e in evs:
        if e.kind != "place":
            continue
        for la, lo, r, a in e.points:
            if a < ADD_MIN_WEIGHT or any(haversine_km(la, lo, x, y) < MERGE_KM for x, y in zip(add_lat, add_lon)):
                continue
            near = np.flatnonzero(haversine_km(la, lo, lat, lon) < r + SUPPORT_KM)
            donor = int(near[np.argmax(prob[near])]) if len(near) else -1
            add_lat.append(la)
            add_lon.append(lo)
            donors.append(donor)
            add_p.append(max(float(prob[donor]) if donor >= 0 else 0.0, 1.0 / max(n, 1)))
    if add_lat:
        lat = np.concatenate([lat, add_lat])
        lon = np.concatenate([lon, add_lon])
        prob = np.concatenate([prob, add_p])
        countries = np.concatenate([countries, np.asarray(country_of(np.array(add_lat), np.array(add_lon)), object)])
    prior = prob / max(float(prob.sum()), 1e-300)
    liks = [mixed_likelihood(likelihood(e, lat, lon, countries), error_rate_of(e, rates)) for e in evs]
    total = np.prod(liks, axis=0)
    post = prior * total
    post /= max(float(post.sum()), 1e-300)
    effects: list[dict[str, Any]] = []
    if explain:
        it = iter(liks)
        for e in evidence:
            if any(e is x for x in evs):
                effects.append(_effect(e, next(it), error_rate_of(e, rates), prior, post, countries))
            else:
                effects.append(_no_effect(e, rates))
    return Fused(lat, lon, post, n, countries, effects, total, donors)


def _no_effect(e: Evidence, rates: dict[str, float]) -> dict[str, Any]:
    r = error_rate_of(e, rates) if e.kind in CUE_KINDS and rate_kind(e) in rates else None
    return {"error_rate": r, "reading_score": e.reading_score, "top": []} if r is not None else {"top": []}


def _effect(
    e: Evidence,
    lik: NDArray[np.float64],
    rate: float,
    prior: NDArray[np.float64],
    post: NDArray[np.float64],
    countries: NDArray[np.object_],
) -> dict[str, Any]:
    """How this cue alone multiplies each country's probability (mixed likelihood over its prior average)."""
    ref = float((prior * lik).sum())
    codes = np.array(["" if c is None else c for c in countries], dtype=object)
    out: dict[str, Any] = {"error_rate": rate, "reading_score": round(float(e.reading_score), 3)}
    ratios: dict[str, float] = {}
    for c in np.unique(codes):
        if not c:
            continue
        m = codes == c
        ratios[str(c)] = float(lik[m].max()) / max(ref, 1e-300)
    if e.countries and not e.points:  # countries absent from the support still count in the table
        table_peak = max(e.countries.values())
        for c, v in e.countries.items():
            ratios.setdefault(c, float(rate + (1.0 - rate) * v / table_peak) / max(ref, 1e-300))
    # ties (Latin script favours a hundred countries alike) are listed by where the answer now is, not A-Z
    mass = {str(c): float(post[codes == c].sum()) for c in np.unique(codes) if c}
    peak = max(ratios.values(), default=1.0)

    def rank(kv: tuple[str, float]) -> tuple[bool, float]:
        tied = kv[1] >= 0.99 * peak
        return (not tied, -mass.get(kv[0], 0.0) if tied else -kv[1])

    best = sorted(ratios.items(), key=rank)[:3]
    out["top"] = [[c, round(r, 3)] for c, r in best if r > 1.05]
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
    """The fuser with the error rates shipped in the package (fitted on validation data; see error_rates.json)."""
    return CueFuser.load(RATES_FILE)
