"""The main job: photos in, ranked places out.

A :class:`Locator` joins a backbone (image -> embedding), a fitted head (embedding ->
distribution over places), optional PIGEON-style refinement over the training images of
the top cells, and offline reverse geocoding of the candidates. It answers with one
:class:`~geoscout.types.Prediction` per photo (or per panorama).
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._io import IMAGE_SUFFIXES
from ._registry import Registry
from .calibration import (
    GUESS_RULES,
    LEVELS,
    Calibration,
    CalibrationRecords,
    best_guess,
    mass_radius_km,
    novelty,
    temper,
)
from .errors import InvalidInput, PhotoFailure, UnknownName
from .geo import geoguessr_score, haversine_km, l2_normalize, spherical_mean
from .types import Candidate, Prediction

__all__ = [
    "IMAGE_SUFFIXES",
    "MODELS",
    "Locator",
    "ModelOptions",
    "RefineConfig",
    "calibrate",
    "calibration_records",
    "expected_geoguessr_score",
    "list_models",
    "load_model",
    "locate",
    "split_strip",
    "uncertainty_radius_km",
]

#: The built-in models: ``load_model(name)`` and ``geoscout list models`` find them here (a factory per model,
#: below; plugin packages add models through the ``geoscout.models`` entry-point group).
MODELS: Registry[Locator] = Registry("model", group="geoscout.models")


# --------------------------------------------------------------------------- summaries
def uncertainty_radius_km(
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    prob: NDArray[np.float64],
    center: tuple[float, float],
    mass: float = 0.68,
) -> float:
    """Smallest radius (km) around ``center`` holding at least ``mass`` of the probability on the support points."""
    return mass_radius_km(lat, lon, prob, center, mass)


def expected_geoguessr_score(
    lat: NDArray[np.float64], lon: NDArray[np.float64], prob: NDArray[np.float64], guess: tuple[float, float]
) -> float:
    """GeoGuessr points expected when guessing ``guess``, if the truth follows the model's distribution."""
    d = haversine_km(guess[0], guess[1], lat, lon)
    p = prob / max(float(prob.sum()), 1e-12)
    return float((p * geoguessr_score(d)).sum())


def split_strip(image: Any, n_views: int | None = None) -> list[Any]:
    """Split a panorama strip (views side by side, e.g. 2560x512) into ``n_views`` square-ish views.

    With ``n_views=None`` the count is ``round(width / height)`` (at least 1).
    """
    from .imageio import load_image

    im = load_image(image, max_pixels=200_000_000)
    w, h = im.size
    n = n_views or max(1, round(w / h))
    if n < 1 or n > w:
        raise InvalidInput(f"cannot split a {w}x{h} image into {n} views")
    edges = np.linspace(0, w, n + 1).round().astype(int)
    return [im.crop((int(edges[i]), 0, int(edges[i + 1]), h)) for i in range(n)]


# --------------------------------------------------------------------------- refinement
@dataclass
class RefineConfig:
    """PIGEON-style refinement of the top cells' coordinates with the training images.

    ``method``: ``"none"``, ``"retrieval"`` (similarity-weighted location of the ``k`` most
    similar training images inside the cell) or ``"protonet"`` (OPTICS clusters of each
    cell's training locations as prototypes; softmax over prototype similarity with
    ``temperature``; the chosen prototype's mean location). A move of more than
    ``max_move_km`` from the cell's own estimate is cancelled (PIGEON's guard).
    """

    method: str = "retrieval"
    top_cells: int = 5
    k: int = 8
    temperature: float = 0.05
    max_move_km: float = 1000.0
    min_cluster_size: int = 3

    def __post_init__(self) -> None:
        if self.method not in ("none", "retrieval", "protonet"):
            raise InvalidInput(f"refinement method must be none, retrieval or protonet, got {self.method!r}")


@dataclass
class _Prototypes:
    vectors: NDArray[np.float32]  # (P, D) normalised mean embeddings
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    cell: NDArray[np.int64]


