"""Choose the OCR gates' sizes, thresholds and overlay zones: the text they lose and what they cost, on the cue
cache's places.

A gate (``geoscout.cues.ocr.gate_open``) runs the text detector on a small copy of a view: photos larger
than ``GATE_SIDE`` (640 px) on a copy of that side, smaller views (640 px Street View views, 512 px strip
views) on a smaller copy (the small-view gate); where the text probability reaches the threshold nowhere
outside the overlay zones (the bottom corners, where providers and cameras put watermarks and date stamps),
reading stops; elsewhere the view is read as before (detection on the 1,024 px copy). Ground truth here is
what the ungated reading found (``_cue_cache.py``'s cached lines): a place LOSES TEXT when the evidence
(places, phones, domains, scripts...) of the lines of its views the gate lets through is not the evidence of
all its lines.

The measurement keeps every region of the gate's map at every size and threshold, so any zone rule is
evaluated offline. The small-view gate is chosen on a VALIDATION split (location fold 0 of ``cues.py``: ~1
degree cells) - the cheapest setting that loses no place's evidence there - and the same zones go to the
large-photo gate only if they lose nothing there either; both are reported on held-out fold 1 and every set.

    nice -n 5 python benchmarks/ocr_gate.py                        # the gates' maps once (cached), then the grid

Every place with text is measured, and 1 in 4 of the others (``--no-text-share``); shares of views and
times weight those by 4. Times are the detector's alone (the ungated detection, best of 3 per view shape;
the gate per view), so the estimates leave out the recognition that a stopped view also saves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cue_cache as cc
from _common import markdown_table, need_shared

#: gate sizes (--sizes): each is measured on every view larger than it
SIZES = (320, 384, 448, 512, 640)
THRESHOLDS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
MIN_AREAS = (1, 2, 4)
#: overlay zones tried (generic fractions of the frame: both bottom corners, width x height)
ZONES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "none": (),
    **{
        f"{w:g}x{h:g}": ((0.0, 1.0 - h, w, 1.0), (1.0 - w, 1.0 - h, 1.0, 1.0))
        for w, h in ((0.2, 0.1), (0.3, 0.1), (0.3, 0.15), (0.4, 0.15))
    },
}
#: the widest zones tried: the evidence of lines read entirely inside them (the Google logo read as "Gooq" or
#: "@Goog", photographers' credits such as "Daniel Blonski" or "360video" on user photospheres) is not scene
#: evidence; "scene evidence lost" compares only the rest, so every zone tried is judged on the same truth
CORNERS = ZONES["0.4x0.15"]
#: regions kept per view, size and threshold (largest first); a view with more opens every gate
MAX_REGIONS = 200


def _grid_file() -> Path:
    from geoscout._io import cache_dir

    return cache_dir("bench-cues") / f"gate-regions-{'-'.join(map(str, SIZES))}.jsonl"


def _key(size: int, t: float, a: int, zone: str = "none") -> str:
    return f"{size}/{t}/{a}/{zone}"


def _regions(prob: np.ndarray, thresh: float) -> list[list[float]] | None:
    """The map's regions at ``thresh``: ``[x0, y0, x1, y1, area px]`` (fractions of the map), largest first; None:
    more than MAX_REGIONS."""
    import cv2

    mask = (prob >= thresh).astype(np.uint8)
    if not mask.any():
        return []
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if len(stats) - 1 > MAX_REGIONS:
        return None
    h, w = prob.shape[:2]
    rows = sorted(stats[1:].tolist(), key=lambda r: -r[4])
    return [
        [round(x / w, 4), round(y / h, 4), round((x + bw) / w, 4), round((y + bh) / h, 4), a]
        for x, y, bw, bh, a in rows
    ]


def fired(view: dict, setting: str) -> bool | None:
    """The gate's verdict on a measured view under ``setting`` (size/threshold/min area/zone); None: not gated (the
    view is no larger than the gate's size)."""
    from geoscout.cues.ocr import in_zone

    size, th, a, zone = setting.split("/")
    regs = view["regions"].get(size, {}).get(th, "absent")
    if regs == "absent":
        return None
    if regs is None:
        return True
    zs = ZONES[zone]
    return any(r[4] >= int(a) and not any(in_zone(tuple(r[:4]), z) for z in zs) for r in regs)


