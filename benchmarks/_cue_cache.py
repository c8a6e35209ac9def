"""The photos of every ../shared set as evaluation units for the cue benchmark, with their OCR read once.

A unit is one place: a Flickr / Mapillary / Street View photo, a strip or panorama split into
its views, or a Croatia location's 4 heading files. :func:`units` lists them; :func:`ocr_units`
reads the text of every view once (the slow part: ~1 s per view on 2 cores) and appends it to
a JSON-lines cache keyed by file path and size and by the readers' versions (not mtime: a fresh copy
of ../shared keeps its cache), outside the
repository (``$GEOSCOUT_HOME/bench-cues/ocr.jsonl``), so that fitting and reporting rerun in
seconds. Only the OCR lines are cached, not the evidence: evidence rules can change and are
recomputed from the lines on every run.

The cached lines are the ungated reading (detection on the whole 1,024 px copy). The shipped reader
first runs a gate (``geoscout.cues.ocr.gate_open``: the large-photo gate on photos larger than its side,
the view gate - the view's own detection map with its overlay zones - on smaller views) and stops where it
sees no text; :func:`gate_units` records its verdict per view (cheap: the gate alone, no re-reading) in
``gate.jsonl``, keyed by the files and both gates' settings (true: open, false: stopped; null in verdicts
recorded before the view gate: not gated), and :func:`load_cache` by default drops the lines of every view
the gate stopped, so the benchmark sees what the shipped reader reads (``load_cache(gate=False)``: the
ungated reading).

    nice -n 5 python benchmarks/_cue_cache.py          # fill the cache (resumable)
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED

#: sets and how many places of each (None: all); panoramas are 1,374, a location-spread sample is read
SETS: dict[str, int | None] = {
    "im2gps": None,
    "osv5m-sample": None,
    "streetview-world": None,
    "streetview-strips": None,
    "streetview-croatia": None,
    "streetview-panoramas": 300,
}
SPLIT = {"streetview-strips", "streetview-panoramas"}


@dataclass
class Unit:
    set: str
    key: str  # location key (groups views and duplicates; folds are drawn by it)
    paths: list[Path]  # files; one file split into views for strips and panoramas
    lat: float
    lon: float

    @property
    def split(self) -> bool:
        return self.set in SPLIT


def units(sets: dict[str, int | None] | None = None) -> list[Unit]:
    import pandas as pd

    out: list[Unit] = []
    for name, n in (sets or SETS).items():
        root = SHARED / "data" / name
        if not (root / "manifest.csv").is_file():
            continue
        df = pd.read_csv(root / "manifest.csv")
        key = df["location_id"].astype(str) if "location_id" in df else df["path"].astype(str)
        df = df.assign(key=key)
        groups = list(df.groupby("key", sort=False))
        if n is not None and n < len(groups):
            step = len(groups) / n
            groups = [groups[int(i * step)] for i in range(n)]
        for k, g in groups:
            out.append(
                Unit(
                    name, f"{name}/{k}", [root / p for p in g["path"]], float(g["lat"].iloc[0]), float(g["lon"].iloc[0])
                )
            )
    return out


def views(u: Unit) -> list[Any]:
    """The unit's views as Pillow images."""
    from geoscout.imageio import load_image
    from geoscout.locator import split_strip

    if u.split:
        return split_strip(u.paths[0])
    return [load_image(p) for p in u.paths]


def cache_file() -> Path:
    from geoscout._io import cache_dir

    return cache_dir("bench-cues") / "ocr.jsonl"


def _signature() -> str:
    from geoscout.cues import ocr_status
    from geoscout.cues.ocr import DETECT_SIDE, MIN_SCORE

    s = ocr_status()
    return f"rapidocr={s['rapidocr']};tesseract={s['tesseract']};side={DETECT_SIDE};min={MIN_SCORE}"


def _file_key(u: Unit) -> str:
    return "|".join(f"{p.resolve()}:{p.stat().st_size}" for p in u.paths) + "#" + _signature()


def _normalise_key(key: str) -> str:
    """A cached key without the mtime field that older records carry (``path:size:mtime``)."""
    files, _, sig = key.partition("#")
    return "|".join(re.sub(r"^(.*:\d+):\d+$", r"\1", f) for f in files.split("|")) + "#" + sig


def _records(f: Path) -> list[dict[str, Any]]:
    out = []
    if f.is_file():
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by an interrupted run
    return out