@dataclass
class _Refiner:
    vectors: NDArray[np.float32]  # (R, D) L2-normalised training embeddings
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    cell: NDArray[np.int64]
    config: RefineConfig
    _by_cell: dict[int, NDArray[np.int64]] = field(default_factory=dict)
    _protos: _Prototypes | None = None

    def __post_init__(self) -> None:
        order = np.argsort(self.cell, kind="stable")
        cells, starts = np.unique(self.cell[order], return_index=True)
        bounds = [*list(starts[1:]), len(order)]
        self._by_cell = {int(c): order[s:e] for c, s, e in zip(cells, starts, bounds)}

    def prototypes(self) -> _Prototypes:
        if self._protos is None:
            from sklearn.cluster import OPTICS

            vecs, lats, lons, cells = [], [], [], []
            for c, idx in self._by_cell.items():
                groups: list[NDArray[np.int64]]
                # cluster distinct locations (the views of one panorama share a point; OPTICS on repeated
                # points divides by zero reachability), then give each location's images its label
                pts, inv = np.unique(
                    np.round(np.stack([self.lat[idx], self.lon[idx]], axis=1), 6), axis=0, return_inverse=True
                )
                inv = inv.reshape(-1)
                if len(pts) >= 2 * self.config.min_cluster_size:
                    with warnings.catch_warnings():  # spread-out points: "all reachability values are inf",
                        warnings.filterwarnings("ignore", message=".*reachability values are inf")  # no cluster
                        labels = (
                            OPTICS(min_samples=self.config.min_cluster_size, metric="haversine")
                            .fit(np.radians(pts))
                            .labels_
                        )
                    groups = [idx[labels[inv] == g] for g in np.unique(labels) if g >= 0]
                    groups += [idx[inv == u] for u in np.flatnonzero(labels < 0)]  # each unclustered location alone
                else:
                    groups = [idx]
                for g in groups:
                    v = self.vectors[g].mean(axis=0)
                    vecs.append(l2_normalize(v))
                    la, lo = spherical_mean(self.lat[g], self.lon[g])
                    lats.append(float(la))
                    lons.append(float(lo))
                    cells.append(c)
            self._protos = _Prototypes(
                np.asarray(vecs, np.float32), np.asarray(lats), np.asarray(lons), np.asarray(cells, np.int64)
            )
        return self._protos

    def refine(self, x: NDArray[np.float32], cell: int, lat0: float, lon0: float) -> tuple[float, float]:
        """Refined (lat, lon) for embedding ``x`` inside ``cell``; the cell estimate when no move is allowed."""
        if self.config.method == "none" or cell not in self._by_cell:
            return lat0, lon0
        if self.config.method == "retrieval":
            idx = self._by_cell[cell]
            sims = self.vectors[idx] @ x
            k = min(self.config.k, len(idx))
            top = np.argpartition(-sims, k - 1)[:k]
            w = np.exp((sims[top] - sims[top].max()) / self.config.temperature)
            la, lo = spherical_mean(self.lat[idx[top]], self.lon[idx[top]], weights=w)
        else:
            p = self.prototypes()
            mask = p.cell == cell
            sims = p.vectors[mask] @ x
            w = np.exp((sims - sims.max()) / self.config.temperature)
            j = int(np.argmax(w))
            la, lo = p.lat[mask][j], p.lon[mask][j]
        if float(haversine_km(lat0, lon0, la, lo)) > self.config.max_move_km:
            return lat0, lon0
        return float(la), float(lo)