def _cached_views(us: list[cc.Unit], f: Path, label: str, view_record) -> dict[str, list]:
    """``{unit file key: [view_record(bgr) per view]}``, read from the JSON-lines cache ``f`` and completed
    (appended, resumable) for the units not measured yet."""
    have: dict[str, list] = {rec["key"]: rec["views"] for rec in cc._records(f)}
    todo = [u for u in us if cc._file_key(u) not in have]
    print(f"{label}: {len(us) - len(todo)} places measured, {len(todo)} to go", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with f.open("a", encoding="utf-8") as fh:
        for i, u in enumerate(todo):
            vs = [view_record(np.asarray(im.convert("RGB"))[:, :, ::-1]) for im in cc.views(u)]
            have[cc._file_key(u)] = vs
            fh.write(json.dumps({"key": cc._file_key(u), "unit": u.key, "views": vs}) + "\n")
            fh.flush()
            if i % 50 == 0:
                print(f"{i + 1}/{len(todo)} {u.key} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return have


def measure(us: list[cc.Unit]) -> dict[str, dict]:
    """Per unit: per view, the gate's regions at every size and threshold, and the gate / full detection times."""
    from geoscout.cues import ocr

    engine = ocr._rapidocr()

    def view_record(bgr: np.ndarray) -> dict:
        h, w = bgr.shape[:2]
        rec: dict = {"shape": [h, w], "regions": {}, "gate_s": {}, "full_s": _full_time(engine, bgr)}
        for size in SIZES:
            if max(h, w) <= size:
                continue
            t = time.perf_counter()
            prob = ocr.gate_map(bgr, size)
            rec["gate_s"][str(size)] = time.perf_counter() - t
            rec["regions"][str(size)] = {str(th): _regions(prob, th) for th in THRESHOLDS}
        return rec

    views = _cached_views(us, _grid_file(), "gate grid", view_record)
    return {k: {"key": k, "views": v} for k, v in views.items()}


def measure_own(us: list[cc.Unit], grid: dict[str, dict]) -> None:
    """Per view of at most GATE_SIDE px: the regions of its own detection map (what the view gate sees) at every
    threshold, merged into ``grid`` as size ``own`` (cached in its own file)."""
    from geoscout.cues import ocr

    engine = ocr._rapidocr()

    def view_record(bgr: np.ndarray) -> dict | None:
        if max(bgr.shape[:2]) > ocr.GATE_SIDE:
            return None
        prob = ocr._detect_map(engine, bgr)[0][0, 0]
        return {str(th): _regions(prob, th) for th in THRESHOLDS}

    have = _cached_views(us, _grid_file().with_name("gate-regions-own.jsonl"), "own maps", view_record)
    for u in us:
        for rec, own in zip(grid[cc._file_key(u)]["views"], have[cc._file_key(u)]):
            if own is not None:
                rec["regions"]["own"] = own


_FULL: dict[tuple[int, int], float] = {}


def _full_time(engine, bgr) -> float:
    """Seconds of the ungated detection of a photo of this shape (best of 3, measured once per shape)."""
    shape = bgr.shape[:2]
    if shape not in _FULL:
        from geoscout.cues import ocr

        ts = []
        for _ in range(3):
            t = time.perf_counter()
            ocr._detect(engine, bgr)
            ts.append(time.perf_counter() - t)
        _FULL[shape] = min(ts)
    return _FULL[shape]


_EV: dict = {}


def _ev_set(lines, u) -> set:
    """Memoised :func:`_ev_set_of` (the grid asks for the same sets of lines many times)."""
    k = (u.key, tuple(id(ln) for ln in lines))
    if k not in _EV:
        _EV[k] = _ev_set_of(lines, u)
    return _EV[k]


def _ev_set_of(lines, u) -> set:
    """(kind, what, agrees with the truth) of the lines' evidence; a country table agrees when it is >= 0.5 at the
    true country, a town or region when it is within 250 km of the true place (as ``cues.py``'s precision table)."""
    from geoscout.cues import text_evidence
    from geoscout.geo import haversine_km

    out = set()
    for e in text_evidence(lines):
        if e.points:
            ok = min(float(haversine_km(la, lo, u.lat, u.lon)) for la, lo, _, _ in e.points) < 250
        else:
            ok = (e.countries or {}).get(_truth(u), 0.0) >= 0.5
        out.add((e.kind, e.tag if e.kind == "script" else e.text, ok))
    return out


def _truth(u) -> str:
    from geoscout.places import country_of

    return str(country_of(np.array([u.lat]), np.array([u.lon]))[0])


def _large_setting(zone: str = "none") -> str:
    """The shipped large-photo gate (GATE_SIDE / GATE_THRESH / GATE_MIN_AREA) with the overlay ``zone``."""
    from geoscout.cues import ocr

    return _key(ocr.GATE_SIDE, ocr.GATE_THRESH, ocr.GATE_MIN_AREA, zone)


def evaluate(us, lines, grid, small: str | None, large: str | None = None) -> list[dict]:
    """Per place: text lines, kept lines, evidence lost, views read, estimated cost (s) of the gated reading.

    Views larger than GATE_SIDE go through the ``large`` setting (default: the shipped large gate, no zones),
    smaller views through ``small`` (None: not gated, as before the small-view gate)."""
    from geoscout.cues import ocr

    large = large or _large_setting()
    out = []
    for u, ls in zip(us, lines):
        g = grid[cc._file_key(u)]["views"]
        kept = []
        read = 0
        cost = 0.0
        full = 0.0
        corner = set()
        for v, rec in enumerate(g):
            full += rec["full_s"]
            vl = [ln for ln in ls if (ln.view if ln.view is not None else 0) == v]
            corner |= {id(ln) for ln in vl if _in_corner(ln.box, rec["shape"])}
            setting = large if max(rec["shape"]) > ocr.GATE_SIDE else small
            opened = None if setting is None else fired(rec, setting)
            if opened is None:  # no gate (view no larger than the gate)
                kept += vl
                read += 1
                cost += rec["full_s"]
                continue
            size = setting.split("/")[0]
            # the view gate (size "own") runs on the detection's own map: it saves the recognition, not counted here
            cost += rec["full_s"] if size == "own" else rec["gate_s"][size] + (rec["full_s"] if opened else 0.0)
            read += opened
            kept += vl if opened else []
        out.append(
            {
                "set": u.set,
                "lines": len(ls),
                "kept": len(kept),
                "ev_all": _ev_set(ls, u),
                "ev_kept": _ev_set(kept, u) if len(kept) < len(ls) else None,
                "scene_all": _ev_set([ln for ln in ls if id(ln) not in corner], u),
                "scene_kept": _ev_set([ln for ln in kept if id(ln) not in corner], u),
                "views": len(g),
                "fired": read,
                "cost": cost,
                "full": full,
            }
        )
    for r in out:
        if r["ev_kept"] is None:
            r["ev_kept"] = r["ev_all"]
        r["lost"] = bool(r["ev_all"] - r["ev_kept"])
        r["scene_lost"] = bool(r["scene_all"] - r["scene_kept"])
        r["strong_lost"] = any(_strong(e) and e[2] for e in r["ev_all"] - r["ev_kept"])
        r["wrong_dropped"] = any(_strong(e) and not e[2] for e in r["ev_all"] - r["ev_kept"])
    return out


def _in_corner(box, shape) -> bool:
    """Whether a line's pixel box lies entirely inside the widest overlay zones tried (:data:`CORNERS`)."""
    from geoscout.cues.ocr import in_zone

    h, w = shape
    b = (box[0] / w, box[1] / h, box[2] / w, box[3] / h)
    return any(in_zone(b, z) for z in CORNERS)


def _strong(e) -> bool:
    """Evidence that names a country or place by itself: not Latin script, not a language guess."""
    return e[0] not in ("language", "script") or (e[0] == "script" and e[1] != "Latn")


def summary(rows, name, share: int = 1) -> dict:
    """Totals; times and the share of views gated weight each place without text by ``share`` (1 in ``share``
    of them was measured)."""
    n = len(rows)
    w = np.array([1 if r["lines"] else share for r in rows], dtype=float)
    ev = sum(bool(r["ev_all"]) for r in rows)
    return {
        "places": name,
        "n": n,
        "with evidence": ev,
        "evidence lost (places)": sum(r["lost"] for r in rows),
        "scene evidence lost (places)": sum(r["scene_lost"] for r in rows),
        "true strong evidence lost": sum(r["strong_lost"] for r in rows),
        "wrong strong evidence dropped": sum(r["wrong_dropped"] for r in rows),
        "lines kept": f"{sum(r['kept'] for r in rows)}/{sum(r['lines'] for r in rows)}",
        "views read in %": 100
        * float(w @ [r["fired"] for r in rows])
        / max(1.0, float(w @ [r["views"] for r in rows])),
        "est. reading s (median)": _wmedian([r["cost"] for r in rows], w),
        "est. reading / ungated (mean)": float(w @ [r["cost"] / r["full"] for r in rows]) / float(w.sum()),
        "ungated s (median)": _wmedian([r["full"] for r in rows], w),
    }


def _wmedian(x, w) -> float:
    order = np.argsort(x)
    c = np.cumsum(np.asarray(w)[order])
    return float(np.asarray(x)[order][np.searchsorted(c, c[-1] / 2)])


def _small_settings() -> list[str]:
    from geoscout.cues import ocr

    return [
        _key(size, th, a, z)
        for size in SIZES
        if size < ocr.GATE_SIDE
        for z in ZONES
        for th in THRESHOLDS
        for a in MIN_AREAS
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure-only", action="store_true")
    ap.add_argument("--sizes", default="320,384,448,512,640", help="gate sizes (px, comma-separated) of the grid")
    ap.add_argument(
        "--no-text-share", type=int, default=4, help="measure every place with text and 1 in N of the others"
    )
    args = ap.parse_args()
    need_shared()
    global SIZES
    SIZES = tuple(int(x) for x in args.sizes.split(","))
    from cues import _fold
    from geoscout.cues import ocr

    us = cc.units()
    cache = cc.load_cache(gate=False)
    lines = [cc.cached_lines(u, cache) for u in us]
    keep = [i for i, x in enumerate(lines) if x is not None]
    us, lines = [us[i] for i in keep], [lines[i] for i in keep]
    pick = [i for i, ls in enumerate(lines) if ls or i % args.no_text_share == 0]
    us, lines = [us[i] for i in pick], [lines[i] for i in pick]
    print(f"{len(us)} places: all {sum(bool(ls) for ls in lines)} with text, 1 in {args.no_text_share} of the others")
    grid = measure(us)
    measure_own(us, grid)
    if args.measure_only:
        return
    folds = np.array([_fold(u) for u in us])
    small = np.array([max(max(v["shape"]) for v in grid[cc._file_key(u)]["views"]) <= ocr.GATE_SIDE for u in us])
    share = args.no_text_share

    def rows_of(idx, small_setting, large_setting=None):
        return evaluate([us[i] for i in idx], [lines[i] for i in idx], grid, small_setting, large_setting)

    # 1. the small-view gate (views of at most GATE_SIDE px), chosen on the validation fold's small-view places
    val = np.flatnonzero((folds == 0) & small)
    print(
        "\nRULE (stated before fold 1 is looked at): the small-view gate is the setting (size / threshold / min area /"
        " overlay zones) with the lowest estimated reading time (mean per place, relative to no gate) that loses, on"
        " the validation fold, no place's scene evidence (the evidence of its lines outside the widest corner zones"
        f" tried, {CORNERS}) and no true strong cue anywhere (a place, phone, domain, price or non-Latin script"
        " agreeing with the truth, corners included); none cheaper than no gate: no small-view gate. The large-photo"
        " gate takes the chosen zones only if, on its validation places, they lose no scene evidence or true strong"
        " cue that the shipped large gate keeps."
    )
    base = summary(rows_of(val, None), "no gate", share)
    grid_rows = [{"setting": s, **summary(rows_of(val, s), "validation", share)} for s in _small_settings()]
    print(f"\n## validation fold (0), {len(val)} places of views <= {ocr.GATE_SIDE} px: per size and zones, the")
    print("## cheapest setting losing no place's evidence, else the one losing fewest (all settings are evaluated)\n")

    def rank(r: dict) -> tuple[int, float]:
        return (r["scene evidence lost (places)"] + r["true strong evidence lost"], r["est. reading / ungated (mean)"])

    best_per: dict[str, dict] = {}
    for r in grid_rows:
        size, _, _, zone = r["setting"].split("/")
        k = f"{size}/{zone}"
        if k not in best_per or rank(r) < rank(best_per[k]):
            best_per[k] = r
    print(markdown_table([{"setting": "no gate", **base}, *best_per.values()]))
    ok = [
        r
        for r in grid_rows
        if r["scene evidence lost (places)"] == 0
        and r["true strong evidence lost"] == 0
        and r["est. reading / ungated (mean)"] < base["est. reading / ungated (mean)"]
    ]
    chosen = min(ok, key=lambda r: r["est. reading / ungated (mean)"])["setting"] if ok else None
    print(f"\nchosen on validation: small-copy gate {chosen or 'none'} ({len(ok)} settings lose nothing there)")

    # 1b. the view gate: the view's own detection map (no extra detection; a stopped view skips recognition)
    own_rows = [
        {"setting": k, **summary(rows_of(val, k), "validation", share)}
        for z in ZONES
        if z != "none"
        for th in THRESHOLDS
        for a in MIN_AREAS
        for k in [_key("own", th, a, z)]  # type: ignore[arg-type]
    ]
    print(
        "\nRULE for the view gate (own detection map, zones): of the settings losing no scene evidence and no true"
        " strong cue on the validation fold, the one that stops the most views (ties: the smaller zones, then the lower"
        " threshold, the more sensitive gate)."
    )
    print(f"\n## validation fold (0): the view gate on each view's own detection map, views <= {ocr.GATE_SIDE} px\n")
    print(markdown_table([r for r in own_rows if r["setting"].split("/")[2] == "1"]))
    ok_own = [r for r in own_rows if r["scene evidence lost (places)"] == 0 and r["true strong evidence lost"] == 0]

    def zone_area(r: dict) -> float:
        w, h = r["setting"].split("/")[3].split("x")
        return float(w) * float(h)

    def rank(r: dict) -> tuple:
        return (r["views read in %"], zone_area(r), float(r["setting"].split("/")[1]))

    view = min(ok_own, key=rank)["setting"] if ok_own else None
    print(f"\nchosen on validation: view gate {view or 'none'} ({len(ok_own)} settings lose nothing there)")
    chosen = chosen or view

    # 2. the same zones on the large-photo gate
    zone = chosen.split("/")[3] if chosen else "none"
    large = _large_setting()
    if zone != "none":
        val_l = np.flatnonzero((folds == 0) & ~small)
        before, after = rows_of(val_l, chosen, large), rows_of(val_l, chosen, _large_setting(zone))
        extra = sum(
            (a["scene_lost"] and not b["scene_lost"]) or (a["strong_lost"] and not b["strong_lost"])
            for b, a in zip(before, after)
        )
        t_b = summary(before, "", share)["est. reading / ungated (mean)"]
        t_a = summary(after, "", share)["est. reading / ungated (mean)"]
        print(
            f"large-photo gate with zones {zone}, validation fold ({len(val_l)} places of photos > {ocr.GATE_SIDE} px):"
            f" {extra} places lose scene evidence or a true strong cue they kept; est. reading / ungated {t_b:.3f} -> {t_a:.3f}"
        )
        if extra == 0:
            large = _large_setting(zone)
    print(f"large-photo gate: {large}")

    # 3. the chosen gates on held-out fold 1 and every set
    table = []
    for name, idx in [
        ("held-out fold 1", np.flatnonzero(folds == 1)),
        ("validation fold 0", np.flatnonzero(folds == 0)),
    ]:
        table.append(summary(rows_of(idx, None), f"{name}, before", share))
        table.append(summary(rows_of(idx, chosen, large), f"{name}, chosen", share))
    allev = rows_of(range(len(us)), chosen, large)
    before = rows_of(range(len(us)), None)
    for s in dict.fromkeys(u.set for u in us):
        m = [i for i, u in enumerate(us) if u.set == s]
        table.append(summary([before[i] for i in m], f"{s}, before", share))
        table.append(summary([allev[i] for i in m], f"{s}, chosen", share))
    table.append(summary(before, "all sets, before", share))
    table.append(summary(allev, "all sets, chosen", share))
    print(f"\n## the chosen gates (views <= {ocr.GATE_SIDE} px: {chosen}; larger: {large}) vs before, every set\n")
    print(markdown_table(table))
    lost = [
        (u.key, sorted(r["ev_all"] - r["ev_kept"])) for u, r, b in zip(us, allev, before) if r["lost"] and not b["lost"]
    ]
    print(f"\nplaces whose evidence the new gates lose (the large gate already lost it on the others) ({len(lost)}):")
    for k, e in lost:
        print(f"  {k}: {e}")


if __name__ == "__main__":
    main()
