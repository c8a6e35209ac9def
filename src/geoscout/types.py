"""The small value types that cross layers: Candidate, Prediction.

All coordinates are WGS84 degrees, latitude first. Distances are kilometres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import PhotoFailure

__all__ = ["Candidate", "Cue", "PhotoFailure", "Prediction"]


@dataclass(slots=True)
class Candidate:
    """One candidate place for a photo, with its probability under the model.

    ``country`` is the ISO 3166-1 alpha-2 code (``None`` at sea); names may be ``None``
    when unknown.
    """

    lat: float
    lon: float
    probability: float
    cell: str | None = None
    country: str | None = None
    country_name: str | None = None
    admin1: str | None = None
    city: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


#: a cue's text read at a recognition score below this is flagged as unsure in its summary (and on the web page)
UNSURE_READING = 0.8


@dataclass(slots=True)
class Cue:
    """One piece of evidence read from a photo besides its pixels' look: text, script, a phone number, EXIF.

    ``kind``: ``text`` (a line read, no place evidence of its own), ``script``, ``language``,
    ``place`` (a gazetteer hit), ``phone``, ``domain``, ``currency``, ``gps`` (EXIF position,
    answers directly) or ``utc_offset`` (EXIF time-zone offset, constrains longitude).
    ``text`` is what was read; ``box`` its ``[x0, y0, x1, y1]`` pixels in the upright photo
    (``view`` = index of the panorama view it came from); ``evidence`` says in words what it
    suggests; ``effect`` how it moved the answer: ``error_rate`` (the share of such readings that say
    nothing about the place: the cue kind's, fitted on validation data, raised for an unsure reading as
    ``1 - reading_score * (1 - rate)``), ``reading_score`` (the recogniser's confidence in the text), ``top`` (``[[country, likelihood ratio], ...]`` best first) and, for
    point cues, ``point`` = ``[lat, lon, radius_km]``.
    """

    kind: str
    text: str
    evidence: str = ""
    box: list[float] | None = None
    view: int | None = None
    effect: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cue:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def summary(self) -> str:
        """One short phrase for tables: ``phone "+385 1 234 5678" -> HR x40``; an unsure reading (recognition
        score under :data:`UNSURE_READING`) says so: ``script "GGIHGI" (read at 0.63) -> ...``."""
        top = (self.effect or {}).get("top") or []
        moved = ", ".join(f"{c} x{r:.3g}" for c, r in top[:2])
        text = self.text if len(self.text) <= 24 else self.text[:23] + "…"
        score = (self.effect or {}).get("reading_score")
        unsure = f" (read at {score:.2f})" if isinstance(score, (int, float)) and score < UNSURE_READING else ""
        tail = f" -> {moved}" if moved else (f" ({self.evidence})" if self.evidence else "")
        return f'{self.kind} "{text}"{unsure}{tail}'


@dataclass(slots=True)
class Prediction:
    """The answer for one photo (or one panorama): ranked candidates and summaries.

    ``candidates`` are sorted by probability, best first. ``guess`` is the point to answer
    (the locator's guess rule, e.g. the point of highest expected GeoGuessr score; ``None``
    means the top candidate); :attr:`answer` gives whichever applies. ``radius_km`` is the
    stated 68 % radius around the answer and ``radii_km`` the 50 / 68 / 90 % radii (keys
    ``"50"``, ``"68"``, ``"90"``), calibrated when the model carries a calibration.
    ``expected_score`` is the GeoGuessr score expected under the model's own distribution
    when answering ``answer``. ``error`` is set (and candidates empty) when the input could
    not be read: a :class:`~geoscout.errors.PhotoFailure` (kind, source, reason; ``str()`` gives the
    one-line message). A plain string given as ``error`` becomes a failure of kind ``unknown``.
    """

    image_id: str
    candidates: list[Candidate] = field(default_factory=list)
    radius_km: float | None = None
    expected_score: float | None = None
    source: str | None = None
    error: PhotoFailure | None = None
    #: optional probability heat map for drawing: up to a few hundred ``[lat, lon, probability]`` rows
    heatmap: list[list[float]] | None = None
    #: evidence read from the photo (text, script, phone numbers, EXIF...) and how it moved the answer
    cues: list[Cue] = field(default_factory=list)
    guess: Candidate | None = None
    radii_km: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.error, str):  # callers (and files) from before the typed failures
            self.error = PhotoFailure.from_text(self.error, image_id=self.image_id)
        elif self.error is not None and self.error.image_id is None:
            self.error = self.error.named(self.image_id)

    @property
    def answer(self) -> Candidate:
        """The point to answer: ``guess`` when set, else the most probable candidate."""
        return self.guess if self.guess is not None else self.top

    @property
    def top(self) -> Candidate:
        if not self.candidates:
            raise ValueError(f"prediction for {self.image_id!r} has no candidates: {self.error}")
        return self.candidates[0]

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "source": self.source,
            "radius_km": self.radius_km,
            "expected_score": self.expected_score,
            "error": self.error.message if self.error is not None else None,
            "error_kind": self.error.kind if self.error is not None else None,
            **({"error_source": self.error.source} if self.error is not None and self.error.source else {}),
            "candidates": [c.to_dict() for c in self.candidates],
            **({"guess": self.guess.to_dict()} if self.guess is not None else {}),
            **({"radii_km": dict(self.radii_km)} if self.radii_km is not None else {}),
            **({"heatmap": self.heatmap} if self.heatmap is not None else {}),
            **({"cues": [c.to_dict() for c in self.cues]} if self.cues else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        return cls(
            image_id=str(d["image_id"]),
            candidates=[Candidate.from_dict(c) for c in d.get("candidates", [])],
            radius_km=d.get("radius_km"),
            expected_score=d.get("expected_score"),
            source=d.get("source"),
            error=PhotoFailure.from_text(
                str(d["error"]), kind=d.get("error_kind"), source=d.get("error_source"), image_id=str(d["image_id"])
            )
            if d.get("error")
            else None,
            heatmap=d.get("heatmap"),
            cues=[Cue.from_dict(c) for c in d.get("cues") or []],
            guess=Candidate.from_dict(d["guess"]) if d.get("guess") else None,
            radii_km={str(k): float(v) for k, v in d["radii_km"].items()} if d.get("radii_km") else None,
        )
