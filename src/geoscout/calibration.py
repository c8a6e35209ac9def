"""Honest uncertainty: temperature scaling, conformal radii and the best guess under a predicted distribution.

A head predicts a distribution over support points (cell centroids). This module turns it into
what a user reads:

- :func:`temper` flattens (``T > 1``) or sharpens it: ``p_i^(1/T) / sum_j p_j^(1/T)``, which is
  ``softmax(logits / T)``. :func:`fit_temperature` picks ``T`` minimising the negative log-likelihood of
  the true cells on held-out locations (Guo et al. 2017).
- :func:`mass_radius_km` is the smallest radius around the guess holding a share ``q`` of the mass;
  :func:`conformal_scale` finds the factor ``s_q`` such that ``s_q * max(r_q, r_min)`` covers the truth
  for a share ``q`` of held-out photos (split-conformal quantile with the ``ceil((n + 1) q) / n`` rule).
- :func:`best_guess` picks the point to answer: the most probable support point (``mode``), the one
  maximising the expected GeoGuessr score (``expected-score``) or minimising the expected distance
  (``median``, a discrete geometric median), searched over the most probable support points and any
  extra points (refined candidates).

:class:`Calibration` holds the fitted numbers and travels in a model bundle's ``config.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidInput
from .geo import geoguessr_score, haversine_km, pairwise_haversine_km

__all__ = [
    "GUESS_RULES",
    "LEVELS",
    "Calibration",
    "best_guess",
    "conformal_scale",
    "fit_temperature",
    "mass_radius_km",
    "radius_coverage",
    "temper",
]

#: the probability levels of the stated radii (50 %, 68 %, 90 %)
LEVELS = (0.5, 0.68, 0.9)
GUESS_RULES = ("mode", "expected-score", "median")
#: candidate points searched by best_guess (most probable support points) and support points it integrates over
_GUESS_CANDIDATES = 256
_GUESS_SUPPORT = 4096


def temper(prob: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """Temperature-scaled probabilities along the last axis: ``p^(1/T)`` renormalised (``T = 1``: unchanged)."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise InvalidInput(f"temperature must be a positive number, got {temperature!r}")
    p = np.asarray(prob, dtype=np.float64)
    if temperature == 1.0:
        return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    logp = np.log(np.maximum(p, 1e-300)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    q = np.exp(logp) * (p > 0)
    return q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)


def fit_temperature(prob: ArrayLike, true_index: ArrayLike, *, bounds: tuple[float, float] = (0.05, 50.0)) -> float:
    """The temperature minimising the mean negative log-likelihood of ``true_index`` under :func:`temper`.

    ``prob`` (N, C) predicted probabilities, ``true_index`` (N,) the column of each row's true cell.
    """
    from scipy.optimize import minimize_scalar

    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != t.size or p.shape[0] == 0:
        raise InvalidInput(f"fit_temperature: prob {p.shape} and true_index {t.shape} disagree (or are empty)")
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise InvalidInput(f"fit_temperature: true_index must be in [0, {p.shape[1]})")
    logp = np.log(np.maximum(p, 1e-300))
    rows = np.arange(p.shape[0])

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z_max = z.max(axis=1)
        lse = z_max + np.log(np.exp(z - z_max[:, None]).sum(axis=1))
        return float(np.mean(lse - z[rows, t]))

    res = minimize_scalar(
        nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded", options={"xatol": 1e-6}
    )
    return float(math.exp(res.x))


def mass_radius_km(
    lat: ArrayLike, lon: ArrayLike, prob: ArrayLike, center: tuple[float, float], mass: float = 0.68
) -> float:
    """Smallest radius (km) around ``center`` holding at least ``mass`` of the probability on the support points."""
    lat, lon, prob = (np.asarray(a, dtype=np.float64) for a in (lat, lon, prob))
    d = haversine_km(center[0], center[1], lat, lon)
    order = np.argsort(d, kind="stable")
    cum = np.cumsum(prob[order]) / max(float(prob.sum()), 1e-12)
    i = int(np.searchsorted(cum, mass - 1e-9))
    return float(d[order][min(i, len(order) - 1)])


