"""Cues (text, script, place names, phone numbers...) vs the visual model alone, on every ../shared set.

For a sample of each set (``--per-set`` photos, evenly spaced; panorama strips and Street View
panoramas are split into their views and pooled) it measures, with geoscout-lite:

- time: the visual answer alone (decode + backbone + head) and the cue reading (OCR + evidence),
  per photo, and their ratio ``(visual + cues) / visual`` (sequential: an upper bound, locate
  reads the cues while the backbone runs); the share of photos where text was found;
- accuracy, visual alone vs with cues, on all photos and on those with text: country accuracy,
  % within 25/200/750/2500 km, mean GeoGuessr score.

The cue weights are FITTED here on a validation split (the photos whose location key hashes even,
pooled over all sets) and REPORTED on the other photos only; ``--write-weights`` stores them as the
package's shipped weights (``geoscout/cues/weights.json``). EXIF is ignored (``--ignore-metadata``):
the scores are about what the photo shows.

    python benchmarks/cues.py --per-set 40
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, need_shared

SETS = ("im2gps", "osv5m-sample", "streetview-world", "streetview-croatia", "streetview-strips", "streetview-panoramas")


def _sample(root: Path, n: int):
    import pandas as pd

    df = pd.read_csv(root / "manifest.csv")
    key = df["location_id"].astype(str) if "location_id" in df else df["path"].astype(str)
    df = df.assign(key=key).drop_duplicates("key")  # one view per Street View location
    step = max(1, len(df) // n)
    return df.iloc[::step].head(n)


def _views(path: Path, name: str):
    from geoscout.imageio import load_image
    from geoscout.locator import split_strip

    if name in ("streetview-strips", "streetview-panoramas"):
        return split_strip(path)
    return [load_image(path)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-set", type=int, default=40)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated sets, each optionally NAME:COUNT")
    ap.add_argument("--timed-per-set", type=int, default=4, help="photos per set timed one by one")
    ap.add_argument("--write-weights", action="store_true", help="store the fitted weights in the package")
    args = ap.parse_args()
    shared = need_shared()

    from geoscout.cues import CueFuser, CueReader
    from geoscout.cues.fusion import WEIGHTS_FILE
    from geoscout.geo import geoguessr_score, haversine_km
    from geoscout.locator import load_model
    from geoscout.places import country_of

    loc = load_model("geoscout-lite")  # no cues: the visual answer
    reader = CueReader("text")  # EXIF ignored
    rows = []
    warm = shared / "data" / "im2gps"  # load the OCR models and the backbone before timing
    if (warm / "manifest.csv").is_file():
        first = warm / _sample(warm, 1)["path"].iloc[0]
        loc.embed([str(first)])
        reader.read_one(str(first))
    sizes = {}
    for item in args.sets.split(","):
        name, _, n = item.partition(":")
        sizes[name] = int(n) if n else args.per_set
    names = list(sizes)
    for name in names:
        root = shared / "data" / name
        if not (root / "manifest.csv").is_file():
            print(f"skipping {name}: no manifest", file=sys.stderr)
            continue
        df = _sample(root, sizes[name])
        for k, r in enumerate(df.itertuples(index=False)):
            path = root / r.path
            timed = k < args.timed_per_set
            t0 = time.perf_counter()
            views = _views(path, name)
            v = None
            if timed:  # one photo at a time, as a user's locate call
                X, _ = loc.embed(views)
                v = X.mean(axis=0)
            t_visual = time.perf_counter() - t0
            t0 = time.perf_counter()
            evidence = reader.read_one(str(path))
            t_cues = time.perf_counter() - t0
            split = "val" if int(hashlib.sha256(str(r.key).encode()).hexdigest(), 16) % 2 == 0 else "report"
            rows.append(
                {
                    "set": name,
                    "id": str(r.path),
                    "lat": float(r.lat),
                    "lon": float(r.lon),
                    "views": views,
                    "X": v,
                    "evidence": evidence,
                    "text": any(e.kind != "gps" for e in evidence),
                    "t_visual": t_visual if timed else None,
                    "t_cues": t_cues,
                    "split": split,
                }
            )
            print(
                f"{name} {r.path}: {f'visual {t_visual:.2f}s ' if timed else ''}cues {t_cues:.2f}s "
                f"{'; '.join(e.kind + ':' + e.text[:20] for e in evidence)}",
                file=sys.stderr,
                flush=True,
            )
    # the untimed photos: embedded in batches (the accuracy does not depend on how)
    todo = [r for r in rows if r["X"] is None]
    flat = [im for r in todo for im in r["views"]]
    if flat:
        Xall, _ = loc.embed(flat)
        k = 0
        for r in todo:
            r["X"] = Xall[k : k + len(r["views"])].mean(axis=0)
            k += len(r["views"])
    for r in rows:
        v = r.pop("X")
        r.pop("views")
        r["X"] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        dist = loc.head.predict_distribution(r["X"][None, :])
        lat, lon = dist.points(0)
        r["support"] = (lat, lon, dist.prob[0])

    # ---- fit the weights on the validation split (pooled), report on the rest
    start = CueFuser.load(WEIGHTS_FILE).weights
    val = [r for r in rows if r["split"] == "val"]
    fuser = CueFuser(start).fit([(*r["support"], r["evidence"], r["lat"], r["lon"]) for r in val])
    print(f"fitted weights: {fuser.weights_} (photos with cues per kind: {fuser.counts_}; unfitted: {fuser.unfitted_})")
    if args.write_weights:
        fuser.save(
            WEIGHTS_FILE,
            provenance={
                "fitted_on": "validation split (location key sha256 even) of ../shared/data sets "
                + ", ".join(sorted({r["set"] for r in val})),
                "photos": len(val),
                "photos_with_cues": sum(1 for r in val if r["evidence"]),
                "objective": "mean log probability of the true country",
                "command": " ".join(["python", *sys.argv]),
            },
        )
        print(f"wrote {WEIGHTS_FILE}")

    # ---- accuracy on the report split: the real Locator path (refinement included), without and with cues
    loc.cue_fuser = fuser
    rep = [r for r in rows if r["split"] == "report"]
    ids = [r["id"] for r in rep]
    X = np.stack([r["X"] for r in rep]) if rep else np.zeros((0, 1), np.float32)
    visual = loc.locate_embeddings(X, ids, top_k=1) if rep else []
    cued = loc.locate_embeddings(X, ids, top_k=1, evidence=[r["evidence"] for r in rep]) if rep else []
    truth_c = country_of(np.array([r["lat"] for r in rep]), np.array([r["lon"] for r in rep])) if rep else []

    def metrics(idx, preds):
        if not idx:
            return {}
        d = np.array(
            [float(haversine_km(rep[i]["lat"], rep[i]["lon"], preds[i].top.lat, preds[i].top.lon)) for i in idx]
        )
        pc = [preds[i].top.country for i in idx]
        out = {"country %": 100 * float(np.mean([pc[k] == truth_c[i] for k, i in enumerate(idx)]))}
        for t in (25, 200, 750, 2500):
            out[f"<{t} km %"] = 100 * float(np.mean(d < t))
        out["GeoGuessr"] = float(np.mean(geoguessr_score(d)))
        return out

    table = []
    for name in [s for s in names if any(r["set"] == s for r in rep)] + ["all sets"]:
        for subset in ("all photos", "with text"):
            idx = [i for i, r in enumerate(rep) if (name == "all sets" or r["set"] == name)]
            if subset == "with text":
                idx = [i for i in idx if rep[i]["text"]]
            for label, preds in (("visual", visual), ("visual + cues", cued)):
                m = metrics(idx, preds)
                if m:
                    table.append({"set": name, "photos": f"{subset} ({len(idx)})", "answer": label, **m})
    print("\n## accuracy (report split; weights fitted on the validation split)\n")
    print(markdown_table(table))

    # ---- speed
    timed = [r for r in rows if r["t_visual"] is not None]
    tv = np.array([r["t_visual"] for r in timed])
    tc = np.array([r["t_cues"] for r in timed])
    ratio = (tv + tc) / tv
    speed = []
    for name in [*names, "all sets"]:
        m = np.array([name == "all sets" or r["set"] == name for r in timed])
        if not m.any():
            continue
        speed.append(
            {
                "set": name,
                "photos": int(m.sum()),
                "with text % (all sampled)": 100
                * float(np.mean([r["text"] for r in rows if name == "all sets" or r["set"] == name])),
                "visual s (median)": float(np.median(tv[m])),
                "cues s (median)": float(np.median(tc[m])),
                "ratio median": float(np.median(ratio[m])),
                "ratio p90": float(np.percentile(ratio[m], 90)),
            }
        )
    print("\n## time per photo: visual alone vs visual + cues (sequential), 2 shared CPU cores\n")
    print(markdown_table(speed))
    kinds: dict[str, int] = {}
    for r in rows:
        for k in {e.kind for e in r["evidence"]}:
            kinds[k] = kinds.get(k, 0) + 1
    print(f"\nphotos with each cue kind: {json.dumps(kinds, sort_keys=True)}")


if __name__ == "__main__":
    main()
