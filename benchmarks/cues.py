"""Cues (text, script, place names, phone numbers...) vs the visual model alone, on every ../shared set.

Evaluation units (``_cue_cache.units``): every photo of im2gps, osv5m-sample, streetview-world,
every strip of streetview-strips, every streetview-croatia location (its 4 heading files) and a
location-spread sample of 300 streetview-panoramas; strips and panoramas are split into their
views (text of all views pooled, embeddings averaged). EXIF is ignored: the scores are about
what the photo shows.

The OCR of every view is read ONCE and cached outside the repository (``_cue_cache.py``; run
it first, niced: it is the slow part). Evidence is recomputed from the cached lines on every run,
visual embeddings are cached per backbone fingerprint, so fitting and reporting rerun in seconds.

The cue kinds' error rates (``CueFuser``) are CROSS-FITTED: units are split into two folds by a
~1 degree location cell (nearby photos share a fold); the rates fitted on fold A answer fold B and
vice versa, and the pooled answers are reported, so no photo is reported by rates fitted on it.
im2gps is never fitted on (the one set the visual model never saw in training stays an untouched
test): its places are only answered. ``--write-weights`` stores rates fitted on all units except
im2gps as the package's shipped rates (``src/geoscout/cues/error_rates.json``).

    nice -n 5 python benchmarks/_cue_cache.py           # once: OCR of every view (~40 min, resumable)
    python benchmarks/cues.py --timed-per-set 3         # fit + report (+ a small timed sample)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cue_cache as cc
from _common import markdown_table, need_shared

SHIP_EXCLUDE = ("im2gps",)


def _fold(u: cc.Unit) -> int:
    """Location-grouped fold: the ~1 degree cell of the place (nearby photos and views share it)."""
    cell = f"{int(np.floor(u.lat))}:{int(np.floor(u.lon))}"
    return int(hashlib.sha256(cell.encode()).hexdigest(), 16) % 2


def _model_fingerprint(name: str) -> str:
    """The bundle's backbone fingerprint (weights hash + preprocessing): embeddings depend on nothing else."""
    import geoscout

    cfg = json.loads((Path(geoscout.__file__).parent / "models" / name / "config.json").read_text())
    fp = json.dumps(cfg["backbone"]["fingerprint"], sort_keys=True)
    return hashlib.sha256(fp.encode()).hexdigest()[:16]


def _embeddings(loc, us: list[cc.Unit], model: str) -> np.ndarray:
    """Mean normalised view embedding per unit; cached per model fingerprint."""
    from geoscout._io import atomic_path, cache_dir

    f = cache_dir("bench-cues") / f"emb-{model}-{_model_fingerprint(model)}.npz"
    have: dict[str, np.ndarray] = {}
    if f.is_file():
        with np.load(f) as z:
            have = dict(zip(z["keys"].tolist(), z["X"]))
    todo = [u for u in us if u.key not in have]
    for s in range(0, len(todo), 32):
        chunk = todo[s : s + 32]
        ims = [cc.views(u) for u in chunk]
        X, failures = loc.embed([im for v in ims for im in v])
        if failures:
            raise SystemExit(f"embedding failed: {failures}")
        k = 0
        for u, v in zip(chunk, ims):
            m = X[k : k + len(v)].mean(axis=0)
            have[u.key] = (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
            k += len(v)
        print(f"embedded {min(s + 32, len(todo))}/{len(todo)}", file=sys.stderr, flush=True)
    if todo:
        with atomic_path(f) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(list(have)), X=np.stack(list(have.values())))
    return np.stack([have[u.key] for u in us])


def _answer_km(rows, idx, preds) -> np.ndarray:
    """km from each place's truth to its answered point (the model's guess rule, as locate and evaluate answer),
    not the top candidate."""
    from geoscout.geo import haversine_km

    return np.array(
        [float(haversine_km(rows[i].lat, rows[i].lon, preds[i].answer.lat, preds[i].answer.lon)) for i in idx]
    )