def load_cache(*, gate: bool = True) -> dict[str, list[list[dict[str, Any]]]]:
    """Cached lines per unit key, each view's lines as the shipped reader sees them (``gate=True``: only
    the lines the gate lets through; a unit whose gate verdict is not recorded yet is left out), or the
    full reading (``gate=False``)."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for rec in _records(cache_file()):
        out[_normalise_key(rec["key"])] = rec["views"]
    if not gate:
        return out
    verdicts = {rec["key"]: rec["views"] for rec in _records(gate_file())}
    sig = _gate_signature()
    gated = {}
    for key, vs in out.items():
        opened = verdicts.get(key.partition("#")[0] + "#" + sig)
        if opened is None or len(opened) != len(vs):
            continue  # no verdict recorded yet: run this script
        gated[key] = [lines if ok is not False else [] for lines, ok in zip(vs, opened)]
    return gated


def gate_file() -> Path:
    from geoscout._io import cache_dir

    return cache_dir("bench-cues") / "gate.jsonl"


def _gate_signature() -> str:
    from geoscout.cues import ocr

    s = ocr.ocr_status()
    zones = ",".join("/".join(f"{x:g}" for x in z) for z in ocr.OVERLAY_ZONES)
    # both gates ignore the overlay zones; verdicts recorded before the view gate existed have no "view" field
    return (
        f"rapidocr={s['rapidocr']};gate={ocr.GATE_SIDE}/{ocr.GATE_THRESH}/{ocr.GATE_MIN_AREA}/zones={zones}"
        f";view={ocr.VIEW_GATE_THRESH}/{ocr.VIEW_GATE_MIN_AREA}/zones={zones}"
    )


def gate_units(us: list[Unit]) -> None:
    """Record the gate's verdict on every view of every unit not recorded yet (appends; resumable)."""
    import time

    import numpy as np

    from geoscout.cues.ocr import gate_open

    sig = _gate_signature()
    have = {rec["key"] for rec in _records(gate_file())}
    todo = [u for u in us if _file_key(u).partition("#")[0] + "#" + sig not in have]
    print(f"gate: {len(us) - len(todo)} of {len(us)} places recorded; running {len(todo)}", file=sys.stderr)
    t0 = time.perf_counter()
    with gate_file().open("a", encoding="utf-8") as fh:
        for i, u in enumerate(todo):
            opened = [gate_open(np.asarray(im.convert("RGB"))[:, :, ::-1]) for im in views(u)]
            key = _file_key(u).partition("#")[0] + "#" + sig
            fh.write(json.dumps({"key": key, "unit": u.key, "views": opened}) + "\n")
            fh.flush()
            if i % 100 == 0:
                el = time.perf_counter() - t0
                print(f"gate {i + 1}/{len(todo)} {u.key} {el:.0f}s", file=sys.stderr, flush=True)


def cached_lines(
    u: Unit, cache: dict[str, list[list[dict[str, Any]]]], *, filter_tesseract: bool = True
) -> list[Any] | None:
    """The unit's OCR lines (all views, each with its ``view``) from the cache, or None if not read yet."""
    from geoscout.cues import TextLine
    from geoscout.cues.ocr import TESSERACT_MIN_CONF, _is_word_in_script, is_overlay

    got = cache.get(_file_key(u))
    if got is None:
        return None
    return [
        _Line(TextLine(ln["text"], tuple(ln["box"]), ln["score"], ln["engine"]), v if len(got) > 1 else None)
        for v, lines in enumerate(got)
        for ln in lines
        # the overlay filter of today (lines cached before a filter rule was added are dropped as read_text would)
        if not is_overlay(ln["text"])
        # Tesseract re-readings cached before its acceptance rule: those it now refuses are dropped (the
        # bundled recogniser's Latin look-alike reading they replaced was not cached; it would weigh little)
        and (
            not filter_tesseract
            or ln["engine"] != "tesseract"
            or (ln["score"] >= TESSERACT_MIN_CONF and _is_word_in_script(ln["text"]))
        )
    ]


@dataclass
class _Line:
    line: Any
    view: int | None

    @property
    def text(self) -> str:
        return str(self.line.text)

    @property
    def box(self) -> Any:
        return self.line.box

    @property
    def score(self) -> float:
        return float(self.line.score)


def _line_record(ln: Any) -> dict[str, Any]:
    return {"text": ln.text, "box": [round(x, 1) for x in ln.box], "score": round(ln.score, 4), "engine": ln.engine}


def ocr_units(us: list[Unit]) -> None:
    """Read and cache every unit not in the cache yet (appends; resumable)."""
    import time

    from geoscout.cues import read_text

    cache = load_cache(gate=False)
    todo = [u for u in us if _file_key(u) not in cache]
    print(f"{len(us) - len(todo)} of {len(us)} places cached; reading {len(todo)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with cache_file().open("a", encoding="utf-8") as fh:
        for i, u in enumerate(todo):
            per_view = [[_line_record(ln) for ln in read_text(im)] for im in views(u)]
            fh.write(json.dumps({"key": _file_key(u), "unit": u.key, "views": per_view}, ensure_ascii=False) + "\n")
            fh.flush()
            if i % 25 == 0:
                el = time.perf_counter() - t0
                print(f"{i + 1}/{len(todo)} {u.key} {el:.0f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    ocr_units(units())
    gate_units(units())
