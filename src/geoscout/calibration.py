"""Honest uncertainty: temperature scaling, conformal radii and the best guess under a predicted distribution.

A head predicts a distribution over support points (cell centroids). This module turns it into
what a user reads:

- :func:`temper` flattens (``T > 1``) or sharpens it: ``p_i^(1/T) / sum_j p_j^(1/T)``, which is
  ``softmax(logits / T)``. :func:`fit_temperature` picks ``T`` minimising the negative log-likelihood of
  the true cells on held-out locations (Guo et al. 2017).
- :func:`mass_radius_km` is the smallest radius around the guess holding a share ``q`` of the mass;
  :func:`conformal_scale` finds the factor ``s_q`` such that ``s_q * max(r_q, r_min)`` covers the truth
  for a share ``q`` of held-out photos (split-conformal quantile with the ``ceil((n + 1) q) / n`` rule).
- :func:`novelty` measures how unlike the training data a photo is (1 - mean cosine similarity to its ``k``
  most similar training embeddings); :func:`fit_novelty_temperature` fits a temperature that grows with it,
  ``T(z) = T0 * exp(slope * (z - z0))``, by the same likelihood, so photos unlike anything the model was
  trained on get flatter distributions, wider radii and a lower expected score. Radius factors can be
  fitted per novelty bin (Mondrian conformal: coverage holds within each bin, not only on average).
- :func:`best_guess` picks the point to answer: the most probable support point (``mode``), the one
  maximising the expected GeoGuessr score (``expected-score``) or minimising the expected distance
  (``median``, a discrete geometric median), searched over the most probable support points and any
  extra points (refined candidates).

:class:`Calibration` holds the fitted numbers and travels in a model bundle's ``config.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidInput
from .geo import geoguessr_score, haversine_km, pairwise_haversine_km

__all__ = [
    "CALIBRATION_METHODS",
    "GUESS_RULES",
    "LEVELS",
    "TEMPERATURE_OBJECTIVES",
    "Calibration",
    "CalibrationRecords",
    "best_guess",
    "calibration_report",
    "conformal_scale",
    "fit_calibration",
    "fit_novelty_temperature",
    "fit_score_temperature",
    "fit_temperature",
    "mass_radii_km",
    "mass_radius_km",
    "novelty",
    "radius_coverage",
    "temper",
]

#: the probability levels of the stated radii (50 %, 68 %, 90 %)
LEVELS = (0.5, 0.68, 0.9)
GUESS_RULES = ("mode", "expected-score", "median")
CALIBRATION_METHODS = ("global", "novelty", "mondrian", "novelty+mondrian")
TEMPERATURE_OBJECTIVES = ("nll", "score")
#: temperatures are kept within these bounds
_T_BOUNDS = (0.05, 50.0)
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


def novelty(X: ArrayLike, reference: ArrayLike, k: int = 10, *, chunk: int = 1024) -> NDArray[np.float64]:
    """How unlike ``reference`` each row of ``X`` is: ``1 -`` the mean cosine similarity to its ``k`` most
    similar reference rows (both (n, d), L2-normalised; 0 for a photo seen in training, near 1 for unrelated)."""
    x = np.asarray(X, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if x.ndim != 2 or r.ndim != 2 or x.shape[1] != r.shape[1] or len(r) == 0:
        raise InvalidInput(f"novelty: embeddings {x.shape} and reference {r.shape} must be (n, d) with the same d")
    if k < 1:
        raise InvalidInput(f"novelty: k must be >= 1, got {k}")
    k = min(k, len(r))
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), chunk):
        sims = x[s : s + chunk] @ r.T
        top = np.partition(sims, len(r) - k, axis=1)[:, len(r) - k :]
        out[s : s + chunk] = 1.0 - top.mean(axis=1)
    return out


def fit_novelty_temperature(
    prob: ArrayLike, true_index: ArrayLike, novelty: ArrayLike, *, center: float | None = None
) -> tuple[float, float, float]:
    """``(T0, slope, z0)`` minimising the mean NLL of ``true_index`` with ``T_i = T0 * exp(slope * (z_i - z0))``.

    ``z0`` defaults to the median novelty; each ``T_i`` is kept within ``[0.05, 50]``.
    """
    from scipy.optimize import minimize

    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(true_index, dtype=np.int64).reshape(-1)
    z = np.asarray(novelty, dtype=np.float64).reshape(-1)
    if p.ndim != 2 or not (p.shape[0] == t.size == z.size) or p.shape[0] == 0:
        raise InvalidInput(f"fit_novelty_temperature: prob {p.shape}, true_index {t.shape}, novelty {z.shape} disagree")
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise InvalidInput(f"fit_novelty_temperature: true_index must be in [0, {p.shape[1]})")
    z0 = float(np.median(z)) if center is None else float(center)
    logp = np.log(np.maximum(p, 1e-300))
    rows = np.arange(p.shape[0])
    lo, hi = math.log(_T_BOUNDS[0]), math.log(_T_BOUNDS[1])

    def nll(theta: NDArray[np.float64]) -> float:
        log_t = np.clip(theta[0] + theta[1] * (z - z0), lo, hi)
        zz = logp / np.exp(log_t)[:, None]
        z_max = zz.max(axis=1)
        lse = z_max + np.log(np.exp(zz - z_max[:, None]).sum(axis=1))
        return float(np.mean(lse - zz[rows, t]))

    t_global = fit_temperature(p, t)
    best = minimize(
        nll, np.array([math.log(t_global), 0.0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9}
    )
    return float(math.exp(best.x[0])), float(best.x[1]), z0


def fit_score_temperature(
    prob: ArrayLike,
    point_scores: ArrayLike,
    scored: ArrayLike,
    novelty: ArrayLike | None = None,
    *,
    center: float | None = None,
) -> tuple[float, float, float]:
    """``(T0, slope, z0)`` whose expected GeoGuessr scores best predict the scores achieved.

    Minimises the mean of ``(E_i - scored_i)^2`` with ``E_i = sum_j temper(prob_i, T_i)_j * point_scores_ij``
    (``point_scores_ij``: the score of photo ``i``'s answer if the truth were support point ``j``) and
    ``T_i = T0 * exp(slope * (z_i - z0))``; without ``novelty`` the slope stays 0. ``z0``: the median novelty.
    """
    from scipy.optimize import minimize, minimize_scalar

    p = np.asarray(prob, dtype=np.float64)
    sc = np.asarray(point_scores, dtype=np.float64)
    y = np.asarray(scored, dtype=np.float64).reshape(-1)
    if p.ndim != 2 or p.shape != sc.shape or p.shape[0] != y.size or y.size == 0:
        raise InvalidInput(f"fit_score_temperature: prob {p.shape}, point_scores {sc.shape}, scored {y.shape} disagree")
    logp = np.log(np.maximum(p, 1e-300))
    lo, hi = math.log(_T_BOUNDS[0]), math.log(_T_BOUNDS[1])
    z = None if novelty is None else np.asarray(novelty, dtype=np.float64).reshape(-1)
    z0 = 0.0 if z is None else (float(np.median(z)) if center is None else float(center))

    def loss_at(log_t: NDArray[np.float64]) -> float:
        zz = logp / np.exp(np.clip(log_t, lo, hi))[:, None]
        q = np.exp(zz - zz.max(axis=1, keepdims=True)) * (p > 0)
        e = (q * sc).sum(axis=1) / q.sum(axis=1)
        return float(np.mean((e - y) ** 2))

    g = minimize_scalar(lambda lt: loss_at(np.full(y.size, lt)), bounds=(lo, hi), method="bounded")
    if z is None:
        return float(math.exp(g.x)), 0.0, z0
    if z.size != y.size:
        raise InvalidInput(f"fit_score_temperature: {z.size} novelties for {y.size} photos")
    best = minimize(
        lambda th: loss_at(th[0] + th[1] * (z - z0)),
        np.array([g.x, 0.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-6, "fatol": 1e-6},
    )
    return float(math.exp(best.x[0])), float(best.x[1]), z0


def mass_radius_km(
    lat: ArrayLike, lon: ArrayLike, prob: ArrayLike, center: tuple[float, float], mass: float = 0.68
) -> float:
    """Smallest radius (km) around ``center`` holding at least ``mass`` of the probability on the support points."""
    return mass_radii_km(lat, lon, prob, center, (mass,))[0]


def mass_radii_km(
    lat: ArrayLike, lon: ArrayLike, prob: ArrayLike, center: tuple[float, float], masses: Sequence[float]
) -> list[float]:
    """:func:`mass_radius_km` for several masses at once (one distance sort: GeoCLIP's 100k-point support)."""
    lat, lon, prob = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (lat, lon, prob))
    d = haversine_km(center[0], center[1], lat, lon)
    total = max(float(prob.sum()), 1e-12)
    target = max(masses, default=0.0) - 1e-9
    k = min(d.size, 1024)
    while True:  # the nearest k points in stable distance order (the head of a full sort), until they hold the mass
        order = _top_stable(-d, k)
        cum = np.cumsum(prob[order]) / total
        if k == d.size or (cum.size and cum[-1] >= target):
            break
        k = min(d.size, 8 * k)
    d_sorted = d[order]
    return [float(d_sorted[min(int(np.searchsorted(cum, m - 1e-9)), len(order) - 1)]) for m in masses]


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


def _top_stable(p: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """``np.argsort(-p, kind="stable")[:k]`` without sorting all of ``p`` (ties keep index order)."""
    if k >= p.size:
        return np.argsort(-p, kind="stable")
    kth = np.partition(-p, k - 1)[k - 1]
    strict = np.flatnonzero(-p < kth)
    ties = np.flatnonzero(-p == kth)[: k - strict.size]
    sel = np.concatenate([strict, ties])
    return sel[np.lexsort((sel, -p[sel]))]


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
    order = _top_stable(p, _GUESS_SUPPORT)
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
    """Fitted calibration of a model, with where it was fitted (``fitted_on``, ``n`` photos).

    ``temperature`` tempers the stated probabilities, radii and expected score; with ``novelty_k`` > 0 it
    depends on the photo's novelty ``z`` (see :func:`novelty`): ``T(z) = temperature * exp(novelty_slope *
    (z - novelty_center))``. Stated radii are ``factor * max(mass radius, r_min_km)``, the factor per level
    from ``radius_scale``, or, with ``novelty_edges``, from ``radius_scale_bins`` for the photo's novelty bin
    (Mondrian). ``guess`` is the default answer rule (applied to the untempered distribution).
    """

    temperature: float = 1.0
    radius_scale: dict[float, float] = field(default_factory=dict)
    r_min_km: float = 0.0
    guess: str = "expected-score"
    fitted_on: str = ""
    n: int = 0
    method: str = "global"
    #: what the temperature was fitted to: "nll" (likelihood of the true cells) or "score" (expected vs achieved)
    objective: str = "nll"
    novelty_k: int = 0
    novelty_center: float = 0.0
    novelty_slope: float = 0.0
    novelty_edges: tuple[float, ...] = ()
    radius_scale_bins: tuple[dict[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.guess not in GUESS_RULES:
            raise InvalidInput(f"calibration guess rule {self.guess!r}: expected one of {', '.join(GUESS_RULES)}")
        if self.objective not in TEMPERATURE_OBJECTIVES:
            raise InvalidInput(
                f"calibration objective {self.objective!r}: expected one of {', '.join(TEMPERATURE_OBJECTIVES)}"
            )
        if self.method not in CALIBRATION_METHODS:
            raise InvalidInput(f"calibration method {self.method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
        self.radius_scale = {float(k): float(v) for k, v in self.radius_scale.items()}
        self.novelty_edges = tuple(float(e) for e in self.novelty_edges)
        self.radius_scale_bins = tuple({float(k): float(v) for k, v in b.items()} for b in self.radius_scale_bins)
        if self.novelty_edges and len(self.radius_scale_bins) != len(self.novelty_edges) + 1:
            raise InvalidInput(
                f"calibration: {len(self.novelty_edges)} novelty edges need {len(self.novelty_edges) + 1} radius "
                f"scale bins, got {len(self.radius_scale_bins)}"
            )
        temper(np.ones(1), self.temperature)  # validates the temperature

    @property
    def uses_novelty(self) -> bool:
        """Whether the photo's novelty changes its temperature or radius factors (needs training embeddings)."""
        return self.novelty_k > 0 and (self.novelty_slope != 0.0 or bool(self.novelty_edges))

    def temperature_at(self, novelty: float | None = None) -> float:
        """The temperature for a photo of this ``novelty`` (``None``: the base temperature)."""
        if novelty is None or not math.isfinite(novelty) or not self.novelty_k or self.novelty_slope == 0.0:
            return self.temperature
        t = self.temperature * math.exp(self.novelty_slope * (float(novelty) - self.novelty_center))
        return float(min(max(t, _T_BOUNDS[0]), _T_BOUNDS[1]))

    def scales_at(self, novelty: float | None = None) -> dict[float, float]:
        """Radius factor per level for a photo of this ``novelty`` (its Mondrian bin, else the global factors)."""
        if novelty is None or not math.isfinite(novelty) or not self.novelty_edges:
            return self.radius_scale
        return self.radius_scale_bins[int(np.searchsorted(self.novelty_edges, float(novelty), side="right"))]

    def radii(
        self,
        lat: ArrayLike,
        lon: ArrayLike,
        prob: ArrayLike,
        center: tuple[float, float],
        novelty: float | None = None,
    ) -> dict[float, float]:
        """Stated radius (km) per level in :data:`LEVELS` around ``center`` for (already tempered) ``prob``."""
        scales = self.scales_at(novelty)
        out = {}
        for q, r in zip(LEVELS, mass_radii_km(lat, lon, prob, center, LEVELS)):
            s = scales.get(q)
            out[q] = r if s is None else s * max(r, self.r_min_km)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "temperature": self.temperature,
            "radius_scale": {f"{k:g}": v for k, v in self.radius_scale.items()},
            "r_min_km": self.r_min_km,
            "guess": self.guess,
            "fitted_on": self.fitted_on,
            "n": self.n,
            "method": self.method,
            "objective": self.objective,
        }
        if self.novelty_k:
            d |= {
                "novelty_k": self.novelty_k,
                "novelty_center": self.novelty_center,
                "novelty_slope": self.novelty_slope,
                "novelty_edges": list(self.novelty_edges),
                "radius_scale_bins": [{f"{k:g}": v for k, v in b.items()} for b in self.radius_scale_bins],
            }
        return d

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
                method=str(d.get("method", "global")),
                objective=str(d.get("objective", "nll")),
                novelty_k=int(d.get("novelty_k", 0)),
                novelty_center=float(d.get("novelty_center", 0.0)),
                novelty_slope=float(d.get("novelty_slope", 0.0)),
                novelty_edges=tuple(float(e) for e in d.get("novelty_edges") or ()),
                radius_scale_bins=tuple(
                    {float(k): float(v) for k, v in b.items()} for b in d.get("radius_scale_bins") or ()
                ),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"calibration section of the bundle is malformed: {exc}") from None


@dataclass
class CalibrationRecords:
    """What calibration needs of held-out photos, whatever the method: per photo the model's own (untempered)
    probabilities ``prob`` on its support points ``(lat, lon)``, the true cell's column ``label`` (-1: none),
    the ``novelty`` (NaN: not measured), the answered point ``answer`` (its rule applied to the untempered
    distribution, so no calibration changes it) and its distance ``d_km`` to the truth. Records of several
    models (cross-fitting) concatenate with :meth:`concat`."""

    prob: list[NDArray[np.float64]]
    lat: list[NDArray[np.float64]]
    lon: list[NDArray[np.float64]]
    label: NDArray[np.int64]
    novelty: NDArray[np.float64]
    answer: NDArray[np.float64]
    d_km: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.prob)

    def take(self, rows: ArrayLike) -> CalibrationRecords:
        idx = np.flatnonzero(np.asarray(rows)) if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
        return CalibrationRecords(
            [self.prob[i] for i in idx],
            [self.lat[i] for i in idx],
            [self.lon[i] for i in idx],
            self.label[idx],
            self.novelty[idx],
            self.answer[idx],
            self.d_km[idx],
        )

    @staticmethod
    def concat(parts: list[CalibrationRecords]) -> CalibrationRecords:
        return CalibrationRecords(
            [p for r in parts for p in r.prob],
            [p for r in parts for p in r.lat],
            [p for r in parts for p in r.lon],
            np.concatenate([r.label for r in parts]),
            np.concatenate([r.novelty for r in parts]),
            np.concatenate([r.answer for r in parts]),
            np.concatenate([r.d_km for r in parts]),
        )


def _nll_rows(rec: CalibrationRecords) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Rows with a true cell, as one (n, C) matrix (models sharing a partition have the same columns)."""
    ok = np.flatnonzero(rec.label >= 0)
    if not ok.size or len({rec.prob[i].size for i in ok}) != 1:
        return np.zeros((0, 1)), np.zeros(0, np.int64), np.zeros(0)
    return np.stack([rec.prob[i] for i in ok]), rec.label[ok], rec.novelty[ok]


def fit_calibration(
    rec: CalibrationRecords,
    *,
    method: str = "global",
    guess: str = "expected-score",
    novelty_k: int = 10,
    bins: int = 3,
    r_min_km: float = 10.0,
    fitted_on: str = "",
    objective: str = "nll",
) -> Calibration:
    """Fit a :class:`Calibration` on held-out :class:`CalibrationRecords` (see :func:`geoscout.locator.calibrate`).

    Temperature by the NLL of the true cells (global, or growing with novelty for ``novelty*`` methods); radius
    factors split-conformal on the tempered mass radii around each answer, globally and, for ``*mondrian``,
    per equal-count novelty bin (at least 20 photos each).
    """
    if method not in CALIBRATION_METHODS:
        raise InvalidInput(f"calibration method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if len(rec) < 10:
        raise InvalidInput(f"calibration needs at least 10 held-out photos, got {len(rec)}")
    z = rec.novelty
    use_novelty = method != "global"
    if use_novelty and not np.isfinite(z).all():
        raise InvalidInput(f"calibration method {method!r} needs every photo's novelty (the training embeddings)")
    if objective not in TEMPERATURE_OBJECTIVES:
        raise InvalidInput(f"temperature objective {objective!r}: expected one of {', '.join(TEMPERATURE_OBJECTIVES)}")
    temperature, slope, center = 1.0, 0.0, 0.0
    by_novelty = method in ("novelty", "novelty+mondrian")
    if objective == "score":
        if len({pr.size for pr in rec.prob}) == 1:
            sc = np.stack(
                [
                    geoguessr_score(haversine_km(rec.answer[i, 0], rec.answer[i, 1], rec.lat[i], rec.lon[i]))
                    for i in range(len(rec))
                ]
            )
            temperature, slope, center = fit_score_temperature(
                np.stack(rec.prob), sc, geoguessr_score(rec.d_km), z if by_novelty else None
            )
    else:
        p, lab, zl = _nll_rows(rec)
        if len(lab) >= 10:
            if by_novelty:
                temperature, slope, center = fit_novelty_temperature(p, lab, zl)
            else:
                temperature = fit_temperature(p, lab)
    edges: tuple[float, ...] = ()
    if method in ("mondrian", "novelty+mondrian"):
        b = max(1, min(int(bins), len(rec) // 20))
        edges = tuple(float(e) for e in np.quantile(z, np.arange(1, b) / b))
    base = Calibration(
        temperature=temperature,
        guess=guess,
        method=method,
        objective=objective,
        novelty_k=novelty_k if use_novelty else 0,
        novelty_center=center,
        novelty_slope=slope,
    )
    radii = np.zeros((len(LEVELS), len(rec)))
    for i in range(len(rec)):
        p_i = temper(rec.prob[i], base.temperature_at(float(z[i])))
        for j, q in enumerate(LEVELS):
            radii[j, i] = mass_radius_km(rec.lat[i], rec.lon[i], p_i, (rec.answer[i, 0], rec.answer[i, 1]), q)

    def scales(mask: NDArray[np.bool_]) -> dict[float, float]:
        return {q: conformal_scale(rec.d_km[mask], radii[j, mask], q, r_min_km=r_min_km) for j, q in enumerate(LEVELS)}

    by_bin: tuple[dict[float, float], ...] = ()
    if edges:
        which = np.searchsorted(np.asarray(edges), z, side="right")
        by_bin = tuple(scales(which == b) for b in range(len(edges) + 1))
    return Calibration(
        temperature=temperature,
        radius_scale=scales(np.ones(len(rec), dtype=bool)),
        r_min_km=r_min_km,
        guess=guess,
        fitted_on=fitted_on,
        n=len(rec),
        method=method,
        objective=objective,
        novelty_k=base.novelty_k,
        novelty_center=center,
        novelty_slope=slope,
        novelty_edges=edges,
        radius_scale_bins=by_bin,
    )


def calibration_report(cal: Calibration, rec: CalibrationRecords) -> dict[str, Any]:
    """What ``cal`` states for held-out ``rec`` against what happened: coverage of each level's radius
    (``cov50`` ...), the mean expected GeoGuessr score under the tempered distribution (``expected``) and the
    mean score achieved (``scored``), as a locator with this calibration would state them (cues aside)."""
    n = len(rec)
    cov = {q: np.zeros(n, dtype=bool) for q in LEVELS}
    expected = np.zeros(n)
    for i in range(n):
        zi = float(rec.novelty[i])
        p_i = temper(rec.prob[i], cal.temperature_at(zi))
        c = (float(rec.answer[i, 0]), float(rec.answer[i, 1]))
        r = cal.radii(rec.lat[i], rec.lon[i], p_i, c, zi)
        for q in LEVELS:
            cov[q][i] = rec.d_km[i] <= r[q]
        dist = haversine_km(c[0], c[1], rec.lat[i], rec.lon[i])
        expected[i] = float(geoguessr_score(dist) @ (p_i / max(float(p_i.sum()), 1e-300)))
    out: dict[str, Any] = {f"cov{100 * q:.0f}": float(cov[q].mean()) for q in LEVELS}
    out["expected"] = float(expected.mean())
    out["scored"] = float(geoguessr_score(rec.d_km).mean())
    out["n"] = n
    return out