def _metrics(rows, idx, preds, truth_c) -> dict:
    from geoscout.geo import geoguessr_score

    d = _answer_km(rows, idx, preds)
    out = {"country %": 100 * float(np.mean([preds[i].answer.country == truth_c[i] for i in idx]))}
    for t in (25, 200, 750, 2500):
        out[f"<{t} km %"] = 100 * float(np.mean(d < t))
    out["GeoGuessr"] = float(np.mean(geoguessr_score(d)))
    return out


def _timed(loc, us: list[cc.Unit], per_set: int) -> list[dict]:
    """Visual answer alone vs the cue reading (OCR from scratch + evidence), one photo at a time."""
    from geoscout.cues import CueReader, text_evidence
    from geoscout.cues.ocr import read_text

    reader = CueReader("text")
    first = us[0]
    loc.embed(cc.views(first))  # warm both models before timing
    reader.read_one(cc.views(first)[0])
    out = []
    for name in dict.fromkeys(u.set for u in us):
        for u in [u for u in us if u.set == name][:per_set]:
            t0 = time.perf_counter()
            v = cc.views(u)
            loc.embed(v)
            tv = time.perf_counter() - t0
            t0 = time.perf_counter()
            lines = [ln for im in v for ln in read_text(im)]
            text_evidence(lines)
            tc = time.perf_counter() - t0
            out.append({"set": name, "visual": tv, "cues": tc})
    return out


def _real_path(loc, us: list[cc.Unit], per_set: int) -> list[dict]:
    """What a user waits for: ``Locator.locate`` on the same place with cues off and on (the default ``all``,
    read in a thread beside the backbone), both warmed, interleaved (the order alternates place by place)."""
    from geoscout.cues import CueReader

    readers = {"off": None, "on": CueReader("all")}
    out = []
    for k, name in enumerate(dict.fromkeys(u.set for u in us)):
        for j, u in enumerate([u for u in us if u.set == name][:per_set]):
            src = cc.views(u) if u.split else [str(p) for p in u.paths]
            pano = len(src) > 1
            if not out:  # warm both paths (models, OCR engine and its recogniser) before timing
                for mode in ("off", "on"):
                    loc.cues = readers[mode]
                    loc.locate(src, top_k=1, panorama=pano)
            t = {}
            for mode in ("off", "on") if (k + j) % 2 == 0 else ("on", "off"):
                loc.cues = readers[mode]
                t0 = time.perf_counter()
                loc.locate(src, top_k=1, panorama=pano)
                t[mode] = time.perf_counter() - t0
            out.append({"set": name, "off": t["off"], "on": t["on"]})
    loc.cues = None
    return out


def _ablation(us, lines, keep, cache, crossfit, visual, cued, truth_c, text) -> None:
    """Cross-fitted pooled accuracy with all rules vs without each rule added in this round."""
    from unittest import mock

    import geoscout.cues as gc
    from geoscout.cues import fusion
    from geoscout.cues import text as ctext
    from geoscout.cues.text import dominant_script

    def ev_with(module, **patches):
        with mock.patch.multiple(module, **patches):
            return [gc.text_evidence(lines[i]) for i in keep]

    base = [gc.text_evidence(lines[i]) for i in keep]
    raw_lines = [cc.cached_lines(u, cache, filter_tesseract=False) for u in us]
    variants = {
        "without local-script town names": [
            [e for e in ev if e.kind != "place" or dominant_script(e.text) == "Latn"] for ev in base
        ],
        "Tesseract re-readings unfiltered": [gc.text_evidence(x) for x in raw_lines],
        "script cue from 2 letters": ev_with(ctext, MIN_SCRIPT_LETTERS=2),
        "no map/list rule": ev_with(gc, drop_map_like=lambda e: e),
    }
    t = text.copy()
    for ev in variants.values():
        t |= np.array([bool(e) for e in ev])
    rows = [_pooled("visual only", us, visual, visual, truth_c, t)]
    rows.append(_pooled("all rules (shipped)", us, visual, cued, truth_c, t))
    for name, ev in variants.items():
        rows.append(_pooled(name, us, visual, crossfit(ev), truth_c, t))
    rows.append(_pooled("weak prior (2 pseudo-photos)", us, visual, crossfit(base, prior_strength=2.0), truth_c, t))
    rows.extend(
        _pooled(f"objective: {obj}", us, visual, crossfit(base, objective=obj), truth_c, t)
        for obj in ("log_prob_country", "log_prob_near", "accuracy")
    )
    with mock.patch.object(fusion, "rate_kind", lambda e: e.kind):
        rows.append(_pooled("Latin script not weighted apart", us, visual, crossfit(base), truth_c, t))
    print("\n## ablation (cross-fitted, all sets pooled; 'with text' = places with text under either rule set)\n")
    print(markdown_table(rows))
    prec = [_precision("all rules (shipped)", us, base, truth_c)]
    prec += [_precision(name, us, ev, truth_c) for name, ev in variants.items()]
    print("\n## evidence precision: cues that agree with the truth / cues (country table >= 0.5 at the true country;")
    print("a town or region within 250 km of the true place)\n")
    cols = list(dict.fromkeys(k for r in prec for k in r))
    print(markdown_table(prec, cols))