def conformal_scale(distances_km: ArrayLike, radii_km: ArrayLike, level: float, *, r_min_km: float = 0.0) -> float:
    """Split-conformal factor ``s`` with ``distance <= s * max(radius, r_min_km)`` for a share ``level`` of photos.

    The score of photo ``i`` is ``d_i / max(r_i, r_min)``; ``s`` is the ``ceil((n + 1) level)``-th smallest
    score (the finite-sample rule that guarantees at least ``level`` coverage on exchangeable new photos).
    """
    d = np.asarray(distances_km, dtype=np.float64).reshape(-1)
    r = np.maximum(np.asarray(radii_km, dtype=np.float64).reshape(-1), float(r_min_km))
    if d.size == 0 or d.shape != r.shape:
        raise InvalidInput(f"conformal_scale: {d.size} distances for {r.size} radii (need the same, at least one)")
    if not 0 < level < 1:
        raise InvalidInput(f"level must be in (0, 1), got {level}")
    if (r <= 0).any():
        raise InvalidInput("conformal_scale: radii must be > 0; pass r_min_km > 0 for point-mass predictions")
    scores = np.sort(d / r)
    k = min(math.ceil((d.size + 1) * level), d.size)
    return float(scores[k - 1])


def radius_coverage(distances_km: ArrayLike, radii_km: ArrayLike) -> float:
    """Observed coverage: the share of photos whose true place lies within the stated radius."""
    d = np.asarray(distances_km, dtype=np.float64)
    r = np.asarray(radii_km, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(r)
    return float(np.mean(d[ok] <= r[ok])) if ok.any() else float("nan")


def best_guess(
    lat: ArrayLike,
    lon: ArrayLike,
    prob: ArrayLike,
    rule: str = "expected-score",
    *,
    extra: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """The point to answer under the distribution ``prob`` on support points ``(lat, lon)``.

    Returns ``(lat, lon, expected GeoGuessr score there)``. ``mode``: the most probable support point;
    ``expected-score``: the candidate maximising the expected GeoGuessr score; ``median``: the candidate
    minimising the expected great-circle distance. Candidates are the most probable support points plus
    the ``extra`` (M, 2) points; the expectation runs over the most probable support points (nearly all
    the mass).
    """
    if rule not in GUESS_RULES:
        raise InvalidInput(f"guess rule {rule!r}: expected one of {', '.join(GUESS_RULES)}")
    lat, lon, p = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (lat, lon, prob))
    p = p / max(float(p.sum()), 1e-300)
    order = np.argsort(-p, kind="stable")
    sup = order[:_GUESS_SUPPORT]
    ps = p[sup] / max(float(p[sup].sum()), 1e-300)
    cand = order[:_GUESS_CANDIDATES]
    clat, clon = lat[cand], lon[cand]
    e = np.asarray(extra if extra is not None else np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    if e.size:
        clat, clon = np.concatenate([clat, e[:, 0]]), np.concatenate([clon, e[:, 1]])
    d = pairwise_haversine_km(clat, clon, lat[sup], lon[sup])  # (M, S)
    score = geoguessr_score(d) @ ps
    if rule == "mode":
        j = 0
    elif rule == "expected-score":
        j = int(np.argmax(score))
    else:
        j = int(np.argmin(d @ ps))
    return float(clat[j]), float(clon[j]), float(score[j])


@dataclass
class Calibration:
    """Fitted calibration of a model: ``temperature`` for its stated probabilities, radii and expected score,
    ``radius_scale`` (level -> factor) and ``r_min_km`` for its stated radii, and the default ``guess`` rule
    (applied to the untempered distribution), with where they were fitted."""

    temperature: float = 1.0
    radius_scale: dict[float, float] = field(default_factory=dict)
    r_min_km: float = 0.0
    guess: str = "expected-score"
    fitted_on: str = ""
    n: int = 0

    def __post_init__(self) -> None:
        if self.guess not in GUESS_RULES:
            raise InvalidInput(f"calibration guess rule {self.guess!r}: expected one of {', '.join(GUESS_RULES)}")
        self.radius_scale = {float(k): float(v) for k, v in self.radius_scale.items()}
        temper(np.ones(1), self.temperature)  # validates the temperature

    def radii(self, lat: ArrayLike, lon: ArrayLike, prob: ArrayLike, center: tuple[float, float]) -> dict[float, float]:
        """Stated radius (km) per level in :data:`LEVELS` around ``center`` for (already tempered) ``prob``."""
        out = {}
        for q in LEVELS:
            r = mass_radius_km(lat, lon, prob, center, q)
            s = self.radius_scale.get(q)
            out[q] = r if s is None else s * max(r, self.r_min_km)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "radius_scale": {f"{k:g}": v for k, v in self.radius_scale.items()},
            "r_min_km": self.r_min_km,
            "guess": self.guess,
            "fitted_on": self.fitted_on,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Calibration:
        if not d:
            return cls()
        try:
            return cls(
                temperature=float(d.get("temperature", 1.0)),
                radius_scale={float(k): float(v) for k, v in (d.get("radius_scale") or {}).items()},
                r_min_km=float(d.get("r_min_km", 0.0)),
                guess=str(d.get("guess", "expected-score")),
                fitted_on=str(d.get("fitted_on", "")),
                n=int(d.get("n", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"calibration section of the bundle is malformed: {exc}") from None