# --------------------------------------------------------------------------- locator
class Locator:
    """Backbone + head (+ retrieval data) -> :class:`Prediction` per photo or panorama.

    Build one with :func:`load_model`; call :meth:`locate` on paths, bytes or PIL images.
    ``calibration`` (from the bundle) tempers the probabilities and scales the stated radii;
    ``guess`` picks the answered point: ``mode`` (most probable place), ``expected-score``
    (highest expected GeoGuessr score) or ``median`` (least expected distance); default: the
    calibration's rule (``expected-score`` without one).
    """

    def __init__(
        self,
        backbone: Any,
        head: Any,
        *,
        partition: Any = None,
        retrieval: Any = None,
        refine: RefineConfig | None = None,
        name: str = "model",
        card: str = "",
        geocode: bool = True,
        batch_size: int = 16,
        tta: bool = False,
        heatmap_points: int = 200,
        cues: Any = None,
        cue_fuser: Any = None,
        calibration: Calibration | None = None,
        guess: str | None = None,
    ) -> None:
        self.calibration = calibration if calibration is not None else Calibration()
        self.guess = guess or self.calibration.guess
        if self.guess not in GUESS_RULES:
            raise InvalidInput(f"guess {self.guess!r}: expected one of {', '.join(GUESS_RULES)}")
        self.backbone = backbone
        self.head = head
        self.partition = partition
        self.name = name
        self.card = card
        self.geocode = geocode
        self.batch_size = batch_size
        self.tta = tta
        self.heatmap_points = heatmap_points
        #: a :class:`geoscout.cues.CueReader` (or its mode: "none", "text", "metadata", "all"); None reads no cues
        self.cues = _cue_reader(cues)
        self.cue_fuser = cue_fuser
        self.refine_config = refine or RefineConfig(method="retrieval" if retrieval is not None else "none")
        self._refiner: _Refiner | None = None
        #: the training embeddings (L2-normalised) that a photo's novelty is measured against
        self._reference: NDArray[np.float32] | None = None
        if retrieval is not None and self.calibration.uses_novelty:
            self._reference = l2_normalize(np.asarray(retrieval.vectors, dtype=np.float32))
        if retrieval is not None and partition is not None and self.refine_config.method != "none":
            vec = (
                self._reference
                if self._reference is not None
                else l2_normalize(np.asarray(retrieval.vectors, dtype=np.float32))
            )
            cell = np.asarray(
                getattr(retrieval, "cell", None)
                if getattr(retrieval, "cell", None) is not None
                else partition.assign(retrieval.lat, retrieval.lon),
                dtype=np.int64,
            )
            self._refiner = _Refiner(
                vec,
                np.asarray(retrieval.lat, np.float64),
                np.asarray(retrieval.lon, np.float64),
                cell,
                self.refine_config,
            )

    # ----------------------------------------------------------------------- embedding
    def embed(self, images: Sequence[Any]) -> tuple[NDArray[np.float32], dict[int, PhotoFailure]]:
        """Embeddings (n, D) of ``images`` (NaN rows for failures) and ``{index: failure}`` of failures."""
        from .embeddings import embed_images

        return embed_images(list(images), self.backbone, batch_size=self.batch_size, tta=self.tta)

    # ----------------------------------------------------------------------- predict
    def locate_embeddings(
        self,
        X: NDArray[np.float32],
        ids: Sequence[str],
        *,
        top_k: int = 5,
        sources: Sequence[str | None] | None = None,
        evidence: Sequence[Sequence[Any]] | None = None,
    ) -> list[Prediction]:
        """Predictions for ready embeddings (one row per photo or pooled panorama).

        ``evidence``: per row, the :class:`geoscout.cues.Evidence` read from the photo; it is fused
        with the head's distribution (:func:`geoscout.cues.apply_cues`) and explained in ``cues``.
        """
        X = np.asarray(X, dtype=np.float32)
        if len(ids) != len(X):
            raise InvalidInput(f"{len(ids)} ids for {len(X)} embeddings")
        if len(X) == 0:
            return []
        dist = self.head.predict_distribution(X)
        k_support = max(top_k, self.refine_config.top_cells)
        top = dist.topk_indices(k_support)
        z = self.novelty(X)
        preds: list[Prediction] = []
        for i, image_id in enumerate(ids):
            lat, lon = dist.points(i)
            z_i = None if z is None else float(z[i])
            t_i = self.calibration.temperature_at(z_i)
            prob = temper(dist.prob[i], t_i)
            # the answer is chosen under the model's own (untempered) distribution: flattening it first
            # hedged too far toward the middle (benchmarks/RESULTS.md, world-wide section); the
            # temperature restates the confidence (radii, expected score), not the bet
            raw = dist.prob[i] / max(float(dist.prob[i].sum()), 1e-300) if t_i != 1.0 else prob
            order, n_visual, cues = top[i], len(prob), []
            if evidence is not None and evidence[i]:
                from .cues import apply_cues, default_fuser

                self.cue_fuser = self.cue_fuser or default_fuser()
                c = apply_cues(lat, lon, prob, evidence[i], self.cue_fuser, k_support)
                lat, lon, prob, order, n_visual, cues = c.lat, c.lon, c.prob, c.order, c.n_visual, c.cues
                # the cues' likelihood counts once in the answer too (not raised to the temperature, as
                # un-tempering the fused distribution would: a weak Latin-script cue then moved answers)
                raw = c.rescored(raw)
            cands: list[Candidate] = []
            for rank, j in enumerate(order[:top_k]):
                la, lo = float(lat[j]), float(lon[j])
                cell_name = dist.cell[j] if dist.cell is not None and j < n_visual else None
                if j >= n_visual:
                    pass  # a point added by a cue (a town read on a sign, the EXIF position): no cell to refine
                elif self._refiner is not None and rank < self.refine_config.top_cells and self.partition is not None:
                    cell_idx = self._cell_index(j, dist, la, lo)
                    la, lo = self._refiner.refine(X[i], cell_idx, la, lo)
                cands.append(Candidate(lat=la, lon=lo, probability=float(prob[j]), cell=cell_name))
            guess = self._guess(lat, lon, raw, cands, dist.cell if len(prob) == dist.prob.shape[1] else None)
            best = (guess.lat, guess.lon) if guess is not None else (cands[0].lat, cands[0].lon)
            # heads whose support points stand for areas spread them (not when cues added points)
            summarize = getattr(self.head, "summarize", None) if len(prob) == dist.prob.shape[1] else None
            radii_km = None
            if summarize is not None:
                radius, expected = summarize(prob, best)
            else:
                radii = self.calibration.radii(lat, lon, prob, best, z_i)
                radius, expected = radii[0.68], expected_geoguessr_score(lat, lon, prob, best)
                radii_km = {f"{100 * q:.0f}": radii[q] for q in LEVELS}
            preds.append(
                Prediction(
                    image_id=str(image_id),
                    candidates=cands,
                    radius_km=radius,
                    radii_km=radii_km,
                    expected_score=expected,
                    source=(sources[i] if sources is not None else None),
                    heatmap=_heatmap(lat, lon, prob, self.heatmap_points),
                    cues=cues,
                    guess=guess,
                )
            )
        if self.geocode:
            self._annotate(preds)
        return preds

    def novelty(self, X: NDArray[np.float32]) -> NDArray[np.float64] | None:
        """Each embedding's novelty against the training embeddings (:func:`geoscout.calibration.novelty`),
        when the calibration uses it and the bundle carries them; else ``None``."""
        if self._reference is None or not len(X):
            return None
        return novelty(X, self._reference, self.calibration.novelty_k)

    def _guess(
        self,
        lat: NDArray[np.float64],
        lon: NDArray[np.float64],
        prob: NDArray[np.float64],
        cands: list[Candidate],
        cells: Sequence[str] | None,
    ) -> Candidate | None:
        """The answered point under the guess rule (``None`` for ``mode``: the top candidate is the answer)."""
        if self.guess == "mode" or not cands:
            return None
        extra = np.array([[c.lat, c.lon] for c in cands])
        la, lo, _ = best_guess(lat, lon, prob, self.guess, extra=extra)
        for c in cands:
            if c.lat == la and c.lon == lo:
                return c
        j = int(np.argmin(haversine_km(la, lo, lat, lon)))  # the support point it stands on: its cell
        return Candidate(lat=la, lon=lo, probability=float(prob[j]), cell=str(cells[j]) if cells is not None else None)

    def _cell_index(self, j: int, dist: Any, la: float, lo: float) -> int:
        if dist.cell is not None and getattr(self.partition, "cell_ids", None) is not None:
            lookup = getattr(self, "_cell_lookup", None)
            if lookup is None:
                lookup = {c: n for n, c in enumerate(self.partition.cell_ids)}
                self._cell_lookup = lookup
            if dist.cell[j] in lookup:
                return int(lookup[dist.cell[j]])
        return int(self.partition.assign(np.array([la]), np.array([lo]))[0])

    def _annotate(self, preds: list[Prediction]) -> None:
        from .places import reverse_geocode_arrays

        cands = [c for p in preds for c in p.candidates]
        cands += [p.guess for p in preds if p.guess is not None and all(p.guess is not c for c in p.candidates)]
        if not cands:
            return
        info = reverse_geocode_arrays(np.array([c.lat for c in cands]), np.array([c.lon for c in cands]))
        for i, c in enumerate(cands):
            c.country = _none(info["country"][i])
            c.country_name = _none(info["country_name"][i])
            c.admin1 = _none(info["admin1"][i])
            c.city = _none(info["city"][i])

    def locate(
        self,
        images: Sequence[Any],
        *,
        top_k: int = 5,
        panorama: bool = False,
        ids: Sequence[str] | None = None,
        progress: bool | None = False,
    ) -> list[Prediction]:
        """Locate photos (paths, bytes or PIL images), batched.

        With ``panorama=True`` all ``images`` are views of one place: their embeddings are
        averaged (PIGEON) and one prediction is returned. A photo that cannot be read gets
        a prediction with ``error`` set; the others are answered. ``progress``: a bar on
        stderr (True), none (False), or one only when stderr is a terminal (None).
        """
        images = list(images)
        if not images:
            raise InvalidInput("no images to locate; pass at least one photo")
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        names = list(ids) if ids is not None else [_name_of(im, i) for i, im in enumerate(images)]
        if panorama:
            return [self._locate_panorama(images, names, top_k)]
        from ._progress import progress_bar

        out: list[Prediction] = []
        step = max(1, self.batch_size) * 4  # a few batches per step: the bar moves, the work stays batched
        with progress_bar(len(images), f"locate {self.name}", unit="photo", enabled=progress) as bar:
            for s in range(0, len(images), step):
                out += self._locate_chunk(images[s : s + step], names[s : s + step], top_k)
                bar.update(min(step, len(images) - s))
        return out

    def _embed_and_read(self, images: list[Any], panorama: bool) -> tuple[Any, dict[int, PhotoFailure], Any]:
        """Embeddings, failures and (when cues are on) the evidence read from the photos, read while the backbone runs."""
        if self.cues is None or not self.cues.active:
            return (*self.embed(images), None)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(self.cues.read_panorama if panorama else self.cues.read, images)
            X, failures = self.embed(images)
            return X, failures, job.result()

    def _locate_panorama(self, images: list[Any], names: list[str], top_k: int) -> Prediction:
        X, failures, evidence = self._embed_and_read(images, True)
        failures = {i: _named(f, images[i], names[i]) for i, f in failures.items()}
        good = [i for i in range(len(images)) if i not in failures]
        if not good:
            pid = names[0] if len(names) == 1 else "panorama"
            return Prediction(image_id=pid, error=_all_views_failed(list(failures.values()), pid))
        v = X[good].mean(axis=0)
        v = l2_normalize(v)
        pid = "+".join(names) if len(names) <= 4 else f"panorama of {len(names)} views"
        pred = self.locate_embeddings(
            v[None, :], [pid], top_k=top_k, evidence=[evidence] if evidence is not None else None
        )[0]
        if failures:
            pred.error = None
            pred.source = f"{len(good)} of {len(images)} views used; skipped: " + "; ".join(
                f.message for f in failures.values()
            )
        return pred

    def _locate_chunk(self, images: list[Any], names: list[str], top_k: int) -> list[Prediction]:
        X, failures, evidence = self._embed_and_read(images, False)
        failures = {i: _named(f, images[i], names[i]) for i, f in failures.items()}
        good = [i for i in range(len(images)) if i not in failures]
        ev = [evidence[i] for i in good] if evidence is not None else None
        answered = dict(zip(good, self.locate_embeddings(X[good], [names[i] for i in good], top_k=top_k, evidence=ev)))
        return [
            answered[i] if i in answered else Prediction(image_id=names[i], error=failures[i])
            for i in range(len(images))
        ]