def _print_goals(us, names, visual, cued, truth_c, text) -> None:
    """Issue #17's goals per set: never worse than visual alone (country %, GeoGuessr), and on the photos with
    text country accuracy at least doubled (where the visual model is right on more than half, doubling is
    impossible: the relative reduction of the country error is given instead)."""
    rows = []
    for name in [*names, "all sets"]:
        idx = [i for i, u in enumerate(us) if name == "all sets" or u.set == name]
        wt = [i for i in idx if text[i]]
        v, c = _metrics(us, idx, visual, truth_c), _metrics(us, idx, cued, truth_c)
        worse = c["country %"] < v["country %"] - 1e-9 or c["GeoGuessr"] < v["GeoGuessr"] - 0.05
        row = {
            "set": name,
            "country % visual -> cues": f"{v['country %']:.1f} -> {c['country %']:.1f}",
            "GeoGuessr visual -> cues": f"{v['GeoGuessr']:,.1f} -> {c['GeoGuessr']:,.1f}",
            "never worse": "no" if worse else "yes",
            "GeoGuessr change, 95 % interval": _paired_interval(us, idx, visual, cued),
        }
        if wt:
            vt, ct = _metrics(us, wt, visual, truth_c)["country %"], _metrics(us, wt, cued, truth_c)["country %"]
            right = (round(vt * len(wt) / 100), round(ct * len(wt) / 100))
            row["with text: country right"] = f"{right[0]} -> {right[1]} of {len(wt)}"
            if vt > 50:
                row["with text: doubled?"] = f"impossible (visual {vt:.0f} %); error {100 - vt:.1f} -> {100 - ct:.1f} %"
            else:
                row["with text: doubled?"] = "yes" if ct >= 2 * vt and ct > vt else "no"
        rows.append(row)
    print("\n## goals (issue #17 item 7), cross-fitted\n")
    print(markdown_table(rows))


def _paired_interval(us, idx, visual, cued, n_boot: int = 2000) -> str:
    """The mean per-place GeoGuessr change (cues - visual) with a paired bootstrap 95 % interval (seeded):
    how far a set's change is from noise when only a few places move."""
    from geoscout.geo import geoguessr_score

    diff = np.asarray(geoguessr_score(_answer_km(us, idx, cued)), float) - np.asarray(
        geoguessr_score(_answer_km(us, idx, visual)), float
    )
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, (2.5, 97.5))
    return f"{diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}] ({int((diff != 0).sum())} moved)"


