"""Evaluate predictions against ground truth: the literature's metrics, a report, plots.

Definitions (as PIGEON, GeoCLIP and OSV-5M report them): distance is haversine on a sphere of
radius 6371 km; accuracy at threshold ``t`` is the share of images with distance **strictly
less** than ``t`` km for t = 1, 25, 200, 750, 2500 (street, city, region, country, continent);
the GeoGuessr score is ``5000 * exp(-d / 1492.7)`` per image; ``exp1160`` is ``exp(-d / 1160)``.
Distances are rounded to the nearest millimetre before comparing with a threshold, so float
noise cannot carry a point lying exactly on a threshold across it.

Policy for incomplete answers: distance, country and admin-1 metrics are computed over the
*answered* images (a prediction with at least one candidate and no error, matched to a truth
row by ``image_id``). Failed predictions and truth rows with no prediction are not dropped
silently: they are counted, listed in ``per_image`` (status ``failed`` / ``missing``), lower
``coverage`` (answered / truth rows), and the ``acc_all@...`` accuracies count them as misses.
Country accuracy compares the polygon country of prediction and truth
(:func:`geoscout.places.country_of`); truth points at sea are excluded from it and counted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._io import atomic_path, atomic_write_json, atomic_write_text
from .errors import InvalidInput
from .geo import ACCURACY_THRESHOLDS_KM, exp1160_score, geoguessr_score, haversine_km, valid_latlon, validate_latlon
from .types import Prediction

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "POLICY",
    "THRESHOLD_NAMES",
    "EvaluationReport",
    "accuracy_key",
    "calibration_metrics",
    "distance_metrics",
    "evaluate",
]

#: What each accuracy threshold stands for, as the literature names them.
THRESHOLD_NAMES = {1.0: "street", 25.0: "city", 200.0: "region", 750.0: "country", 2500.0: "continent"}

POLICY = (
    "Distance, country and admin-1 metrics are over answered images (a prediction with >= 1 candidate "
    "and no error, matched to a truth row by image_id). Failed predictions and truth rows without a "
    "prediction are counted and listed in per_image (status failed/missing); coverage = answered / truth "
    "rows; acc_all@... counts every unanswered truth row as a miss. Truth points at sea are excluded from "
    "country accuracy (n_truth_at_sea); truth points without an admin-1 name are excluded from admin-1 accuracy."
)

_MM = 1e-6  # km


#: the levels (percent) of the stated radii a prediction may carry (``Prediction.radii_km`` keys)
RADIUS_LEVELS = ("50", "68", "90")


def accuracy_key(threshold_km: float, prefix: str = "acc") -> str:
    """Metric name of an accuracy threshold: ``acc@25km``."""
    return f"{prefix}@{threshold_km:g}km"


def _rounded(d: np.ndarray) -> np.ndarray:
    return np.round(d / _MM) * _MM


def calibration_metrics(
    distances_km: ArrayLike,
    radius_km: ArrayLike,
    expected_score: ArrayLike,
    radii_km: dict[str, ArrayLike] | None = None,
) -> dict[str, Any]:
    """How far to trust a model's own confidence, over predictions that state it.

    ``radii_km`` maps a level (``"50"``, ``"68"``, ``"90"``) to the stated radii of that level; each
    gives ``coverage_<level>``, the share of true places within it (a calibrated model: about the level).

    ``radius_coverage``: share of images whose true place lies within the stated radius of the top
    candidate (the radius is meant to hold ~68 % of the probability mass, so a calibrated model scores
    ~0.68; much less means over-confident). ``expected_geoguessr``: mean GeoGuessr score the model
    expected, next to ``geoguessr_on_expected``, the mean it scored on the same images.
    """
    d = np.asarray(distances_km, dtype=np.float64)
    r = np.asarray(radius_km, dtype=np.float64)
    e = np.asarray(expected_score, dtype=np.float64)
    has_r, has_e = np.isfinite(r) & np.isfinite(d), np.isfinite(e) & np.isfinite(d)
    levels = {}
    for level, rq in (radii_km or {}).items():
        rq = np.asarray(rq, dtype=np.float64)
        has = np.isfinite(rq) & np.isfinite(d)
        if has.any():
            levels[f"coverage_{level}"] = float(np.mean(d[has] <= rq[has]))
            levels[f"n_coverage_{level}"] = int(has.sum())
    return {
        **levels,
        "n_radius": int(has_r.sum()),
        "radius_coverage": float(np.mean(d[has_r] <= r[has_r])) if has_r.any() else float("nan"),
        "n_expected": int(has_e.sum()),
        "expected_geoguessr": float(e[has_e].mean()) if has_e.any() else float("nan"),
        "geoguessr_on_expected": float(geoguessr_score(d[has_e]).mean()) if has_e.any() else float("nan"),
    }


def distance_metrics(distances_km: ArrayLike, thresholds: Sequence[float] = ACCURACY_THRESHOLDS_KM) -> dict[str, float]:
    """Standard metrics of great-circle errors in km.

    Returns ``n``, ``acc@<t>km`` (share with distance < t, strict) for each threshold,
    ``mean_km``, ``median_km``, ``geoguessr`` (mean of 5000·exp(-d/1492.7)) and ``exp1160``
    (mean of exp(-d/1160)). With no distances every metric but ``n`` is NaN.
    """
    d = np.asarray(distances_km, dtype=np.float64).ravel()
    if d.size and not (np.isfinite(d).all() and (d >= 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(d) & (d >= 0)))[0])
        raise InvalidInput(f"distance_metrics: distances must be finite and >= 0 km; item {bad} is {d[bad]!r}")
    out: dict[str, float] = {"n": int(d.size)}
    nan = float("nan")
    dr = _rounded(d)
    for t in thresholds:
        out[accuracy_key(t)] = float(np.mean(dr < t)) if d.size else nan
    out["mean_km"] = float(d.mean()) if d.size else nan
    out["median_km"] = float(np.median(d)) if d.size else nan
    out["geoguessr"] = float(geoguessr_score(d).mean()) if d.size else nan
    out["exp1160"] = float(exp1160_score(d).mean()) if d.size else nan
    return out


# --------------------------------------------------------------------------- inputs


def _truth_frame(truth: Any, progress: bool | None = False) -> tuple[pd.DataFrame, str, dict[str, str]]:
    """The truth as ``image_id, true_lat, true_lon``, its name, and path aliases -> image_id."""
    import pandas as pd

    name = "truth"
    root: Path | None = None
    if isinstance(truth, (str, os.PathLike)):
        from .data import load_dataset

        truth = load_dataset(truth, progress=progress)
    if hasattr(truth, "frame") and isinstance(truth.frame, pd.DataFrame):
        name = str(getattr(truth, "name", None) or name)
        root = Path(truth.root) if getattr(truth, "root", None) is not None else None
        frame = truth.frame
    elif isinstance(truth, pd.DataFrame):
        frame = truth
    else:
        raise InvalidInput(
            f"evaluate: truth must be a geoscout Dataset, a pandas DataFrame or a dataset path, got {type(truth).__name__}"
        )
    missing = [c for c in ("image_id", "lat", "lon") if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"evaluate: the truth table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))}); "
            "load it with geoscout.data.load_dataset so image_id is filled in"
        )
    lat, lon = validate_latlon(frame["lat"].to_numpy(), frame["lon"].to_numpy(), what=f"truth {name}")
    ids = frame["image_id"].astype(str).to_numpy()
    out = pd.DataFrame({"image_id": ids, "true_lat": lat, "true_lon": lon})
    if "location_id" in frame.columns:
        loc = frame["location_id"].astype(object).to_numpy()
        out["location_id"] = [str(v) if isinstance(v, str) and v else i for v, i in zip(loc, ids)]
    else:
        out["location_id"] = ids
    aliases: dict[str, str] = {}
    if "path" in frame.columns:
        paths = [str(p) for p in frame["path"]]
        out["path"] = paths
        suffix_count: dict[str, int] = {}
        suffixes = []
        for p in paths:
            rel = _relative_parts(p, root)
            sfx = ["/".join(rel[i:]) for i in range(len(rel))]
            suffixes.append(sfx)
            for x in sfx:
                suffix_count[x] = suffix_count.get(x, 0) + 1
        for iid, p, sfx in zip(ids, paths, suffixes):
            aliases.setdefault(p, iid)
            full = p if os.path.isabs(p) or root is None else str(root / p)
            aliases.setdefault(os.path.normpath(os.path.abspath(full)), iid)
            for x in sfx:  # the path relative to the dataset and each of its tails that is unique in the truth
                if suffix_count[x] == 1:
                    aliases.setdefault(_SUFFIX + x, iid)
    return out, name, aliases


_SUFFIX = "\0tail:"  # marks path-tail aliases apart from ids and full paths


def _relative_parts(path: str, root: Path | None) -> list[str]:
    """A manifest path's components relative to the dataset root (all of them when it lies elsewhere)."""
    p = Path(path)
    if p.is_absolute() and root is not None and p.is_relative_to(root):
        p = p.relative_to(root)
    return [c for c in p.as_posix().split("/") if c not in ("", ".")]


