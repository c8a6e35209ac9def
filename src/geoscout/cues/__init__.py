"""Read a photo like a GeoGuessr player: text, script, language, place names and metadata as evidence.

The flow, per photo::

    read_text (OCR, watermarks dropped)  ->  text evidence (script, language, place, phone, domain, currency)
    EXIF                                 ->  metadata evidence (gps, utc_offset)
    CueFuser: p(place | photo, cues) ∝ p(place | photo) * Π (e_k + (1 - e_k) t_k)   (error rates e_k fitted on validation data)

:class:`CueReader` gathers the evidence (``mode``: ``none``, ``text``, ``metadata`` or ``all``);
:func:`apply_cues` fuses it with a head's distribution and explains it as
:class:`~geoscout.types.Cue` records. EXIF GPS, when present and allowed, answers directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..types import Cue
from .fusion import CUE_KINDS, CueFuser, Fused, default_fuser
from .metadata import exif_cues
from .ocr import TextLine, is_overlay, ocr_status, rapidocr_installed, read_text, warm_up
from .text import Evidence

__all__ = [
    "CUE_KINDS",
    "CUE_MODES",
    "CueFuser",
    "CueReader",
    "CuedDistribution",
    "Evidence",
    "Fused",
    "TextLine",
    "apply_cues",
    "default_fuser",
    "drop_map_like",
    "evidence_to_cues",
    "exif_cues",
    "is_overlay",
    "ocr_status",
    "read_text",
    "text_evidence",
]

CUE_MODES = ("none", "text", "metadata", "all")


def text_evidence(lines: Sequence[Any]) -> list[Evidence]:
    """All text cues in the read ``lines`` (objects with ``text`` and ``box``)."""
    from .text import find_currencies, find_domains, find_languages, find_phones, find_places, find_scripts

    lines = list(lines)
    if not lines:
        return []
    out: list[Evidence] = []
    for finder in (find_places, find_phones, find_domains, find_currencies, find_scripts, find_languages):
        out.extend(finder(lines))
    return drop_map_like(out)


def drop_map_like(evidence: list[Evidence]) -> list[Evidence]:
    """Without its place names when they name more than ``MAX_PLACE_COUNTRIES`` countries (a map,
    a list of destinations, a timetable: not where the photo was taken)."""
    from .text import MAX_PLACE_COUNTRIES

    named: set[str] = set()
    for e in evidence:
        if e.kind == "place":
            named |= _place_countries(e)
    if len(named) <= MAX_PLACE_COUNTRIES:
        return evidence
    return [e for e in evidence if e.kind != "place"]


def _place_countries(e: Evidence) -> set[str]:
    if e.points:
        import numpy as np

        from ..places import country_of

        la = np.array([p[0] for p in e.points])
        lo = np.array([p[1] for p in e.points])
        w = np.array([p[3] for p in e.points])
        return {str(c) for c, a in zip(country_of(la, lo), w) if c is not None and a == w.max()}
    return {c for c, v in (e.countries or {}).items() if v >= 1.0}


@dataclass
class _ViewLine:
    text: str
    box: tuple[float, float, float, float]
    score: float
    view: int | None


@dataclass
class CueReader:
    """Gathers evidence from photos. ``mode``: ``all`` (default), ``text``, ``metadata`` or ``none``;
    ``ignore_metadata=True`` drops EXIF cues whatever the mode (evaluation and benchmarks use it)."""

    mode: str = "all"
    ignore_metadata: bool = False

    def __post_init__(self) -> None:
        if self.mode not in CUE_MODES:
            raise InvalidInput(f"cues must be one of {', '.join(CUE_MODES)}, got {self.mode!r}")
        self.notes: list[str] = []
        if self.text and rapidocr_installed():
            warm_up()  # the OCR engine loads in the background meanwhile

    @property
    def text(self) -> bool:
        return self.mode in ("text", "all")

    @property
    def metadata(self) -> bool:
        return self.mode in ("metadata", "all") and not self.ignore_metadata

    @property
    def active(self) -> bool:
        return self.text or self.metadata

    def read(self, sources: Sequence[Any]) -> list[list[Evidence]]:
        """Evidence per source (paths, bytes or PIL images); unreadable sources get none."""
        return [self.read_one(s) for s in sources]

    def read_panorama(self, views: Sequence[Any]) -> list[Evidence]:
        """Evidence of one place seen in several views: text of all views together, EXIF of the first."""
        evs: list[Evidence] = []
        lines: list[Any] = []
        for v, src in enumerate(views):
            if self.metadata and not evs:
                evs.extend(exif_cues(src))
            if self.text:
                lines.extend(_ViewLine(ln.text, ln.box, ln.score, v) for ln in self._lines(src))
        return evs + text_evidence(lines)

    def read_one(self, src: Any) -> list[Evidence]:
        evs: list[Evidence] = []
        if self.metadata:
            evs.extend(exif_cues(src))
        if self.text:
            evs.extend(text_evidence(self._lines(src)))
        return evs

    def _lines(self, src: Any) -> list[TextLine]:
        if not rapidocr_installed():
            note = "text cues skipped: no OCR installed (pip install 'geoscout[cues]')"
            if note not in self.notes:
                self.notes.append(note)
            return []
        from ..imageio import load_image

        try:
            im = load_image(src) if not isinstance(src, (str, os.PathLike)) or os.path.exists(src) else None
        except InvalidInput:
            return []  # the backbone reports the unreadable photo; no second message here
        return read_text(im) if im is not None else []


def evidence_to_cues(evidence: Sequence[Evidence], effects: Sequence[dict[str, Any]] | None = None) -> list[Cue]:
    """Public :class:`~geoscout.types.Cue` records for evidence, with each one's effect on the answer."""
    out = []
    for i, e in enumerate(evidence):
        eff = dict(effects[i]) if effects is not None and i < len(effects) else None
        out.append(
            Cue(
                kind=e.kind,
                text=e.text,
                evidence=e.evidence,
                box=[round(float(x), 1) for x in e.box] if e.box is not None else None,
                view=e.view,
                effect=eff,
            )
        )
    return out


