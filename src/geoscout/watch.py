"""The game helper: watch a folder for new screenshots, crop the game's interface away,
locate, report the top guesses and refresh a map page.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    seen: dict[Path, tuple[int, int]] = {}
    broken: dict[Path, tuple[tuple[int, int], float, PhotoFailure]] = {}  # signature, first failure (monotonic), why
    done: dict[Path, tuple[int, int] | None] = {}  # handled files and the signature they had then
    if not include_existing:
        done = {p: None for p in folder.iterdir() if p.is_file()}
    results: list[Prediction] = []
    history: list[Prediction] = []
    files: dict[str, str] = {}  # image_id -> file, for the page's thumbnails

    def report(p: Path, pred: Prediction) -> bool:
        nonlocal history
        results.append(pred)
        if pred.ok:
            history = ([pred, *history])[:10]
            if map_path is not None:
                from .maps import prediction_map_html

                files[pred.image_id] = str(p)
                prediction_map_html(
                    history, map_path, title=f"geoscout watch: {folder}", refresh_seconds=3, image_paths=files
                )
        if on_result is not None:
            on_result(p, pred)
        return max_events is not None and len(results) >= max_events

    try:
        while not stop.is_set():
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                    continue
                try:
                    st = p.stat()
                except OSError:  # removed meanwhile, or a symlink loop: judged if it comes back
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if p in done and (done[p] is None or done[p] == sig):
                    continue  # handled, and unchanged since (a file changed after a give-up is tried again)
                if seen.get(p) != sig or time.time() - st.st_mtime < settle_s:
                    seen[p] = sig  # still being written: look again next round
                    continue
                if p in broken and broken[p][0] == sig:  # failed before and unchanged since
                    first, failure = broken[p][1], broken[p][2]
                    if time.monotonic() - first < give_up_s:
                        continue
                    del broken[p]
                    done[p] = sig
                    given_up = dataclasses.replace(failure, reason=f"{failure.reason} (unchanged for {give_up_s:g} s)")
                    if report(p, Prediction(image_id=p.name, error=given_up)):
                        return results
                    continue
                try:
                    im = crop_screenshot(p, crop) if crop is not None else p
                    pred = locator.locate([im], top_k=top_k, ids=[p.name])[0]
                except InvalidInput as exc:
                    pred = Prediction(image_id=p.name, error=failure_of(exc, source=str(p), image_id=p.name))
                if not pred.ok:  # maybe still being written: try again when it changes
                    failure = pred.error or PhotoFailure("internal", "the model gave no candidates", str(p), p.name)
                    broken[p] = (sig, time.monotonic(), failure)
                    if on_incomplete is not None:
                        on_incomplete(p, failure.reason)
                    continue
                broken.pop(p, None)
                done[p] = sig
                if report(p, pred):
                    return results
            stop.wait(interval_s)
    except KeyboardInterrupt:
        pass
    return results
