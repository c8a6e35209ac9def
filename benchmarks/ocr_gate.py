"""Choose the OCR gate's size and threshold: the text it loses and what it costs, on the cue cache's places.

The gate (``geoscout.cues.ocr.gate_open``) runs the text detector on a small copy of each view larger
than its side; where the text probability reaches its threshold nowhere, reading stops; elsewhere the
view is read as before (detection on the 1,024 px copy). Ground truth here is what the ungated reading
found (``_cue_cache.py``'s cached lines): a place LOSES TEXT when the evidence (places, phones, domains,
scripts...) of the lines of its views the gate lets through is not the evidence of all its lines. (Detecting
only inside the gate's regions was measured too and lost more: the small copy misses small text.)

The grid is chosen on a VALIDATION split (location fold 0 of ``cues.py``: ~1 degree cells) - the cheapest
setting that loses no place's evidence there - and reported on fold 1 and on every set.

    nice -n 5 python benchmarks/ocr_gate.py                   # the gate's maps once (cached), then the grid
    nice -n 5 python benchmarks/ocr_gate.py --sizes 384,448,512   # smaller gates (they lose text)

Every place with text is measured, and 1 in 4 of the others (``--no-text-share``); shares of views and
times weight those by 4.
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

SIZES = (640, 768)  # --sizes
THRESHOLDS = (0.002, 0.005, 0.01, 0.02, 0.05)
MIN_AREAS = (1, 2, 4)


def _grid_file() -> Path:
    from geoscout._io import cache_dir

    return cache_dir("bench-cues") / f"gate-grid-{'-'.join(map(str, SIZES))}.jsonl"


def _key(size: int, t: float, a: int) -> str:
    return f"{size}/{t}/{a}"


def measure(us: list[cc.Unit]) -> dict[str, dict]:
    """Per unit: per view, the gate's regions for every grid setting, and the gate / full detection times."""
    from geoscout.cues import ocr

    engine = ocr._rapidocr()
    have: dict[str, dict] = {}
    f = _grid_file()
    if f.is_file():
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            for v in rec["views"]:  # records of the first grid run kept the regions; open = any region
                if "regions" in v:
                    v["fired"] = {k: bool(r) for k, r in v.pop("regions").items()}
            have[rec["key"]] = rec
    todo = [u for u in us if cc._file_key(u) not in have]
    print(f"gate grid: {len(us) - len(todo)} places measured, {len(todo)} to go", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with f.open("a", encoding="utf-8") as fh:
        for i, u in enumerate(todo):
            vs = []
            for im in cc.views(u):
                bgr = np.asarray(im.convert("RGB"))[:, :, ::-1]
                h, w = bgr.shape[:2]
                rec: dict = {"shape": [h, w], "fired": {}, "gate_s": {}}
                rec["full_s"] = _full_time(engine, bgr)
                for size in SIZES:
                    if max(h, w) <= size:
                        continue
                    with _gate_side(size):
                        t = time.perf_counter()
                        prob = ocr.gate_map(bgr)
                        rec["gate_s"][str(size)] = time.perf_counter() - t
                    for th in THRESHOLDS:
                        for a in MIN_AREAS:
                            rec["fired"][_key(size, th, a)] = ocr.gate_passes(prob, thresh=th, min_area=a)
                vs.append(rec)
            out = {"key": cc._file_key(u), "unit": u.key, "views": vs}
            have[out["key"]] = out
            fh.write(json.dumps(out) + "\n")
            fh.flush()
            if i % 50 == 0:
                print(f"{i + 1}/{len(todo)} {u.key} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return have


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


class _gate_side:
    def __init__(self, size: int) -> None:
        self.size = size

    def __enter__(self) -> None:
        from geoscout.cues import ocr

        self.old = ocr.GATE_SIDE
        ocr.GATE_SIDE = self.size

    def __exit__(self, *exc: object) -> None:
        from geoscout.cues import ocr

        ocr.GATE_SIDE = self.old


def _ev_set(lines, u) -> set:
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


def evaluate(us, lines, grid, setting: str | None) -> list[dict]:
    """Per place: text lines, kept lines, evidence lost, views fired, estimated cost (s) of the gated reading."""
    out = []
    for u, ls in zip(us, lines):
        g = grid[cc._file_key(u)]["views"]
        kept = []
        fired = 0
        cost = 0.0
        full = 0.0
        for v, rec in enumerate(g):
            full += rec["full_s"]
            vl = [ln for ln in ls if (ln.view if ln.view is not None else 0) == v]
            if setting is None or setting not in rec["fired"]:  # no gate (view no larger than the gate)
                kept += vl
                fired += 1
                cost += rec["full_s"]
                continue
            opened = rec["fired"][setting]
            cost += rec["gate_s"][setting.split("/")[0]] + (rec["full_s"] if opened else 0.0)
            fired += opened
            kept += vl if opened else []
        out.append(
            {
                "set": u.set,
                "lines": len(ls),
                "kept": len(kept),
                "ev_all": _ev_set(ls, u),
                "ev_kept": _ev_set(kept, u) if len(kept) < len(ls) else None,
                "views": len(g),
                "fired": fired,
                "cost": cost,
                "full": full,
            }
        )
    for r in out:
        if r["ev_kept"] is None:
            r["ev_kept"] = r["ev_all"]
        r["lost"] = bool(r["ev_all"] - r["ev_kept"])
        r["strong_lost"] = any(_strong(e) and e[2] for e in r["ev_all"] - r["ev_kept"])
        r["wrong_dropped"] = any(_strong(e) and not e[2] for e in r["ev_all"] - r["ev_kept"])
    return out


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure-only", action="store_true")
    ap.add_argument("--sizes", default="640,768", help="gate sizes (px, comma-separated) of the grid")
    ap.add_argument(
        "--no-text-share", type=int, default=4, help="measure every place with text and 1 in N of the others"
    )
    args = ap.parse_args()
    need_shared()
    global SIZES
    SIZES = tuple(int(x) for x in args.sizes.split(","))
    from cues import _fold

    us = cc.units()
    cache = cc.load_cache(gate=False)
    lines = [cc.cached_lines(u, cache) for u in us]
    keep = [i for i, x in enumerate(lines) if x is not None]
    us, lines = [us[i] for i in keep], [lines[i] for i in keep]
    pick = [i for i, ls in enumerate(lines) if ls or i % args.no_text_share == 0]
    us, lines = [us[i] for i in pick], [lines[i] for i in pick]
    print(f"{len(us)} places: all {sum(bool(ls) for ls in lines)} with text, 1 in {args.no_text_share} of the others")
    grid = measure(us)
    if args.measure_only:
        return
    folds = np.array([_fold(u) for u in us])
    val = np.flatnonzero(folds == 0)
    rows = []
    for size in SIZES:
        for th in THRESHOLDS:
            for a in MIN_AREAS:
                k = _key(size, th, a)
                ev = evaluate([us[i] for i in val], [lines[i] for i in val], grid, k)
                rows.append({"setting": k, **summary(ev, "validation", args.no_text_share)})
    print("## validation fold (0): every grid setting (size px / threshold / min area px)\n")
    print(markdown_table(rows))
    # the cheapest setting (estimated reading time / ungated, mean per place) that loses no strong evidence
    # agreeing with the truth (a place, phone, domain, price or non-Latin script) on the validation fold and
    # at most 20 % of its places with evidence; else the one losing fewest
    ok = [
        r
        for r in rows
        if r["true strong evidence lost"] == 0 and r["evidence lost (places)"] <= 0.2 * r["with evidence"]
    ]
    if ok:
        best = min(ok, key=lambda r: r["est. reading / ungated (mean)"])
    else:
        best = min(rows, key=lambda r: (r["true strong evidence lost"], r["evidence lost (places)"]))
    print(f"\nchosen on validation: {best['setting']} ({'cheapest within the loss limits' if ok else 'fewest lost'})")
    test = np.flatnonzero(folds == 1)
    table = []
    for name, idx in [("held-out fold 1", test), ("validation fold 0", val)]:
        ev = evaluate([us[i] for i in idx], [lines[i] for i in idx], grid, best["setting"])
        table.append(summary(ev, name, args.no_text_share))
    allev = evaluate(us, lines, grid, best["setting"])
    table += [
        summary([r for r, u in zip(allev, us) if u.set == s], s, args.no_text_share)
        for s in dict.fromkeys(u.set for u in us)
    ]
    table.append(summary(allev, "all sets", args.no_text_share))
    print(f"\n## the chosen gate {best['setting']} on every set\n")
    print(markdown_table(table))
    lost = [(u.key, sorted(r["ev_all"] - r["ev_kept"])) for u, r in zip(us, allev) if r["lost"]]
    print(f"\nplaces whose evidence the gate loses ({len(lost)}):")
    for k, e in lost:
        print(f"  {k}: {e}")


if __name__ == "__main__":
    main()