@dataclass
class CuedDistribution:
    """One photo's distribution after its cues: support points, probabilities, ranking and explanations.

    ``order`` ranks the support best first; points ``>= n_visual`` were added by cues (a town
    read on a sign, the EXIF position) and have no cell of the head.
    """

    lat: Any
    lon: Any
    prob: Any
    order: Any
    n_visual: int
    cues: list[Cue]
    fused: Fused | None = None

    def rescored(self, visual: Any) -> Any:
        """The cues applied once to another version of the visual distribution over the head's points
        (the untempered one the answer is chosen from): :meth:`Fused.rescored`; EXIF GPS stays certain."""
        import numpy as np

        return self.fused.rescored(visual) if self.fused is not None else np.asarray(self.prob, dtype=np.float64)


def apply_cues(
    lat: Any, lon: Any, prob: Any, evidence: Sequence[Evidence], fuser: CueFuser, k: int
) -> CuedDistribution:
    """Fuse one photo's visual distribution with its evidence; EXIF GPS answers directly."""
    import numpy as np

    evidence = list(evidence)
    gps = next((e for e in evidence if e.kind == "gps"), None)
    if gps is not None:
        la, lo, r, _ = gps.points[0]
        effects: list[dict[str, Any]] = [
            {"answer": "direct", "point": [round(la, 6), round(lo, 6), r]}
            if e is gps
            else {"top": [], "error_rate": None}
            for e in evidence
        ]
        return CuedDistribution(
            np.array([la]), np.array([lo]), np.array([1.0]), np.array([0]), 0, evidence_to_cues(evidence, effects)
        )
    fused = fuser.fuse(lat, lon, prob, evidence)
    k = max(1, min(int(k), len(fused.prob)))
    part = np.argpartition(-fused.prob, k - 1)[:k]
    order = part[np.argsort(-fused.prob[part], kind="stable")]
    return CuedDistribution(
        fused.lat, fused.lon, fused.prob, order, fused.n_visual, evidence_to_cues(evidence, fused.effects), fused
    )