def _print_changes(us, lines, keep, evidence, support, visual, cued, truth_c) -> None:
    """Every place whose answer the cues moved: text read, each cue with its likelihood at the visual
    answer's country and at the true country, the visual and fused answers, the GeoGuessr change."""
    from geoscout.cues.fusion import _countries_cached
    from geoscout.geo import geoguessr_score, haversine_km

    def score(u, p) -> float:
        return float(geoguessr_score(haversine_km(u.lat, u.lon, p.answer.lat, p.answer.lon)))

    print("\n## places whose answer the cues moved (cross-fitted)\n")
    for i, u in enumerate(us):
        v, c = visual[i], cued[i]
        sv, sc = score(u, v), score(u, c)
        if abs(sv - sc) < 0.5 and v.answer.country == c.answer.country:
            continue
        tag = "WORSE" if sc < sv - 0.5 else "better" if sc > sv + 0.5 else "same"
        la, lo, pv = support[i]
        cs = _countries_cached(np.asarray(la, float), np.asarray(lo, float))
        mass = {k: round(float(pv[cs == k].sum()), 3) for k in dict.fromkeys([truth_c[i], v.answer.country])}
        print(
            f"- [{tag}] {u.key} truth {truth_c[i]} ({u.lat:.2f}, {u.lon:.2f}); visual {v.answer.country} "
            f"{sv:.0f} pts (visual country mass {mass}) -> cues {c.answer.country} {sc:.0f} pts"
        )
        print(f"  text: {' | '.join(ln.text for ln in lines[keep[i]])[:200]!r}")
        for e, cue in zip(evidence[i], c.cues):
            at = {cc: round((e.countries or {}).get(cc, float('nan')), 3) for cc in {v.answer.country, truth_c[i]}}
            print(f"  cue {e.kind} {e.tag or ''} {e.evidence!r} text {e.text[:40]!r} L@{at} effect {cue.effect}")


def _precision(name, us, evidence, truth_c) -> dict:
    from geoscout.geo import haversine_km

    seen: dict[str, list[int]] = {}
    for u, ev, t in zip(us, evidence, truth_c):
        for e in ev:
            k = f"{e.kind} {e.tag}" if e.kind == "script" else e.kind
            if e.points:
                ok = min(float(haversine_km(la, lo, u.lat, u.lon)) for la, lo, _, _ in e.points) < 250
            else:
                ok = (e.countries or {}).get(t, 0.0) >= 0.5
            seen.setdefault(k, [0, 0])
            seen[k][0] += int(ok)
            seen[k][1] += 1
    return {"evidence rules": name, **{k: f"{a}/{n}" for k, (a, n) in sorted(seen.items())}}