def _match(image_id: str, truth_ids: set[str], aliases: dict[str, str]) -> str | None:
    """The truth image_id a prediction's id refers to: itself, or its image's path.

    A path matches as given, made absolute, with symlinks resolved, or by its last components when they
    equal a truth image's path relative to the dataset (or a tail of it unique in the truth, down to a
    unique file name).
    """
    if image_id in truth_ids:
        return image_id
    if not aliases:
        return None
    for key in (image_id, os.path.normpath(os.path.abspath(image_id))):
        if key in aliases:
            return aliases[key]
    if os.path.exists(image_id):
        key = os.path.realpath(image_id)
        if key in aliases:
            return aliases[key]
    parts = [c for c in image_id.replace("\\", "/").split("/") if c not in ("", ".")]
    for i in range(len(parts)):
        key = _SUFFIX + "/".join(parts[i:])
        if key in aliases:
            return aliases[key]
    return None


def _predictions_list(predictions: Any, bad_rows: list[str] | None = None) -> list[Prediction]:
    if isinstance(predictions, (str, os.PathLike)):
        from .predictions import read_predictions

        return read_predictions(predictions, bad_rows=bad_rows)
    preds = list(predictions)
    for i, p in enumerate(preds):
        if not isinstance(p, Prediction):
            raise InvalidInput(
                f"evaluate: predictions[{i}] is a {type(p).__name__}, expected geoscout.types.Prediction"
            )
    return preds


