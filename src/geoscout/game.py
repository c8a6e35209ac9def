"""A GeoGuessr-style game over a dataset: photos from distinct locations, guesses scored 5000*exp(-d/1492.7).

The library core of ``geoscout play`` (the model plays alone) and of the web page's play mode
(``geoscout serve --game DATASET``): :func:`pick_rounds` draws the rounds, :func:`model_guess` lets a
locator guess, :func:`score_guess` scores any guess, :class:`Game` keeps one game's state.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput
from .geo import geoguessr_score, haversine_km

__all__ = [
    "MAX_ROUNDS",
    "Game",
    "Guess",
    "Round",
    "RoundResult",
    "model_guess",
    "photo_jpeg",
    "pick_rounds",
    "play",
    "score_guess",
]

MAX_ROUNDS = 50
STRIP_ASPECT = 2.5  # a photo this much wider than high is a panorama strip: split it into views for the model


@dataclass(frozen=True, slots=True)
class Round:
    """One round: a photo of the dataset and its true place (never shown to a player before the guess)."""

    image_id: str
    path: Path
    lat: float
    lon: float


@dataclass(slots=True)
class Guess:
    """A guess (degrees) with its distance to the truth (km) and its GeoGuessr score."""

    lat: float
    lon: float
    distance_km: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RoundResult:
    """The outcome of one round: the truth (with its place name), the player's and the model's guesses."""

    round: int  # 1-based
    image_id: str
    truth: dict[str, Any]
    model: Guess
    player: Guess | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "image_id": self.image_id,
            "truth": self.truth,
            "player": self.player.to_dict() if self.player is not None else None,
            "model": self.model.to_dict(),
        }


def pick_rounds(dataset: Any, rounds: int = 5, *, seed: int | None = None) -> list[Round]:
    """``rounds`` photos of distinct locations, drawn at random (reproducibly with ``seed``).

    ``dataset`` is a :class:`~geoscout.data.Dataset` or anything :func:`~geoscout.data.load_dataset`
    opens. Views of one panorama share a ``location_id``: one of them is drawn at most.
    """
    from .data import Dataset, load_dataset

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if not 1 <= rounds <= MAX_ROUNDS:
        raise InvalidInput(f"rounds must be between 1 and {MAX_ROUNDS}, got {rounds}")
    df = ds.frame.reset_index(drop=True)
    if "location_id" in df.columns:
        loc = df["location_id"].astype("string").fillna(df["image_id"].astype("string"))
    else:
        loc = df["image_id"].astype("string")
    groups = list(df.groupby(loc.to_numpy(), sort=True).indices.values())
    if len(groups) < rounds:
        raise InvalidInput(
            f"dataset {ds.name!r} has {len(groups)} distinct location(s); a game of {rounds} rounds needs as many "
            "(pass fewer --rounds or a bigger dataset)"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(groups), size=rounds, replace=False)
    paths = ds.image_paths()
    out = []
    for g in chosen:
        i = int(rng.choice(groups[int(g)]))
        out.append(Round(str(df["image_id"].iloc[i]), paths[i], float(df["lat"].iloc[i]), float(df["lon"].iloc[i])))
    return out


def score_guess(truth: Round, lat: float, lon: float) -> Guess:
    """Distance (haversine, km) and GeoGuessr score of guessing (``lat``, ``lon``) for ``truth``."""
    from .geo import validate_latlon

    la, lo = validate_latlon(np.array([lat], dtype=float), np.array([lon], dtype=float), what="guess")
    d = float(haversine_km(truth.lat, truth.lon, la[0], lo[0]))
    return Guess(float(la[0]), float(lo[0]), d, float(geoguessr_score(d)))


def model_guess(locator: Any, photo: Any) -> tuple[float, float]:
    """The locator's top candidate for ``photo``; a panorama strip (width >= 2.5 x height) is split into
    views and fused, as ``geoscout locate --strip`` does."""
    from .imageio import probe_image
    from .locator import split_strip

    w, h = probe_image(photo)
    if w >= STRIP_ASPECT * h:
        pred = locator.locate(split_strip(photo), top_k=1, panorama=True)[0]
    else:  # the path itself, so it is decoded exactly as the training photos were (JPEG draft scaling)
        pred = locator.locate([photo], top_k=1, ids=[str(photo)])[0]
    if not pred.ok:
        raise InvalidInput(f"{photo}: the model could not locate this photo: {pred.error}")
    return pred.answer.lat, pred.answer.lon


def _place(lat: float, lon: float) -> dict[str, Any]:
    from .places import reverse_geocode

    row = reverse_geocode(np.array([lat]), np.array([lon])).iloc[0]
    name = lambda k: None if row.get(k) is None or (isinstance(row.get(k), float) and np.isnan(row[k])) else row[k]  # noqa: E731
    return {
        "lat": lat,
        "lon": lon,
        "country": name("country"),
        "country_name": name("country_name"),
        "admin1": name("admin1"),
        "city": name("city"),
    }


def photo_jpeg(path: Path, *, max_side: int = 1600) -> bytes:
    """The photo re-encoded as JPEG without any metadata (no EXIF GPS may leak the answer), at most ``max_side`` px."""
    from .imageio import load_image

    im = load_image(path).convert("RGB")
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


@dataclass
class Game:
    """One game's state: its rounds, the results so far, the total scores. ``id`` is an unguessable token."""

    rounds: list[Round]
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    results: list[RoundResult] = field(default_factory=list)

    @property
    def current(self) -> int:
        """0-based index of the round being played (== len(rounds) when finished)."""
        return len(self.results)

    @property
    def finished(self) -> bool:
        return self.current >= len(self.rounds)

    def total(self, who: str) -> float:
        return float(sum((getattr(r, who).score if getattr(r, who) is not None else 0.0) for r in self.results))

    def play_round(self, model: tuple[float, float], player: tuple[float, float] | None = None) -> RoundResult:
        """Score the current round with the model's guess and optionally a player's, and move on."""
        if self.finished:
            raise InvalidInput(f"game {self.id} is over ({len(self.rounds)} rounds played)")
        rnd = self.rounds[self.current]
        res = RoundResult(
            round=self.current + 1,
            image_id=rnd.image_id,
            truth=_place(rnd.lat, rnd.lon),
            model=score_guess(rnd, *model),
            player=score_guess(rnd, *player) if player is not None else None,
        )
        self.results.append(res)
        return res

    def to_dict(self) -> dict[str, Any]:
        """The state a player may see: results of played rounds only, never a future round's place."""
        return {
            "game_id": self.id,
            "rounds": len(self.rounds),
            "round": min(self.current + 1, len(self.rounds)),
            "finished": self.finished,
            "results": [r.to_dict() for r in self.results],
            "total": {"player": round(self.total("player"), 1), "model": round(self.total("model"), 1)},
            "max_total": 5000 * len(self.rounds),
        }


def play(dataset: Any, locator: Any = "geoscout-lite", *, rounds: int = 5, seed: int | None = None) -> Game:
    """The model (a loaded Locator, or a name for :func:`~geoscout.locator.load_model`) plays a whole game alone;
    returns the finished :class:`Game` (``game.results``, ``game.total("model")``)."""
    if isinstance(locator, (str, Path)):
        from .locator import load_model

        locator = load_model(locator)
    game = Game(pick_rounds(dataset, rounds, seed=seed))
    for rnd in game.rounds:
        game.play_round(model_guess(locator, rnd.path))
    return game