def _pooled(name, us, visual, preds, truth_c, text) -> dict:
    """Pooled country % and GeoGuessr (all places; with text), and the sets where cues lose to visual."""
    allp = list(range(len(us)))
    wt = [i for i in allp if text[i]]
    a, t = _metrics(us, allp, preds, truth_c), _metrics(us, wt, preds, truth_c)
    worse = []
    for s in dict.fromkeys(u.set for u in us):
        idx = [i for i in allp if us[i].set == s]
        v, c = _metrics(us, idx, visual, truth_c), _metrics(us, idx, preds, truth_c)
        if c["country %"] < v["country %"] or c["GeoGuessr"] < v["GeoGuessr"] - 0.05:
            worse.append(s)
    return {
        "evidence rules": name,
        "country % (all)": a["country %"],
        "GeoGuessr (all)": a["GeoGuessr"],
        f"country % (text, {len(wt)})": t["country %"],
        "GeoGuessr (text)": t["GeoGuessr"],
        "sets worse than visual": ", ".join(worse) or "none",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="geoscout-lite")
    ap.add_argument("--timed-per-set", type=int, default=3, help="photos per set timed one by one (0: none)")
    ap.add_argument("--speed-only", action="store_true", help="only the two time tables (no fitting)")
    ap.add_argument("--write-weights", action="store_true", help="store the shipped error rates in the package")
    ap.add_argument("--prior-strength", type=float, default=None, help="CueFuser prior_strength (pseudo-photos)")
    ap.add_argument("--objective", default="log_prob", help="CueFuser objective (see CueFuser.fit)")
    ap.add_argument("--changes", action="store_true", help="print every place whose answer the cues moved")
    ap.add_argument("--ablation", action="store_true", help="also cross-fit without each evidence rule, pooled")
    ap.add_argument(
        "--ignore-reading-scores",
        action="store_true",
        help="trust every reading fully (reading_score 1): the fusion before unsure readings counted less",
    )
    args = ap.parse_args()
    need_shared()

    from geoscout.cues import CueFuser, text_evidence
    from geoscout.cues.fusion import RATES_FILE
    from geoscout.locator import load_model
    from geoscout.places import country_of

    loc = load_model(args.model)
    us = cc.units()
    cache = cc.load_cache()
    lines = [cc.cached_lines(u, cache) for u in us]
    missing = sum(x is None for x in lines)
    keep = [i for i, x in enumerate(lines) if x is not None]
    us = [us[i] for i in keep]
    evidence = [text_evidence(lines[i]) for i in keep]
    if args.ignore_reading_scores:
        evidence = [[dataclasses.replace(e, reading_score=1.0) for e in ev] for ev in evidence]
    print(f"{len(us)} places with cached OCR ({missing} not read yet: run _cue_cache.py)", file=sys.stderr)
    if args.speed_only:
        names = list(dict.fromkeys(u.set for u in us))
        _print_speed(loc, us, np.array([bool(e) for e in evidence]), names, args.timed_per_set or 3)
        return
    X = _embeddings(loc, us, args.model)
    dist = loc.head.predict_distribution(X)
    from geoscout.calibration import temper

    z = loc.novelty(X)  # the same tempered distribution locate_embeddings fuses the cues with
    support = []
    for i in range(len(us)):
        lat, lon = dist.points(i)
        t_i = loc.calibration.temperature_at(None if z is None else float(z[i]))
        support.append((lat, lon, temper(dist.prob[i], t_i)))
    folds = np.array([_fold(u) for u in us])
    kw: dict = {"objective": args.objective}
    if args.prior_strength is not None:
        kw["prior_strength"] = args.prior_strength
    ids = [u.key for u in us]

    fittable = np.array([u.set not in SHIP_EXCLUDE for u in us])

    def fit(mask, ev, **extra) -> CueFuser:
        items = [(*support[i], ev[i], us[i].lat, us[i].lon) for i in np.flatnonzero(mask)]
        return CueFuser(**{**kw, **extra}).fit(items)

    def crossfit(ev, verbose=False, **extra) -> list:
        """Each fold answered by error rates fitted on the other (never on im2gps)."""
        out: list = [None] * len(us)
        for f in (0, 1):
            fuser = fit((folds != f) & fittable, ev, **extra)
            if verbose:
                print(
                    f"fold {f} answered by error rates fitted on fold {1 - f} (without im2gps): "
                    f"{fuser.error_rates_} counts {fuser.counts_}"
                )
                held = [(*support[i], ev[i], us[i].lat, us[i].lon) for i in np.flatnonzero((folds == f) & fittable)]
                none = CueFuser(dict.fromkeys(fuser.error_rates_, 1.0), objective=fuser.objective)
                print(
                    f"  validation (fold {f}, without im2gps): objective per photo with cues, "
                    f"visual {none.score(held):.4f} -> cues {fuser.score(held):.4f}"
                )
            loc.cue_fuser = fuser
            idx = np.flatnonzero(folds == f)
            preds = loc.locate_embeddings(X[idx], [ids[i] for i in idx], top_k=1, evidence=[ev[i] for i in idx])
            for i, p in zip(idx, preds):
                out[i] = p
        return out

    visual = loc.locate_embeddings(X, ids, top_k=1)
    cued = crossfit(evidence, verbose=True)
    truth_c = country_of(np.array([u.lat for u in us]), np.array([u.lon for u in us]))
    text = np.array([bool(e) for e in evidence])
    table = []
    names = list(dict.fromkeys(u.set for u in us))
    for name in [*names, "all sets"]:
        for subset in ("all photos", "with text"):
            idx = [i for i, u in enumerate(us) if name == "all sets" or u.set == name]
            if subset == "with text":
                idx = [i for i in idx if text[i]]
            if not idx:
                continue
            for label, preds in (("visual", visual), ("visual + cues", cued)):
                table.append(
                    {
                        "set": name,
                        "photos": f"{subset} ({len(idx)})",
                        "answer": label,
                        **_metrics(us, idx, preds, truth_c),
                    }
                )
    print(
        "\n## accuracy (cross-fitted: every place answered by error rates fitted on the other location fold, "
        "never on im2gps)\n"
    )
    print(markdown_table(table))
    kinds: dict[str, int] = {}
    for ev in evidence:
        for k in {e.kind for e in ev}:
            kinds[k] = kinds.get(k, 0) + 1
    print(
        f"\nplaces with text: {int(text.sum())} of {len(us)}; places with each cue kind: {json.dumps(kinds, sort_keys=True)}"
    )

    _print_goals(us, names, visual, cued, truth_c, text)

    if args.changes:
        _print_changes(us, lines, keep, evidence, support, visual, cued, truth_c)

    if args.ablation:
        _ablation(us, lines, keep, cache, crossfit, visual, cued, truth_c, text)

    # ---- the shipped weights
    ship = fit(fittable, evidence)
    print(
        f"\nerror rates fitted on all places except {', '.join(SHIP_EXCLUDE)}: {ship.error_rates_} counts {ship.counts_}"
    )
    if args.write_weights:
        ship.save(
            RATES_FILE,
            provenance={
                "fitted_on": "all cached places of the ../shared sets except "
                + ", ".join(SHIP_EXCLUDE)
                + " ("
                + ", ".join(n for n in names if n not in SHIP_EXCLUDE)
                + "), EXIF ignored",
                "places": int(sum(u.set not in SHIP_EXCLUDE for u in us)),
                "places_with_cues": int(sum(bool(evidence[i]) for i, u in enumerate(us) if u.set not in SHIP_EXCLUDE)),
                "objective": args.objective,
                "model": args.model,
                "command": " ".join(["python", *sys.argv]),
            },
        )
        print(f"wrote {RATES_FILE}")

    if args.timed_per_set > 0:
        _print_speed(loc, us, text, names, args.timed_per_set)


