"""The game helper: watch a folder for new screenshots, crop the game's interface away,
locate, report the top guesses and refresh a map page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput
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
    on_result: Callable[[Path, Prediction], None] | None = None,
    map_path: str | Path | None = None,
    stop: threading.Event | None = None,
    include_existing: bool = False,
    max_events: int | None = None,
) -> list[Prediction]:
    """Poll ``folder`` for new image files and locate each once it has stopped growing.

    Runs until ``stop`` is set (or ``max_events`` screenshots were handled, or Ctrl-C).
    Returns the predictions made. A screenshot that cannot be read is reported, not fatal.
    """
    from .locate import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder; create it or point --watch at your screenshot folder")
    stop = stop or threading.Event()
    seen: dict[Path, tuple[int, float]] = {}
    done: set[Path] = set()
    if not include_existing:
        done = {p for p in folder.iterdir() if p.is_file()}
    results: list[Prediction] = []
    history: list[Prediction] = []
    try:
        while not stop.is_set():
            for p in sorted(folder.iterdir()):
                if p in done or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                    continue
                st = p.stat()
                sig = (st.st_size, st.st_mtime)
                if seen.get(p) != sig or time.time() - st.st_mtime < settle_s:
                    seen[p] = sig  # still being written: look again next round
                    continue
                done.add(p)
                try:
                    im = crop_screenshot(p, crop) if crop is not None else p
                    pred = locator.locate([im], top_k=top_k, ids=[p.name])[0]
                except InvalidInput as exc:
                    pred = Prediction(image_id=p.name, error=str(exc))
                results.append(pred)
                if pred.ok:
                    history = ([pred] + history)[:10]
                    if map_path is not None:
                        from .maps import prediction_map_html

                        prediction_map_html(history, map_path)
                if on_result is not None:
                    on_result(p, pred)
                if max_events is not None and len(results) >= max_events:
                    return results
            stop.wait(interval_s)
    except KeyboardInterrupt:
        pass
    return results
