"""The game helper: watch a folder for new screenshots, crop the game's interface away,
locate, report the top guesses and refresh a map page.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput, PhotoFailure, failure_of
from .types import Prediction

__all__ = ["DEFAULT_CROP", "CropBox", "crop_screenshot", "watch_folder"]


@dataclass(frozen=True)
class CropBox:
    """Fractions of the screenshot to keep: left, top, right, bottom in [0, 1]."""

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self) -> None:
        if not (0 <= self.left < self.right <= 1 and 0 <= self.top < self.bottom <= 1):
            raise InvalidInput(f"crop box {self} must satisfy 0 <= left < right <= 1 and 0 <= top < bottom <= 1")

    @classmethod
    def parse(cls, text: str) -> CropBox:
        """``"0,0.08,1,0.78"`` -> CropBox."""
        try:
            parts = [float(x) for x in text.split(",")]
        except ValueError:
            raise InvalidInput(f"crop box {text!r}: expected four fractions 'left,top,right,bottom'") from None
        if len(parts) != 4:
            raise InvalidInput(f"crop box {text!r}: expected four fractions 'left,top,right,bottom'")
        return cls(*parts)


# A 16:9 GeoGuessr screenshot: the top bar (compass, score) takes ~8 % of the height, and the
# minimap plus the guess button sit in the bottom-right; keeping the band above ~78 % of the
# height removes both while keeping the road and the horizon.
DEFAULT_CROP = CropBox(0.0, 0.08, 1.0, 0.78)


def crop_screenshot(image: Any, box: CropBox = DEFAULT_CROP) -> Any:
    """Crop a screenshot (path, bytes or PIL image) to ``box``; returns an RGB PIL image."""
    from .imageio import load_image

    im = load_image(image)
    w, h = im.size
    return im.crop((round(box.left * w), round(box.top * h), round(box.right * w), round(box.bottom * h)))


def watch_folder(
    folder: str | Path,
    locator: Any,
    *,
    crop: CropBox | None = DEFAULT_CROP,
    top_k: int = 5,
    interval_s: float = 1.0,
    settle_s: float = 0.5,
    give_up_s: float = 3.0,
    on_result: Callable[[Path, Prediction], None] | None = None,
    on_incomplete: Callable[[Path, str], None] | None = None,
    map_path: str | Path | None = None,
    stop: threading.Event | None = None,
    include_existing: bool = False,
    max_events: int | None = None,
) -> list[Prediction]:
    """Poll ``folder`` for new image files and locate each once it has stopped growing.

    A file that does not decode (often one still being written in chunks, with pauses longer
    than ``settle_s``) is not given up at once: ``on_incomplete(path, reason)`` is called and the
    file is tried again whenever its size or modification time changes. Only when it stays
    unchanged and broken for ``give_up_s`` is it reported, once, as a failed prediction.
    Runs until ``stop`` is set (or ``max_events`` screenshots were handled, or Ctrl-C).
    Returns the predictions made.
    """
    from .locator import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder; create it or point --watch at your screenshot folder")
    stop = stop or threading.Event()
    w = _Watcher(folder, locator, crop, top_k, settle_s, give_up_s, on_incomplete)
    if not include_existing:
        w.done = {p: None for p in folder.iterdir() if p.is_file()}
    page = _WatchPage(folder, map_path)
    try:
        while not stop.is_set():
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                    continue
                pred = w.look(p)
                if pred is None:
                    continue
                w.results.append(pred)
                page.add(p, pred)
                if on_result is not None:
                    on_result(p, pred)
                if max_events is not None and len(w.results) >= max_events:
                    return w.results
            stop.wait(interval_s)
    except KeyboardInterrupt:
        pass
    return w.results


Signature = tuple[int, int]  # a file's (size, mtime_ns): a change means it is being written or was replaced


@dataclass
class _Watcher:
    """What :func:`watch_folder` knows about each file, and the decision what to do with it on a look."""

    folder: Path
    locator: Any
    crop: CropBox | None
    top_k: int
    settle_s: float
    give_up_s: float
    on_incomplete: Callable[[Path, str], None] | None
    seen: dict[Path, Signature] = field(default_factory=dict)
    #: failed files: signature, first failure (monotonic clock), why
    broken: dict[Path, tuple[Signature, float, PhotoFailure]] = field(default_factory=dict)
    #: handled files and the signature they had then (``None``: there before the watch began)
    done: dict[Path, Signature | None] = field(default_factory=dict)
    results: list[Prediction] = field(default_factory=list)

    def look(self, p: Path) -> Prediction | None:
        """The prediction to report for ``p`` now, or ``None`` (not settled, handled, or waiting to be fixed)."""
        try:
            st = p.stat()
        except OSError:  # removed meanwhile, or a symlink loop: judged if it comes back
            return None
        sig = (st.st_size, st.st_mtime_ns)
        if p in self.done and (self.done[p] is None or self.done[p] == sig):
            return None  # handled, and unchanged since (a file changed after a give-up is tried again)
        if self.seen.get(p) != sig or time.time() - st.st_mtime < self.settle_s:
            self.seen[p] = sig  # still being written: look again next round
            return None
        if p in self.broken and self.broken[p][0] == sig:  # failed before and unchanged since
            return self._give_up(p, sig)
        try:
            im = crop_screenshot(p, self.crop) if self.crop is not None else p
            pred: Prediction = self.locator.locate([im], top_k=self.top_k, ids=[p.name])[0]
        except InvalidInput as exc:
            pred = Prediction(image_id=p.name, error=failure_of(exc, source=str(p), image_id=p.name))
        if not pred.ok:  # maybe still being written: try again when it changes
            failure = pred.error or PhotoFailure("internal", "the model gave no candidates", str(p), p.name)
            self.broken[p] = (sig, time.monotonic(), failure)
            if self.on_incomplete is not None:
                self.on_incomplete(p, failure.reason)
            return None
        self.broken.pop(p, None)
        self.done[p] = sig
        return pred

    def _give_up(self, p: Path, sig: Signature) -> Prediction | None:
        """A file broken and unchanged for ``give_up_s``: its failure, reported once."""
        first, failure = self.broken[p][1], self.broken[p][2]
        if time.monotonic() - first < self.give_up_s:
            return None
        del self.broken[p]
        self.done[p] = sig
        given_up = dataclasses.replace(failure, reason=f"{failure.reason} (unchanged for {self.give_up_s:g} s)")
        return Prediction(image_id=p.name, error=given_up)


@dataclass
class _WatchPage:
    """The live map page of the last 10 answered screenshots (none without a ``path``)."""

    folder: Path
    path: str | Path | None
    history: list[Prediction] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # image_id -> file, for the page's thumbnails

    def add(self, p: Path, pred: Prediction) -> None:
        if not pred.ok:
            return
        self.history = [pred, *self.history][:10]
        if self.path is not None:
            from .maps import prediction_map_html

            self.files[pred.image_id] = str(p)
            prediction_map_html(
                self.history,
                self.path,
                title=f"geoscout watch: {self.folder}",
                refresh_seconds=3,
                image_paths=self.files,
            )