def _print_speed(loc, us, text, names, per_set: int) -> None:
    """The sequential table (visual alone, then the cue reading) and the real-path table."""
    t = _timed(loc, us, per_set)
    tv = np.array([r["visual"] for r in t])
    tc = np.array([r["cues"] for r in t])
    ratio = (tv + tc) / tv
    speed = []
    for name in [*names, "all sets"]:
        m = np.array([name == "all sets" or r["set"] == name for r in t])
        if not m.any():
            continue
        share = 100 * float(np.mean([text[i] for i, u in enumerate(us) if name == "all sets" or u.set == name]))
        speed.append(
            {
                "set": name,
                "timed": int(m.sum()),
                "with text % (all places)": share,
                "visual s (median)": float(np.median(tv[m])),
                "cues s (median)": float(np.median(tc[m])),
                "ratio median": float(np.median(ratio[m])),
                "ratio p90": float(np.percentile(ratio[m], 90)),
            }
        )
    print("\n## time per place: visual alone vs visual + cues (sequential), 2 shared CPU cores\n")
    print(markdown_table(speed))
    _print_real_path(loc, us, names, per_set)


def _print_real_path(loc, us, names, per_set: int) -> None:
    """The real-path table: Locator.locate with cues off vs on, per set and pooled, with the load average."""
    import os

    load0 = os.getloadavg()
    t = _real_path(loc, us, per_set)
    load1 = os.getloadavg()
    off = np.array([r["off"] for r in t])
    on = np.array([r["on"] for r in t])
    rows = []
    for name in [*names, "all sets"]:
        m = np.array([name == "all sets" or r["set"] == name for r in t])
        if not m.any():
            continue
        r = on[m] / off[m]
        rows.append(
            {
                "set": name,
                "timed": int(m.sum()),
                "locate cues off s (median)": float(np.median(off[m])),
                "locate cues on s (median)": float(np.median(on[m])),
                "ratio median": float(np.median(r)),
                "ratio p90": float(np.percentile(r, 90)),
            }
        )
    print("\n## time per place: Locator.locate, cues off vs on (the real path: text read beside the backbone)\n")
    print(markdown_table(rows))
    print(
        f"\nload average (1, 5, 15 min) before {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}, "
        f"after {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