# --------------------------------------------------------------------------- report


def _clean(x: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if x is None:
        return None
    try:
        import pandas as pd

        if x is pd.NA or x is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return x


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100.0 * x:.1f} %"


def _fmt(x: Any, digits: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


@dataclass
class EvaluationReport:
    """The result of :func:`evaluate`.

    ``metrics`` is a flat dict of scalars (see :data:`POLICY` for what they cover);
    ``per_image`` has one row per truth image plus none for unmatched predictions
    (their ids are in ``unmatched_ids``); ``by_country`` breaks the answered images
    down by the truth point's country. ``per_image.pred_admin1`` is only looked up where
    the predicted country is right (elsewhere admin-1 cannot match).
    """

    metrics: dict[str, Any]
    per_image: pd.DataFrame
    by_country: pd.DataFrame
    name: str = "truth"
    thresholds: tuple[float, ...] = ACCURACY_THRESHOLDS_KM
    unmatched_ids: list[str] = field(default_factory=list)
    policy: str = POLICY
    bad_prediction_rows: list[str] = field(default_factory=list)  #: skipped lines of a predictions file, with reasons

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-image table, JSON-ready (NaN -> null)."""
        by_country = [{"country": idx, **row} for idx, row in self.by_country.to_dict(orient="index").items()]
        return _clean(
            {
                "name": self.name,
                "policy": self.policy,
                "thresholds_km": list(self.thresholds),
                "metrics": self.metrics,
                "by_country": by_country,
                "unmatched_ids": self.unmatched_ids,
                "bad_prediction_rows": self.bad_prediction_rows,
            }
        )

    def to_json(self, *, indent: int = 2) -> str:
        """The report as JSON text (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def to_markdown(self, *, max_countries: int = 30) -> str:
        """A PIGEON-style table of the headline metrics, coverage, and a per-country table."""
        m = self.metrics
        heads = [f"{THRESHOLD_NAMES.get(t, '')} {t:g} km".strip() for t in self.thresholds]
        lines = [f"# geoscout evaluation: {self.name}", ""]
        lines.append("| | n | " + " | ".join(heads) + " | median km | mean km | GeoGuessr | country | admin-1 |")
        lines.append("|---|" + "---:|" * (len(heads) + 6))
        row = [f"{_pct(m.get(accuracy_key(t)))}" for t in self.thresholds]
        lines.append(
            f"| top-1 | {m['n']} | "
            + " | ".join(row)
            + f" | {_fmt(m['median_km'], 1)} | {_fmt(m['mean_km'], 1)} | {_fmt(m['geoguessr'])} | "
            f"{_pct(m.get('country_acc'))} | {_pct(m.get('admin1_acc'))} |"
        )
        k = m.get("top_k", 1)
        if k and k > 1:
            row = [f"{_pct(m.get(accuracy_key(t, f'top{k}_acc')))}" for t in self.thresholds]
            lines.append(f"| best of top-{k} | {m['n']} | " + " | ".join(row) + " | | | | | |")
        if m["n_answered"] < m["n_truth"]:
            row = [f"{_pct(m.get(accuracy_key(t, 'acc_all')))}" for t in self.thresholds]
            lines.append(f"| all truth (unanswered = miss) | {m['n_truth']} | " + " | ".join(row) + " | | | | | |")
        lines += [
            "",
            "Accuracy = share of images with error strictly below the threshold (haversine, R = 6371 km); "
            "GeoGuessr = mean of 5000·exp(−d/1492.7).",
            "",
            "## Coverage",
            "",
            f"- answered: {m['n_answered']} of {m['n_truth']} truth {m.get('unit', 'image')}s ({_pct(m['coverage'])})",
            f"- failed predictions: {m['n_failed']}; truth images without a prediction: {m['n_missing']}; "
            f"predictions without truth: {m['n_unmatched']}; duplicate predictions ignored: {m['n_duplicate_predictions']}",
            f"- country accuracy over {m.get('n_country', 0)} answered images on land "
            f"({m.get('n_truth_at_sea', 0)} truth points at sea excluded); admin-1 over {m.get('n_admin1', 0)}",
            f"- policy: {self.policy}",
        ]
        if m.get("n_radius") or m.get("n_expected"):
            lines += ["", "## Calibration", ""]
            if m.get("n_radius"):
                lines.append(
                    f"- true place within the stated 68 % radius: {_pct(m['radius_coverage'])} of "
                    f"{m['n_radius']} images (calibrated: about 68 %; much less = over-confident)"
                )
            for level in ("50", "90"):
                if m.get(f"n_coverage_{level}"):
                    lines.append(
                        f"- true place within the stated {level} % radius: {_pct(m[f'coverage_{level}'])} of "
                        f"{m[f'n_coverage_{level}']} images (calibrated: about {level} %)"
                    )
            if m.get("n_expected"):
                lines.append(
                    f"- GeoGuessr score the model expected: {_fmt(m['expected_geoguessr'])}; scored: "
                    f"{_fmt(m['geoguessr_on_expected'])} (same {m['n_expected']} images)"
                )
        failed = self.per_image[self.per_image["status"] == "failed"]
        if len(failed):
            lines += ["", "Failed predictions:", ""]
            for _, r in failed.head(20).iterrows():
                kind = f" ({r['error_kind']})" if r["error_kind"] else ""
                lines.append(f"- `{r['image_id']}`{kind}: {r['error']}")
            if len(failed) > 20:
                lines.append(f"- … and {len(failed) - 20} more (see per_image.csv)")
        if len(self.by_country):
            lines += ["", "## By truth country", ""]
            cols = [accuracy_key(t) for t in self.thresholds if t in (25.0, 200.0, 750.0)]
            lines.append("| country | n | " + " | ".join(f"{c[4:]}" for c in cols) + " | median km | country acc |")
            lines.append("|---|---:|" + "---:|" * (len(cols) + 2))
            for iso, r in self.by_country.head(max_countries).iterrows():
                label = f"{r['country_name']} ({iso})" if r.get("country_name") and iso != "(sea)" else str(iso)
                lines.append(
                    f"| {label} | {int(r['n'])} | "
                    + " | ".join(_pct(r[c]) for c in cols)
                    + f" | {_fmt(r['median_km'], 1)} | {_pct(r['country_acc'])} |"
                )
            if len(self.by_country) > max_countries:
                lines.append(f"| … {len(self.by_country) - max_countries} more | | " + "| " * (len(cols) + 2))
        return "\n".join(lines) + "\n"

    # ---- files
    def save(self, directory: str | os.PathLike[str], *, progress: bool | None = False) -> Path:
        """Write report.json, report.md, per_image.csv, error_cdf.png and error_map.png into ``directory``.

        ``progress``: a bar on stderr, one step per file (None: only when stderr is a terminal).
        """
        from ._progress import progress_bar

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)

        def per_image_csv(path: Path) -> None:
            with atomic_path(path) as tmp:
                self.per_image.to_csv(tmp, index=False)

        files = {
            "report.json": lambda path: atomic_write_json(path, self.to_dict()),
            "report.md": lambda path: atomic_write_text(path, self.to_markdown()),
            "per_image.csv": per_image_csv,
            "error_cdf.png": self.plot_error_cdf,
            "error_map.png": self.plot_error_map,
        }
        if any(self.metrics.get(f"n_coverage_{q}") for q in RADIUS_LEVELS):
            files["reliability.png"] = self.plot_reliability
        with progress_bar(len(files), "write report", unit="file", enabled=progress) as bar:
            for name, write in files.items():
                bar.set_postfix_str(name, refresh=False)
                write(d / name)
                bar.update(1)
        return d

    def plot_reliability(self, path: str | os.PathLike[str]) -> Path:
        """PNG reliability diagram: stated probability of each radius (50 / 68 / 90 %) vs the observed share
        of true places inside it; points on the diagonal are calibrated, below it over-confident."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        levels = [q for q in RADIUS_LEVELS if self.metrics.get(f"n_coverage_{q}")]
        stated = np.array([float(q) / 100 for q in levels])
        observed = np.array([self.metrics[f"coverage_{q}"] for q in levels])
        fig = Figure(figsize=(4.6, 4.6), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="calibrated")
        ax.plot(stated, observed, "o-", color="C3", label="this model")
        for s, o, q in zip(stated, observed, levels):
            n = self.metrics[f"n_coverage_{q}"]
            ax.annotate(
                f"{q} %: {100 * o:.0f} % (n={n})", (s, o), textcoords="offset points", xytext=(6, -12), fontsize=8
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("stated probability of the radius")
        ax.set_ylabel("observed share of true places inside")
        ax.set_title(f"Radius reliability — {self.name}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        return Path(path)

    def plot_error_cdf(self, path: str | os.PathLike[str]) -> Path:
        """PNG of the cumulative share of answered images vs. error (log km) with threshold lines."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        ok = self.per_image[self.per_image["status"] == "ok"]
        fig = Figure(figsize=(7.0, 4.2), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        lo, hi = 0.1, 20050.0
        curves = [("top-1", ok["distance_km"].to_numpy(dtype=float))]
        k = self.metrics.get("top_k", 1)
        if k and k > 1:
            curves.append((f"best of top-{k}", ok["best_k_km"].to_numpy(dtype=float)))
        for label, d in curves:
            if d.size == 0:
                continue
            x = np.sort(np.clip(d, lo, hi))
            y = np.arange(1, x.size + 1) / x.size
            ax.step(
                np.concatenate([[lo], x, [hi]]),
                np.concatenate([[0.0], y, [1.0]]),
                where="post",
                label=f"{label} (n={d.size})",
            )
        for t in self.thresholds:
            ax.axvline(t, color="0.6", lw=0.8, ls="--")
            acc = self.metrics.get(accuracy_key(t))
            ax.text(t * 1.08, 0.02, f"{t:g} km\n{_pct(acc)}", fontsize=7, color="0.35", va="bottom")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("great-circle error (km, log scale)")
        ax.set_ylabel("share of answered images")
        ax.set_title(f"Error CDF — {self.name} (coverage {_pct(self.metrics['coverage'])})")
        ax.grid(True, which="major", alpha=0.3)
        if any(d.size for _, d in curves):
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        return Path(path)

    def plot_error_map(self, path: str | os.PathLike[str]) -> Path:
        """PNG world map: truth points, great-circle lines to the top-1 predictions coloured by error."""
        from .maps import world_map_png

        ok = self.per_image[self.per_image["status"] == "ok"]
        missing = self.per_image[self.per_image["status"] != "ok"]
        lines = (
            np.stack([ok["true_lat"], ok["true_lon"], ok["pred_lat"], ok["pred_lon"]], axis=1).astype(float)
            if len(ok)
            else np.zeros((0, 4))
        )
        return world_map_png(
            path,
            points=np.stack([ok["true_lat"], ok["true_lon"]], axis=1).astype(float) if len(ok) else None,
            lines=lines,
            line_values=ok["distance_km"].to_numpy(dtype=float),
            extra_points=np.stack([missing["true_lat"], missing["true_lon"]], axis=1).astype(float)
            if len(missing)
            else None,
            title=f"{self.name}: truth (dots) → top-1 prediction, coloured by error",
            value_label="error (km)",
        )


# --------------------------------------------------------------------------- evaluate


def evaluate(
    predictions: Iterable[Prediction] | str | os.PathLike[str],
    truth: Any,
    *,
    k: int | None = None,
    thresholds: Sequence[float] = ACCURACY_THRESHOLDS_KM,
    places: bool = True,
    name: str | None = None,
    unit: str = "image",
    min_matched: float = 0.1,
    progress: bool | None = False,
    strict: bool = False,
) -> EvaluationReport:
    """Compare predictions with the ground truth, joined on ``image_id``.

    A prediction whose ``image_id`` is not a truth id but names a truth image's file (the
    manifest ``path``, its absolute or symlink-resolved path, a path ending in the image's path
    relative to the dataset, or a file name unique in the truth) is matched to it, so
    ``geoscout locate DATASET/images`` output evaluates directly. When fewer than ``min_matched``
    of the predictions (and always when none) match a truth row, :class:`InvalidInput` names one
    unmatched id from each side: a report on nothing is never returned.

    ``predictions``: a list of :class:`Prediction` or a predictions file. ``truth``: a
    :class:`geoscout.data.Dataset`, a DataFrame with ``image_id, lat, lon``, or anything
    :func:`geoscout.data.load_dataset` accepts. ``k`` caps the candidates used for top-k
    accuracy (default: the most any prediction carries). ``places=False`` skips the
    country / admin-1 metrics (no reverse geocoding). See :data:`POLICY`.

    ``progress``: a bar on stderr while a truth folder's photos are checked (None: only in a terminal).

    A malformed line of a predictions file is skipped and listed (file, line, reason) in the report's
    ``bad_prediction_rows`` (and counted in ``n_bad_prediction_rows``); ``strict=True`` refuses the file instead.

    ``unit="location"`` scores one answer per place (PIGEON's panorama setting): truth rows
    sharing a ``location_id`` become one row (the first view's coordinates, id =
    location_id), and a prediction is matched by the location_id itself, by any of its views
    (id or path), or by a ``+``-joined list of its views (what ``geoscout locate -p`` writes).
    """
    truth_df, truth_name, aliases = _truth_frame(truth, progress)
    bad_rows: list[str] | None = None if strict else []
    preds = _predictions_list(predictions, bad_rows)
    if bad_rows and not preds:
        raise InvalidInput(f"{predictions}: no line could be read as a prediction; e.g. {bad_rows[0]}")
    thresholds = tuple(float(t) for t in thresholds)
    if unit not in ("image", "location"):
        raise InvalidInput(f"evaluate: unit must be 'image' or 'location', got {unit!r}")
    truth_df, match, n_dup_truth = _unit_truth(truth_df, aliases, unit)
    by_id, unmatched, n_dup, n_by_path = match.predictions(preds)
    _check_matched(preds, by_id, unmatched, truth_df, truth_name, min_matched)

    max_k = max((len(p.candidates) for p in by_id.values() if p.ok), default=0)
    top_k = max_k if k is None else max(1, min(int(k), max_k)) if max_k else 0
    per, best_k, radii = _per_photo(truth_df, by_id, max(top_k, 1))
    dist, radius, expected = (per[c].to_numpy() for c in ("distance_km", "radius_km", "expected_geoguessr"))
    ok = (per["status"] == "ok").to_numpy()

    metrics: dict[str, Any] = {}
    metrics.update(distance_metrics(dist[ok], thresholds))
    counts = {"n_predictions": len(preds), "n_unmatched": len(unmatched), "n_duplicate_predictions": n_dup}
    counts |= {"n_matched_by_path": n_by_path, "n_duplicate_truth": n_dup_truth}
    metrics.update(_count_metrics(per["status"], counts, len(bad_rows or []), unit))
    metrics.update(_answered_and_top_k_metrics(dist, best_k, ok, top_k, thresholds))
    stated = {q: (radius if q == "68" and not np.isfinite(r[ok]).any() else r)[ok] for q, r in radii.items()}
    metrics.update(calibration_metrics(dist[ok], radius[ok], expected[ok], stated))
    if places:
        _place_metrics(per, metrics)
    by_country = _by_country(per, thresholds) if places else _empty_frame()
    return EvaluationReport(
        metrics=metrics,
        per_image=per,
        by_country=by_country,
        name=name or truth_name,
        thresholds=thresholds,
        unmatched_ids=unmatched,
        bad_prediction_rows=list(bad_rows or []),
    )


def _unit_truth(truth_df: Any, aliases: Any, unit: str) -> tuple[Any, _Matcher, int]:
    """The truth table with one row per image id (or per ``location_id`` when ``unit="location"``), the
    matcher of predictions to it, and the number of duplicate truth ids dropped."""
    n_dup_truth = int(truth_df["image_id"].duplicated().sum())
    truth_df = truth_df.drop_duplicates("image_id", keep="first").reset_index(drop=True)
    match = _Matcher(truth_df, aliases, unit)
    if unit == "location":
        truth_df = (
            truth_df.drop_duplicates("location_id", keep="first")
            .assign(image_id=lambda f: f["location_id"])
            .reset_index(drop=True)
        )
    return truth_df, match, n_dup_truth


def _count_metrics(status: Any, counts: dict[str, int], n_bad_rows: int, unit: str) -> dict[str, Any]:
    """The counts of the report (truth rows, answered / failed / missing, the matching ``counts``), in
    the report's order, and the coverage."""
    n = len(status)
    n_ok = int((status == "ok").sum())
    return {
        "n_truth": n,
        "n_predictions": counts["n_predictions"],
        "n_answered": n_ok,
        "n_failed": int((status == "failed").sum()),
        "n_missing": int((status == "missing").sum()),
        "n_unmatched": counts["n_unmatched"],
        "n_duplicate_predictions": counts["n_duplicate_predictions"],
        "n_matched_by_path": counts["n_matched_by_path"],
        "n_duplicate_truth": counts["n_duplicate_truth"],
        "n_bad_prediction_rows": n_bad_rows,
        "coverage": float(n_ok / n) if n else float("nan"),
        "unit": unit,
    }


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


class _Matcher:
    """Finds the truth row a prediction answers (by id, file path, location, or ``+``-joined panorama views)."""

    def __init__(self, truth_df: Any, aliases: dict[str, str], unit: str) -> None:
        self.truth_ids = set(truth_df["image_id"])
        self.img2loc = dict(zip(truth_df["image_id"], truth_df["location_id"]))
        self.loc_ids = set(truth_df["location_id"])
        self.aliases, self.unit = aliases, unit

    def find(self, pid: str) -> str | None:
        if "+" in pid and pid not in self.truth_ids and pid not in self.loc_ids:
            views = [_match(v, self.truth_ids, self.aliases) for v in pid.split("+")]
            if None not in views:  # the views of a panorama ('v1+v2+...', as `locate -p` names it)
                locs = {self.img2loc[v] for v in views if v is not None}
                return locs.pop() if self.unit == "location" and len(locs) == 1 else None
        key = _match(pid, self.truth_ids, self.aliases)
        if self.unit == "image":
            return key
        if key is not None:
            return self.img2loc[key]
        return pid if pid in self.loc_ids else None

    def predictions(self, preds: list[Prediction]) -> tuple[dict[str, Prediction], list[str], int, int]:
        """``(truth id -> first prediction, unmatched prediction ids, duplicates, matched by path)``."""
        by_id: dict[str, Prediction] = {}
        n_dup = 0
        n_by_path = 0
        unmatched: list[str] = []
        for p in preds:
            key = self.find(p.image_id)
            if key is None:
                unmatched.append(p.image_id)
                continue
            if key in by_id:
                n_dup += 1
                continue
            by_id[key] = p
            n_by_path += key != p.image_id
        return by_id, unmatched, n_dup, n_by_path


def _check_points(
    ids: Any,
    n_cand: NDArray[np.int_],
    cand_lat: NDArray[np.float64],
    cand_lon: NDArray[np.float64],
    answer_lat: NDArray[np.float64],
    answer_lon: NDArray[np.float64],
) -> None:
    """Refuse a candidate or a guess outside [-90, 90] x [-180, 180], naming the first one (by truth order)."""
    kk = cand_lat.shape[1]
    filled = np.arange(kk)[None, :] < np.minimum(n_cand, kk)[:, None]
    bad = filled & ~(valid_latlon(cand_lat, cand_lon))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(
            f"evaluate: prediction for {ids.iloc[i]!r} candidate {j + 1} has an invalid (lat, lon) = "
            f"({cand_lat[i, j]!r}, {cand_lon[i, j]!r}); expected degrees in [-90, 90] x [-180, 180]"
        )
    bad_answer = np.isfinite(answer_lat) & ~((np.abs(answer_lat) <= 90) & (np.abs(answer_lon) <= 180))
    if bad_answer.any():
        i = int(np.flatnonzero(bad_answer)[0])
        raise InvalidInput(
            f"evaluate: prediction for {ids.iloc[i]!r} has an invalid guess (lat, lon) = "
            f"({answer_lat[i]!r}, {answer_lon[i]!r}); expected degrees in [-90, 90] x [-180, 180]"
        )


def _per_photo(
    truth_df: Any, by_id: dict[str, Prediction], kk: int
) -> tuple[Any, NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """The per-image table (status, error and its kind, truth, answered point, distance, score, radii...), the best-of-k
    distance and the stated radius per level."""
    import pandas as pd

    n = len(truth_df)
    status = np.empty(n, dtype=object)
    error = np.empty(n, dtype=object)
    error_kind = np.empty(n, dtype=object)
    cand_lat = np.full((n, kk), np.nan)
    cand_lon = np.full((n, kk), np.nan)
    n_cand = np.zeros(n, dtype=int)
    radius = np.full(n, np.nan)
    radii = {q: np.full(n, np.nan) for q in RADIUS_LEVELS}
    expected = np.full(n, np.nan)
    answer_lat = np.full(n, np.nan)
    answer_lon = np.full(n, np.nan)
    tl = truth_df["true_lat"].to_numpy()
    to = truth_df["true_lon"].to_numpy()
    for i, iid in enumerate(truth_df["image_id"]):
        pred = by_id.get(iid)
        if pred is None:
            status[i], error[i] = "missing", "no prediction for this image"
            continue
        if not pred.ok:
            status[i], error[i] = "failed", pred.error.message if pred.error else "prediction has no candidates"
            error_kind[i] = pred.error.kind if pred.error else None
            continue
        status[i], error[i] = "ok", None
        n_cand[i] = len(pred.candidates)
        radius[i] = np.nan if pred.radius_km is None else float(pred.radius_km)
        expected[i] = np.nan if pred.expected_score is None else float(pred.expected_score)
        for q, v in (pred.radii_km or {}).items():
            if q in radii and v is not None:
                radii[q][i] = float(v)
        if pred.guess is not None:
            answer_lat[i], answer_lon[i] = pred.guess.lat, pred.guess.lon
        for j, c in enumerate(pred.candidates[:kk]):
            cand_lat[i, j], cand_lon[i, j] = c.lat, c.lon
    _check_points(truth_df["image_id"], n_cand, cand_lat, cand_lon, answer_lat, answer_lon)
    # the answered point: the prediction's guess when it states one, else its top candidate
    has_answer = np.isfinite(answer_lat)
    pred_lat = np.where(has_answer, answer_lat, cand_lat[:, 0])
    pred_lon = np.where(has_answer, answer_lon, cand_lon[:, 0])
    dk = haversine_km(tl[:, None], to[:, None], cand_lat, cand_lon)
    best_k = np.full(n, np.nan)
    has = ~np.isnan(dk).all(axis=1)
    best_k[has] = np.nanmin(dk[has], axis=1)
    dist = haversine_km(tl, to, pred_lat, pred_lon)  # NaN where unanswered
    per = pd.DataFrame(
        {
            "image_id": truth_df["image_id"].to_numpy(),
            "status": status,
            "error": error,
            "error_kind": error_kind,
            "true_lat": tl,
            "true_lon": to,
            "pred_lat": pred_lat,
            "pred_lon": pred_lon,
            "distance_km": dist,
            "geoguessr": geoguessr_score(dist),
            "best_k_km": best_k,
            "n_candidates": n_cand,
            "radius_km": radius,
            "radius_50_km": radii["50"],
            "radius_90_km": radii["90"],
            "expected_geoguessr": expected,
        }
    )
    return per, best_k, radii


def _answered_and_top_k_metrics(
    dist: NDArray[np.float64],
    best_k: NDArray[np.float64],
    ok: NDArray[np.bool_],
    top_k: int,
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """Accuracy over all truth rows (unanswered count as wrong) and, for top_k > 1, best-of-k accuracy."""
    n = len(dist)
    metrics: dict[str, Any] = {}
    dr = _rounded(np.where(ok, dist, np.inf))
    for t in thresholds:
        metrics[accuracy_key(t, "acc_all")] = float(np.mean(dr < t)) if n else float("nan")
    metrics["top_k"] = int(top_k)
    if top_k > 1:
        bk = _rounded(best_k[ok])
        for t in thresholds:
            metrics[accuracy_key(t, f"top{top_k}_acc")] = float(np.mean(bk < t)) if bk.size else float("nan")
        metrics[f"top{top_k}_median_km"] = float(np.median(best_k[ok])) if ok.any() else float("nan")
    return metrics


def _check_matched(
    preds: list[Prediction],
    by_id: dict[str, Prediction],
    unmatched: list[str],
    truth_df: pd.DataFrame,
    truth_name: str,
    min_matched: float,
) -> None:
    """Refuse to score predictions that (almost) all miss the truth: name one unmatched id from each side."""
    if not preds:
        raise InvalidInput(f"evaluate: there are no predictions to score against {truth_name!r}")
    n_matched = len(preds) - len(unmatched)
    if n_matched and n_matched >= min_matched * len(preds):
        return
    unpredicted = truth_df[~truth_df["image_id"].isin(by_id)]
    example = ""
    if len(unpredicted):
        row = unpredicted.iloc[0]
        where = f"{row['path']!r} (image_id {row['image_id']!r})" if "path" in row.index else repr(row["image_id"])
        example = f"; e.g. truth image {where} has no prediction"
    raise InvalidInput(
        f"evaluate: only {n_matched} of {len(preds)} predictions match an image of {truth_name!r} "
        f"({len(truth_df)} truth {'rows' if len(truth_df) != 1 else 'row'}); e.g. prediction {unmatched[0]!r} "
        f"matches none{example}. Predictions are matched by image_id, by the image's path (as given, absolute, "
        "with symlinks resolved, or ending in its path relative to the dataset folder) or by a file name unique "
        "in the dataset: check that the predictions and the truth describe the same photos"
        + (f" (to score them anyway, lower min_matched / --min-matched, now {min_matched:g})" if n_matched else "")
    )


def _place_metrics(per: pd.DataFrame, metrics: dict[str, Any]) -> None:
    """Add country / admin-1 columns to ``per`` and their accuracies to ``metrics``."""
    import pandas as pd

    from .places import country_of, reverse_geocode

    ok = (per["status"] == "ok").to_numpy()
    n = len(per)
    tlat, tlon = per["true_lat"].to_numpy(), per["true_lon"].to_numpy()
    true_rg = reverse_geocode(tlat, tlon) if n else pd.DataFrame(columns=["country_name", "admin1"])
    true_country = np.asarray(country_of(tlat, tlon), dtype=object) if n else np.empty(0, dtype=object)
    pred_country = np.full(n, None, dtype=object)
    pred_admin1 = np.full(n, None, dtype=object)
    if ok.any():
        plat, plon = per["pred_lat"].to_numpy()[ok], per["pred_lon"].to_numpy()[ok]
        pred_country[ok] = np.asarray(country_of(plat, plon), dtype=object)
    true_admin1 = np.asarray(true_rg["admin1"].to_numpy(), dtype=object) if n else np.empty(0, dtype=object)

    def known(a: np.ndarray) -> np.ndarray:
        return np.array([isinstance(x, str) and x != "" for x in a], dtype=bool)

    t_known, p_known = known(true_country), known(pred_country)
    same_country = t_known & p_known & (true_country == pred_country)
    if same_country.any():  # admin-1 of a prediction only matters when its country is right
        rg = reverse_geocode(per["pred_lat"].to_numpy()[same_country], per["pred_lon"].to_numpy()[same_country])
        pred_admin1[same_country] = np.asarray(rg["admin1"].to_numpy(), dtype=object)
    ta_known, pa_known = known(true_admin1), known(pred_admin1)
    same_admin1 = same_country & ta_known & pa_known & (true_admin1 == pred_admin1)

    per["true_country"] = true_country
    per["true_country_name"] = np.asarray(true_rg["country_name"].to_numpy(), dtype=object) if n else true_country
    per["pred_country"] = pred_country
    per["country_correct"] = pd.array(np.where(ok & t_known, same_country, False), dtype="boolean")
    per.loc[~(ok & t_known), "country_correct"] = pd.NA
    per["true_admin1"] = true_admin1
    per["pred_admin1"] = pred_admin1
    per["admin1_correct"] = pd.array(same_admin1, dtype="boolean")
    per.loc[~(ok & t_known & ta_known), "admin1_correct"] = pd.NA

    c_mask = ok & t_known
    a_mask = ok & t_known & ta_known
    metrics["country_acc"] = float(same_country[c_mask].mean()) if c_mask.any() else float("nan")
    metrics["n_country"] = int(c_mask.sum())
    metrics["n_truth_at_sea"] = int((ok & ~t_known).sum())
    metrics["n_pred_at_sea"] = int((c_mask & ~p_known).sum())
    metrics["admin1_acc"] = float(same_admin1[a_mask].mean()) if a_mask.any() else float("nan")
    metrics["n_admin1"] = int(a_mask.sum())


def _by_country(per: pd.DataFrame, thresholds: Sequence[float]) -> pd.DataFrame:
    import pandas as pd

    ok = per[per["status"] == "ok"]
    rows = {}
    if "true_country" not in per.columns or ok.empty:
        return pd.DataFrame()
    keys = ok["true_country"].where(ok["true_country"].map(lambda x: isinstance(x, str) and x != ""), "(sea)")
    for iso, g in ok.groupby(keys.to_numpy(), sort=False):
        dm = distance_metrics(g["distance_km"].to_numpy(dtype=float), thresholds)
        cc = g["country_correct"].dropna()
        names = g["true_country_name"].dropna()
        rows[iso] = {
            "country_name": names.iloc[0] if len(names) else None,
            **dm,
            "country_acc": float(cc.astype(bool).mean()) if len(cc) else float("nan"),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "country"
    return out.sort_values(["n", "median_km"], ascending=[False, True], kind="stable")