def _heatmap(
    lat: NDArray[np.float64], lon: NDArray[np.float64], prob: NDArray[np.float64], n: int
) -> list[list[float]] | None:
    """The ``n`` most probable support points as ``[lat, lon, p]`` rows (for maps)."""
    if n <= 0:
        return None
    n = min(n, len(prob))
    idx = np.argpartition(-prob, n - 1)[:n]
    idx = idx[np.argsort(-prob[idx], kind="stable")]
    return [[round(float(lat[j]), 5), round(float(lon[j]), 5), float(prob[j])] for j in idx if prob[j] > 0]


def _cue_reader(cues: Any) -> Any:
    """None, a mode string or a CueReader -> a CueReader (or None when no cues are wanted)."""
    if cues is None or cues == "none":
        return None
    if isinstance(cues, str):
        from .cues import CueReader

        return CueReader(cues)
    return cues


def _none(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _named(failure: PhotoFailure, src: Any, name: str) -> PhotoFailure:
    """The failure for the caller's id ``name``; an in-memory input (which the decoder calls ``<N bytes>``
    or ``<PIL image ...>``) is also named by that id."""
    return failure.named(name, source=None if isinstance(src, (str, os.PathLike)) else name)


def _all_views_failed(failures: list[PhotoFailure], image_id: str) -> PhotoFailure:
    """A panorama none of whose views could be read: the one view's failure, or all of them in one
    (their common kind, ``unreadable`` when they differ)."""
    if len(failures) == 1:
        return failures[0].named(image_id)
    kinds = {f.kind for f in failures}
    kind = kinds.pop() if len(kinds) == 1 else "unreadable"
    return PhotoFailure(kind, "; ".join(f.message for f in failures), None, image_id)


def _name_of(im: Any, i: int) -> str:
    if isinstance(im, (str, os.PathLike)):
        return str(im)
    return str(getattr(im, "filename", "") or getattr(im, "name", "") or f"image-{i}")


# --------------------------------------------------------------------------- models
def _builtin_dir(name: str) -> Path:
    return Path(__file__).parent / "models" / name


def list_models() -> dict[str, str]:
    """Model names :func:`load_model` accepts without a path (``name:<arg>`` where one takes an argument),
    with one-line descriptions."""
    return {MODELS.usage(n): h for n, h in MODELS.describe().items()}


def load_model(
    model: str | os.PathLike[str] = "geoscout-lite",
    *,
    weights: str | None = None,
    runtime: str = "auto",
    refine: RefineConfig | str | None = None,
    geocode: bool = True,
    device: str = "cpu",
    places: Any = "countries",
    prompts: str | os.PathLike[str] | None = None,
    cues: Any = "none",
    precision: str = "auto",
    guess: str | None = None,
    tta: bool = False,
) -> Locator:
    """A ready :class:`Locator`: a registered model (``"geoscout-lite"`` (shipped), ``"geoclip"``,
    ``"zeroshot:<backbone>"``, a bundle on the Hugging Face hub ``"hf-bundle:user/name[@revision]"`` (through its
    cache; files SHA-256 verified), or a plugin's; see :func:`list_models`) or a bundle directory.

    ``weights`` points the backbone at a local weights folder (for hub models offline). ``device`` (cpu, cuda,
    cuda:N, auto) and ``precision`` (auto = bf16/fp16 autocast on a GPU) place the backbone. ``places``
    (``countries``, ``admin1``, ``countries:HR,SI``, a places file) and ``prompts`` (a TOML templates file)
    apply to ``zeroshot:`` models (see :mod:`geoscout.zeroshot`).
    ``cues``: what besides the pixels' look is read (``"all"``, ``"text"``, ``"metadata"``,
    ``"none"`` or a :class:`geoscout.cues.CueReader`); see :mod:`geoscout.cues`. The library
    default is ``"none"`` so that batch evaluation never sees EXIF positions; the CLI, the
    server and :func:`locate` read ``"all"``.
    ``runtime`` is ``"auto"`` (ONNX Runtime for EfficientNet and GeoCLIP backbones when installed, else torch), ``"onnx"``
    or ``"torch"``; ``guess`` overrides the answered point's rule (``mode``, ``expected-score``, ``median``;
    see :class:`Locator`). ``tta`` embeds each photo as the mean of itself and its mirror image (flip test-time
    augmentation: two forward passes; see ``benchmarks/RESULTS.md`` for what it gains).
    """
    if isinstance(refine, str):
        refine = RefineConfig(method=refine)
    options = ModelOptions(
        weights=weights,
        runtime=runtime,
        refine=refine,
        geocode=geocode,
        device=device,
        places=places,
        prompts=prompts,
        cues=cues,
        precision=precision,
        guess=guess,
        tta=tta,
    )
    loc = _load_registered_or_bundle(str(model), options)
    if tta:
        if not isinstance(getattr(loc, "tta", None), bool):
            raise InvalidInput(f"model {str(model)!r} does not embed photos itself; tta does not apply to it")
        loc.tta = True
    return loc


def _load_registered_or_bundle(key: str, options: ModelOptions) -> Locator:
    if key in MODELS:
        return MODELS.create(key, options=options)
    from .bundle import ModelBundle

    path = Path(key)
    if not (path / "config.json").is_file():
        close = difflib.get_close_matches(key, MODELS.list(), n=2)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise UnknownName(
            f"model {key!r} is neither a built-in model ({', '.join(list_models())}) nor a bundle folder with "
            f"config.json; {hint}train one with `geoscout train` or pass --model geoscout-lite"
        )
    return _locator_from_bundle(ModelBundle.load(path), key, options)


@dataclass(frozen=True)
class ModelOptions:
    """How :func:`load_model` builds a model (its keyword arguments); every model factory receives one."""

    weights: str | None = None
    runtime: str = "auto"
    refine: RefineConfig | None = None
    geocode: bool = True
    device: str = "cpu"
    places: Any = "countries"
    prompts: str | os.PathLike[str] | None = None
    cues: Any = "none"
    precision: str = "auto"
    guess: str | None = None
    tta: bool = False


@MODELS.register(
    "geoscout-lite",
    help="EfficientNet-Lite2 (ImageNet) + a PIGEON-style cell classifier trained on a few thousand "
    "Street View / Mapillary photos; ships inside the package, runs offline on a CPU",
)
def _geoscout_lite(*, options: ModelOptions) -> Locator:
    from .bundle import ModelBundle

    path = _builtin_dir("geoscout-lite")
    if not (path / "config.json").is_file():
        raise UnknownName(f"built-in model 'geoscout-lite' is not in this installation ({path}); reinstall geoscout")
    return _locator_from_bundle(ModelBundle.load(path), "geoscout-lite", options)


@MODELS.register(
    "geoclip",
    help="GeoCLIP (NeurIPS 2023): CLIP ViT-L/14 + the pretrained location encoder over its 100k GPS gallery "
    "(needs the CLIP weights from the Hugging Face hub, or --weights DIR)",
)
def _geoclip(*, options: ModelOptions) -> Locator:
    from .backbones import create_backbone
    from .heads.geoclip import load_geoclip_head

    head = load_geoclip_head()
    backbone = create_backbone(
        "geoclip", weights=options.weights, device=options.device, runtime=options.runtime, precision=options.precision
    )
    return _locator(backbone, head, "geoclip", MODELS.describe()["geoclip"], options)


@MODELS.register(
    "zeroshot",
    usage="zeroshot:<backbone>",
    help="zero-shot places (StreetCLIP, PIGEON): a CLIP backbone with a text tower scores the photo "
    "against prompts for countries, admin-1 regions or your own places (e.g. zeroshot:streetclip, zeroshot:hf:DIR)",
)
def _zeroshot(arg: str | None = None, *, options: ModelOptions) -> Locator:
    from .backbones import create_backbone
    from .zeroshot import zeroshot_head

    if not arg:
        raise UnknownName("model 'zeroshot' needs a backbone with a text tower, e.g. zeroshot:streetclip")
    o = options
    backbone = create_backbone(arg, weights=o.weights, device=o.device, runtime=o.runtime, precision=o.precision)
    head = zeroshot_head(backbone, o.places, prompts=o.prompts)
    return _locator(backbone, head, f"zeroshot:{arg}", MODELS.describe()["zeroshot"], o)


@MODELS.register(
    "hf-bundle",
    usage="hf-bundle:<user/name[@revision]>",
    help="a bundle on the Hugging Face hub (or in its cache), every file SHA-256 verified",
)
def _hf_bundle(arg: str | None = None, *, options: ModelOptions) -> Locator:
    from .hub import load_hub_bundle

    key = f"hf-bundle:{arg or ''}"
    bundle, _ = load_hub_bundle(key)
    return _locator_from_bundle(bundle, key, options)


def _locator(backbone: Any, head: Any, name: str, card: str, o: ModelOptions) -> Locator:
    """A locator for a model without a bundle: no partition, no retrieval, no refinement."""
    return Locator(
        backbone,
        head,
        refine=RefineConfig(method="none"),
        name=name,
        card=card,
        geocode=o.geocode,
        cues=o.cues,
        guess=o.guess,
    )


def _locator_from_bundle(bundle: Any, name: str, o: ModelOptions) -> Locator:
    from .backbones import create_backbone

    backbone = create_backbone(
        bundle.backbone_name, weights=o.weights, device=o.device, runtime=o.runtime, precision=o.precision
    )
    bundle.check_backbone(backbone.fingerprint(), name=name)
    return Locator(
        backbone,
        bundle.head,
        partition=bundle.partition,
        retrieval=bundle.retrieval,
        refine=o.refine,
        name=name,
        card=getattr(bundle, "card", ""),
        geocode=o.geocode,
        cues=o.cues,
        calibration=getattr(bundle, "calibration", None),
        guess=o.guess,
    )


def locate(
    images: Sequence[Any] | Any,
    model: str | Locator = "geoscout-lite",
    *,
    top_k: int = 5,
    panorama: bool = False,
    cues: Any = "all",
) -> list[Prediction]:
    """One-call API: ``locate(["photo.jpg"])`` -> list of :class:`Prediction` (reading text and EXIF cues;
    ``cues="none"`` for the pixels alone)."""
    if isinstance(images, (str, os.PathLike, bytes)) or not isinstance(images, Sequence):
        images = [images]
    loc = model if isinstance(model, Locator) else load_model(model, cues=cues)
    return loc.locate(images, top_k=top_k, panorama=panorama)


#: radii are scaled from at least this many km (a point-mass prediction still states a radius)
CALIBRATION_R_MIN_KM = 10.0


def calibration_records(
    bundle: Any, X: Any, y: Any, *, guess: str = "expected-score", novelty_k: int = 10
) -> CalibrationRecords:
    """:class:`~geoscout.calibration.CalibrationRecords` of held-out embeddings ``X`` with true ``y`` (lat, lon)
    under ``bundle``: its distribution, the true cell, the novelty against its training embeddings (NaN
    without retrieval data) and the point it answers (``guess`` rule, with the bundle's refinement)."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 2)
    if len(X) != len(y):
        raise InvalidInput(f"calibration: {len(X)} embeddings for {len(y)} true places")
    head = bundle.head
    retrieval = getattr(bundle, "retrieval", None)
    z = np.full(len(X), np.nan)
    if retrieval is not None and len(X):
        z = novelty(X, l2_normalize(np.asarray(retrieval.vectors, np.float32)), novelty_k)
    dist = head.predict_distribution(X)
    labels = np.full(len(X), -1, dtype=np.int64)
    if dist.cell is not None and hasattr(head, "_labels"):
        if getattr(head, "partition_", None) is None and getattr(bundle, "partition", None) is not None:
            head.partition_ = bundle.partition  # a loaded bundle keeps its partition beside the head
        if getattr(head, "partition_", None) is not None:
            labels = head._labels(y)
    loc = Locator(
        None, head, partition=bundle.partition, retrieval=retrieval, geocode=False, heatmap_points=0, guess=guess
    )
    preds = loc.locate_embeddings(X, [str(i) for i in range(len(X))], top_k=1)
    a = np.array([[p.answer.lat, p.answer.lon] for p in preds]).reshape(-1, 2)
    pts = [dist.points(i) for i in range(len(X))]
    return CalibrationRecords(
        prob=[np.asarray(dist.prob[i], np.float64) for i in range(len(X))],
        lat=[np.asarray(p[0], np.float64) for p in pts],
        lon=[np.asarray(p[1], np.float64) for p in pts],
        label=labels,
        novelty=z,
        answer=a,
        d_km=np.asarray(haversine_km(a[:, 0], a[:, 1], y[:, 0], y[:, 1]), np.float64).reshape(-1),
    )


def calibrate(
    bundle: Any,
    X_val: Any,
    y_val: Any,
    *,
    guess: str = "expected-score",
    fitted_on: str = "validation split",
    method: str = "global",
    novelty_k: int = 10,
    bins: int = 3,
    objective: str = "nll",
) -> Any:
    """Fit a :class:`~geoscout.calibration.Calibration` for ``bundle`` on held-out embeddings.

    Temperature: minimises the negative log-likelihood of the true cells (heads with cells only; else 1); with
    ``method`` ``novelty`` or ``novelty+mondrian`` it grows with the photo's novelty (its distance to its
    ``novelty_k`` most similar training embeddings, which the bundle's retrieval data holds). Radii:
    split-conformal factors at 50 / 68 / 90 % for the distance from the answered point (``guess`` rule, the
    bundle's refinement) to the truth, relative to the mass radius of the tempered distribution; with
    ``mondrian`` one factor per novelty bin (``bins`` equal-count bins of the held-out photos). See
    :func:`calibration_records` and :func:`geoscout.calibration.fit_calibration` (which also take records of
    several models, for cross-fitting). ``objective`` ``score`` fits the temperature so that the expected
    GeoGuessr scores best predict the achieved ones instead of by likelihood.
    """
    from .calibration import CALIBRATION_METHODS, fit_calibration

    if method not in CALIBRATION_METHODS:
        raise InvalidInput(f"calibration method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if len(np.asarray(X_val)) < 10:
        raise InvalidInput(f"calibration needs at least 10 held-out embeddings, got {len(np.asarray(X_val))}")
    if method != "global" and getattr(bundle, "retrieval", None) is None:
        raise InvalidInput(f"calibration method {method!r} needs the training embeddings (train with retrieval)")
    rec = calibration_records(bundle, X_val, y_val, guess=guess, novelty_k=novelty_k)
    return fit_calibration(
        rec,
        method=method,
        guess=guess,
        novelty_k=novelty_k,
        bins=bins,
        r_min_km=CALIBRATION_R_MIN_KM,
        fitted_on=fitted_on,
        objective=objective,
    )
