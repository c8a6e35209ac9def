"""Zero-shot places (StreetCLIP, PIGEON): score photos against text prompts with a CLIP backbone.

``zeroshot_head(backbone, places)`` turns the backbone's text tower and a prompt ensemble per place
(countries, admin-1 regions or a user's own list; templates in ``prompts.toml``, which a user can
copy, edit and pass as ``prompts=FILE``) into a head: probabilities are the softmax over places of
the CLIP logits ``logit_scale * cos(image, place text)``. :func:`geoscout.locator.load_model` builds a
Locator from it for ``zeroshot:<backbone>``; :func:`fuse_with_prior` multiplies a trained model's
distribution by it (a product of experts, see its docstring).

Backbones without a text tower (``effnet-lite2``, ``geoclip``) raise :class:`InvalidInput`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import string
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput
from geoscout.geo import geoguessr_score, haversine_km, l2_normalize

from .places import PlaceSet, admin1_places, country_places, load_place_list, place_set

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_PROMPTS",
    "PlaceSet",
    "PriorFusedHead",
    "ZeroShotHead",
    "admin1_places",
    "country_places",
    "fuse_with_prior",
    "load_place_list",
    "load_prompts",
    "place_set",
    "place_text_embeddings",
    "zeroshot_head",
]

#: the prompt templates shipped with the package (copy it to make your own)
DEFAULT_PROMPTS = Path(__file__).with_name("prompts.toml")
#: CLIP's trained temperature (OpenAI CLIP and StreetCLIP reach the clamp of 100); used when a backbone has none
DEFAULT_LOGIT_SCALE = 100.0
_FIELDS = {"countries": {"country"}, "admin1": {"admin1", "country"}, "places": {"place"}}
_MAX_PROMPTS_BYTES = 1 << 20


def load_prompts(path: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Prompt templates per kind of place (``countries``, ``admin1``, ``places``) from a TOML file
    (default: the shipped :data:`DEFAULT_PROMPTS`). Unknown fields or empty lists raise InvalidInput."""
    p = Path(path).expanduser() if path is not None else DEFAULT_PROMPTS
    if not p.is_file():
        raise InvalidInput(f"{p}: no such prompts file; copy {DEFAULT_PROMPTS} and edit it")
    if p.stat().st_size > _MAX_PROMPTS_BYTES:
        raise InvalidInput(f"{p}: too big for a prompts file (limit {_MAX_PROMPTS_BYTES:,} bytes)")
    try:
        data = tomllib.loads(p.read_bytes()[:_MAX_PROMPTS_BYTES].decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{p}: not a valid TOML prompts file ({exc}); see {DEFAULT_PROMPTS}") from None
    out: dict[str, list[str]] = {}
    for kind, allowed in _FIELDS.items():
        section = data.get(kind)
        if section is None:
            continue
        templates = section.get("templates") if isinstance(section, dict) else None
        if not isinstance(templates, list) or not templates or not all(isinstance(t, str) and t for t in templates):
            raise InvalidInput(f"{p}: [{kind}] needs templates = a non-empty list of strings")
        for t in templates:
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            except ValueError as exc:
                raise InvalidInput(f"{p}: [{kind}] template {t!r}: {exc}") from None
            bad = used - allowed
            if bad or not used:
                raise InvalidInput(
                    f"{p}: [{kind}] template {t!r} must use "
                    f"{' and '.join('{' + f + '}' for f in sorted(allowed))} only"
                    + (f", not {', '.join('{' + f + '}' for f in sorted(bad))}" if bad else "")
                )
        out[kind] = list(templates)
    if not out:
        raise InvalidInput(f"{p}: no [countries], [admin1] or [places] section; see {DEFAULT_PROMPTS}")
    return out


def _require_text(backbone: Any) -> None:
    if not getattr(backbone, "has_text", False):
        name = getattr(backbone, "name", str(backbone))
        raise InvalidInput(
            f"{name} has no text tower: zero-shot places need a CLIP backbone with its tokenizer files "
            "(e.g. hf:DIR, streetclip)"
        )


def place_text_embeddings(
    backbone: Any, places: PlaceSet, templates: list[str], *, batch_size: int = 256, cache: bool = True
) -> NDArray[np.float32]:
    """(P, D) L2-normalised prompt-ensemble embedding per place: the mean of the normalised embeddings
    of every template filled with the place's names. Cached on disk by backbone fingerprint and texts."""
    _require_text(backbone)
    texts = [t.format(**f) for f in places.fields for t in templates]
    key = hashlib.sha256(
        json.dumps([backbone.fingerprint_hash(), texts], ensure_ascii=False).encode("utf-8")
    ).hexdigest()[:24]
    path = None
    if cache:
        from geoscout._io import atomic_path, cache_dir

        try:
            path = cache_dir("zeroshot") / f"text-{key}.npy"
            if path.is_file():
                emb = np.load(path, allow_pickle=False)
                if emb.shape[0] == len(places):
                    return emb.astype(np.float32, copy=False)
        except (OSError, ValueError):
            path = None
    parts = [backbone.encode_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    t = np.concatenate(parts).astype(np.float32).reshape(len(places), len(templates), -1)
    emb = t.mean(axis=1)
    emb = l2_normalize(emb)
    if path is not None:
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, emb, allow_pickle=False)
        except OSError:
            pass
    return emb


def _logit_scale(backbone: Any) -> float:
    model = getattr(backbone, "clip_model", None)
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        return DEFAULT_LOGIT_SCALE
    return float(np.exp(float(scale.detach().cpu().reshape(-1)[0])))


class ZeroShotHead:
    """Softmax over places of ``logit_scale * X @ T.T`` (X: image embeddings, T: place text embeddings).

    ``predict_distribution`` gives the places' label points as support (``cell`` = place ids), like
    every head; :meth:`summarize` spreads each place's probability over its member points for the
    uncertainty radius and the expected GeoGuessr score.
    """

    def __init__(self, places: PlaceSet, text_embeddings: NDArray[np.float32], logit_scale: float) -> None:
        if text_embeddings.shape[0] != len(places):
            raise InvalidInput(f"{text_embeddings.shape[0]} text embeddings for {len(places)} places")
        self.places = places
        self.text_embeddings = np.asarray(text_embeddings, dtype=np.float32)
        self.logit_scale = float(logit_scale)

    @property
    def n_features_in_(self) -> int:
        return int(self.text_embeddings.shape[1])

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """(N, P) probabilities of the places for (N, D) image embeddings (normalised here)."""
        from geoscout.heads.base import check_embeddings

        x = check_embeddings(X, dim=self.n_features_in_).astype(np.float64)
        x = l2_normalize(x)
        logits = self.logit_scale * (x @ self.text_embeddings.T.astype(np.float64))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_distribution(self, X: Any) -> Any:
        from geoscout.heads.base import Distribution

        return Distribution(self.places.lat, self.places.lon, self.predict_proba(X), cell=list(self.places.ids))

    def predict(self, X: Any) -> NDArray[np.float64]:
        """(N, 2) label point of the most probable place."""
        best = self.predict_proba(X).argmax(axis=1)
        return np.stack([self.places.lat[best], self.places.lon[best]], axis=1)

    def summarize(
        self, prob: NDArray[np.float64], best: tuple[float, float], mass: float = 0.68
    ) -> tuple[float, float]:
        """(radius_km, expected_score) around ``best`` with each place's probability ``prob`` (P,) spread over
        its member points: the smallest radius holding ``mass`` of it, and the mean GeoGuessr score."""
        ps = self.places
        total = np.zeros(len(ps))
        np.add.at(total, ps.member_place, ps.member_weight)
        w = prob[ps.member_place] * ps.member_weight / total[ps.member_place]
        d = haversine_km(best[0], best[1], ps.member_lat, ps.member_lon)
        order = np.argsort(d, kind="stable")
        cum = np.cumsum(w[order]) / max(float(w.sum()), 1e-12)
        radius = float(d[order][min(int(np.searchsorted(cum, mass - 1e-9)), len(order) - 1)])
        expected = float((w * geoguessr_score(d)).sum() / max(float(w.sum()), 1e-12))
        return radius, expected


def zeroshot_head(
    backbone: Any,
    places: str | os.PathLike[str] | PlaceSet = "countries",
    *,
    prompts: str | os.PathLike[str] | None = None,
    logit_scale: float | None = None,
) -> ZeroShotHead:
    """A :class:`ZeroShotHead` for ``backbone`` (needs a text tower) over ``places`` (see
    :func:`~geoscout.zeroshot.places.place_set`) with the prompt templates of ``prompts`` (TOML; default:
    the shipped file). ``logit_scale`` defaults to the backbone's own CLIP temperature (100 if unknown)."""
    _require_text(backbone)
    ps = place_set(places)
    templates = load_prompts(prompts)
    if ps.kind not in templates:
        src = prompts or DEFAULT_PROMPTS
        raise InvalidInput(f"{src}: no [{ps.kind}] templates for these places; add a [{ps.kind}] section")
    scale = _logit_scale(backbone) if logit_scale is None else float(logit_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise InvalidInput(f"logit_scale must be a positive number, got {logit_scale!r}")
    return ZeroShotHead(ps, place_text_embeddings(backbone, ps, templates[ps.kind]), scale)


class PriorFusedHead:
    """A trained head's distribution times a zero-shot prior: ``p(s) ∝ p_head(s) · p_prior(place(s))^weight``.

    This is a product of experts over the head's support points ``s``: each support point takes the
    zero-shot probability of the place containing it (:meth:`PlaceSet.assign`; points in no place take
    the least probable place's). It treats the two models as independent evidence and does not divide
    out a shared base rate, so ``weight`` < 1 tempers the prior (1 = trust both equally, 0 = no prior).
    Both heads must read the same image embeddings (one backbone).
    """

    def __init__(self, head: Any, prior: ZeroShotHead, weight: float = 1.0) -> None:
        if not (np.isfinite(weight) and weight >= 0):
            raise InvalidInput(f"prior weight must be a number >= 0, got {weight!r}")
        self.head = head
        self.prior = prior
        self.weight = float(weight)
        self._assigned: tuple[bytes, NDArray[np.int64]] | None = None

    def __getattr__(self, name: str) -> Any:  # the trained head's other attributes (n_features_in_, ...)
        if name in ("head", "prior", "weight", "_assigned"):
            raise AttributeError(name)
        return getattr(self.head, name)

    def _assign(self, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.int64]:
        key = hashlib.sha1(np.ascontiguousarray(lat).tobytes() + np.ascontiguousarray(lon).tobytes()).digest()
        if self._assigned is None or self._assigned[0] != key:
            self._assigned = (key, self.prior.places.assign(lat, lon))
        return self._assigned[1]

    def predict_distribution(self, X: Any) -> Any:
        from geoscout.heads.base import Distribution

        dist = self.head.predict_distribution(X)
        pz = self.prior.predict_proba(X)  # (N, P)
        idx = self._assign(dist.lat, dist.lon)
        idx = np.broadcast_to(idx, dist.prob.shape)
        floor = pz.min(axis=1, keepdims=True)
        rows = np.arange(dist.n)[:, None]
        w = np.where(idx >= 0, pz[rows, np.maximum(idx, 0)], floor)
        p = dist.prob * np.power(np.maximum(w, 1e-300), self.weight)
        s = p.sum(axis=1, keepdims=True)
        p = np.where(s > 0, p / np.maximum(s, 1e-300), dist.prob)
        return Distribution(dist.lat, dist.lon, p, cell=dist.cell)


def fuse_with_prior(
    locator: Any,
    places: str | os.PathLike[str] | PlaceSet = "countries",
    *,
    prompts: str | os.PathLike[str] | None = None,
    weight: float = 1.0,
    logit_scale: float | None = None,
) -> Any:
    """A copy of ``locator`` whose head is fused with a zero-shot prior over ``places`` computed with the
    locator's own backbone (which needs a text tower): see :class:`PriorFusedHead`."""
    if isinstance(getattr(locator, "head", None), ZeroShotHead):
        raise InvalidInput("this model is already zero-shot; a zero-shot prior fuses with a trained model")
    prior = zeroshot_head(locator.backbone, places, prompts=prompts, logit_scale=logit_scale)
    fused = copy.copy(locator)
    fused.head = PriorFusedHead(locator.head, prior, weight)
    fused.name = f"{locator.name}+zeroshot({prior.places.kind})"
    return fused
