"""Train the shipped default model geoscout-lite on every ../shared/data training set and write its model card.

    python benchmarks/feature_cache.py            # once: embeds every set per view (ONNX Runtime) into the cache
    python benchmarks/train_default.py --out src/geoscout/models/geoscout-lite   # the shipped model
    python benchmarks/train_default.py --out DIR --features mean+stages --retrieval int8   # the stage-feature candidate

Training data: streetview-croatia, streetview-world, streetview-strips (5 views each), osv5m-sample and
streetview-panoramas (4 views each, one location per panorama), from the feature cache (the same vectors
``geoscout locate`` computes with the backbone of the feature kind: ``mean`` = ``effnet-lite2``'s pooled final
features, ``mean+stages`` = ``effnet-lite2-stages``, the final features plus stage 3-6 mean/std pooling).
``--retrieval int8`` stores the retrieval index as int8 with a per-row scale (half of float16's size); the
card states the validation score with either storage. Splits as in ``_world16``: early stopping
and calibration on the world-wide validation split (no Croatia); the held-out fifth of the panoramas and
im2gps are never fitted on, only reported in the card. The card records this exact command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _world16 import KIND_BACKBONE, TRAIN_SETS, fuse, load_views, training_data
from ablation_world import calibration_cv, cross_fitted_records, fingerprint, locator, predict, records_cv, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="bundle folder to write (replaced atomically)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guess", default="expected-score", choices=("expected-score", "mode", "median"))
    ap.add_argument(
        "--features",
        default="mean",
        choices=tuple(KIND_BACKBONE),
        help="feature kind of the cache = the backbone the model runs (mean: effnet-lite2, "
        "mean+stages: effnet-lite2-stages)",
    )
    ap.add_argument(
        "--retrieval",
        default="float16",
        choices=("float16", "int8"),
        help="storage of the retrieval index (int8: per-row scale, half the size)",
    )
    ap.add_argument("--panoramas", default="views", choices=("views", "fused"))
    ap.add_argument(
        "--calibration",
        default="auto",
        choices=(
            "auto",
            *(f"{m}:{o}" for o in ("nll", "score") for m in ("global", "novelty", "mondrian", "novelty+mondrian")),
        ),
        help="calibration method:temperature objective; auto: the lowest out-of-fold calibration error (see the card)",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    command = "python benchmarks/train_default.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()

    from geoscout.geo import spherical_mean
    from geoscout.heads import create_head
    from geoscout.locator import calibrate
    from geoscout.train import _model_card, train_model

    backbone = KIND_BACKBONE[args.features]
    v = load_views(TRAIN_SETS, kind=args.features, seed=args.seed)
    im2 = load_views(["im2gps"], kind=args.features, seed=args.seed)
    fit = v.take(v.split != "test")
    if args.panoramas == "fused":
        p = fit.dataset == "streetview-panoramas"
        from ablation_world import _cat

        fit = _cat(fit.take(~p), fuse(fit.take(p)))
    bundle = train_model(
        None,
        data=training_data(fit, fingerprint(backbone)),
        backbone=backbone,
        cells="semantic",
        seed=args.seed,
        progress=False,
        guess=args.guess,
        calibrate=None,
        command=command,
    )
    s = bundle.training
    va = v.take(v.split == "val")
    # the retrieval index's storage, measured on the validation split (same head, uncalibrated answer)
    storage = {"float16": bundle.retrieval, "int8": bundle.retrieval.as_int8()}
    s["retrieval_storage"] = {"chosen": args.retrieval}
    for name, ret in storage.items():
        bundle.retrieval = ret
        m = scores(predict(locator(bundle, guess=args.guess), va.X), va)
        s["retrieval_storage"][name] = {"val_geoguessr": m["geoguessr"], "val_median_km": m["median_km"]}
        print(
            f"retrieval {name}: validation GeoGuessr {m['geoguessr']:.1f}, median {m['median_km']:.0f} km",
            file=sys.stderr,
        )
    bundle.retrieval = storage[args.retrieval]
    # calibration: fitted on a diverse world-wide mix of cross-fitted predictions (every photo predicted by a model
    # that never saw it); each method scored out-of-fold on it (the validation criterion), the best (or the one
    # asked for) fitted on the whole mix; the previous way (global, the validation split only) as a reference;
    # im2gps and the held-out panoramas are only reported
    from geoscout.calibration import CALIBRATION_METHODS, TEMPERATURE_OBJECTIVES, fit_calibration

    te_all = v.take((v.split == "test") & (v.dataset == "streetview-panoramas"))
    rec, rec_fold, rec_ds = cross_fitted_records(bundle, v, guess=args.guess, seed=args.seed)
    mix_desc = ", ".join(f"{d} {int((rec_ds == d).sum())}" for d in dict.fromkeys(rec_ds))
    print(f"calibration mix: {len(rec)} cross-fitted views ({mix_desc})", file=sys.stderr)

    def test_scores(cal):
        loc = locator(bundle, guess=args.guess, calibration=cal)
        return scores(predict(loc, fuse(te_all).X), fuse(te_all)), scores(predict(loc, im2.X), im2)

    cal_rows = {}
    val_only = calibrate(
        bundle, va.X, va.y, guess=args.guess, method="global", fitted_on=f"the validation split ({len(va)} views)"
    )
    cal_rows["global, validation split only (previous)"] = (
        calibration_cv(bundle, va, "global", args.guess, seed=args.seed),
        val_only,
        *test_scores(val_only),
    )
    for objective in TEMPERATURE_OBJECTIVES:
        for method in CALIBRATION_METHODS:
            cv = records_cv(rec, rec_fold, method, args.guess, objective)
            cal = fit_calibration(
                rec,
                method=method,
                guess=args.guess,
                objective=objective,
                fitted_on=f"cross-fitted predictions of a world-wide mix ({len(rec)} views: {mix_desc}; no Croatia, "
                "no test photo)",
            )
            cal_rows[f"{method}, T by {objective}"] = (cv, cal, *test_scores(cal))
    for method, (cv, _c, pm, im) in cal_rows.items():
        print(
            f"calibration {method:42s} criterion {cv['criterion']:.3f} (50/68/90 % {cv['cov50']:.2f} {cv['cov68']:.2f} "
            f"{cv['cov90']:.2f}, E {cv['expected']:.0f} vs {cv['geoguessr']:.0f}) | panoramas {pm['cov68']:.2f} "
            f"{pm['cov90']:.2f} E {pm['expected']:.0f} vs {pm['geoguessr']:.0f} | im2gps {im['cov50']:.2f} {im['cov68']:.2f} "
            f"{im['cov90']:.2f} E {im['expected']:.0f} vs {im['geoguessr']:.0f}",
            file=sys.stderr,
        )
    candidates = [k for k in cal_rows if "previous" not in k]
    chosen = (
        min(candidates, key=lambda k: cal_rows[k][0]["criterion"])
        if args.calibration == "auto"
        else args.calibration.replace(":", ", T by ")
    )
    bundle.calibration = cal_rows[chosen][1]
    s["calibration"] = bundle.calibration.to_dict()
    how = "as 4 views of one location" if args.panoramas == "views" else "fused to one vector each"
    s["split"] = (
        f"by ~1 km areas (seed {args.seed}): streetview-panoramas 70 / 10 / 20 % train / val / test, "
        "streetview-world, -strips and osv5m-sample 90 / 10 % train / val, streetview-croatia train only "
        f"(validation and calibration are world-wide, never Croatia); panoramas {how}"
    )
    # held-out reports: the fifth of the panoramas never fitted on (views fused, as `locate --strip` answers) and im2gps
    te = v.take((v.split == "test") & (v.dataset == "streetview-panoramas"))
    te_f = fuse(te)
    tr = v.take(v.split == "train")
    clat, clon = spherical_mean(tr.lat, tr.lon)
    knn = create_head("knn", k=1).fit(tr.X, tr.y)
    loc = locator(bundle, guess=args.guess, calibration=bundle.calibration)
    from ablation_world import point_scores

    rows = []
    for label, x in (
        ("held-out panoramas (views fused)", te_f),
        ("held-out panoramas (single views)", te),
        ("im2gps", im2),
    ):
        m = scores(predict(loc, x.X), x)
        pr = point_scores(np.tile([clat, clon], (len(x), 1)), x)
        nn = point_scores(knn.predict(x.X), x)
        rows.append((label, m, pr, nn))
    s["test"] = {
        label: {
            k: m[k]
            for k in (
                "n",
                "geoguessr",
                "median_km",
                "acc@25km",
                "acc@750km",
                "acc@2500km",
                "cov50",
                "cov68",
                "cov90",
                "expected",
            )
        }
        | {"prior_geoguessr": pr["geoguessr"], "nn1_geoguessr": nn["geoguessr"]}
        for label, m, pr, nn in rows
    }
    s["total_seconds"] = time.perf_counter() - t0
    card = (
        _model_card(s)
        .rstrip()
        .replace("Photos' licences are those of their sources; check them before publishing predictions.", "")
        .rstrip()
    )
    lines = [
        card,
        "",
        "## Test (never used for fitting)",
        "",
        "| test set | n | GeoGuessr | training-centroid prior | 1-NN | median km | 25 km | 750 km | 2500 km | 50 % radius holds | 68 % radius holds | 90 % radius holds | expected score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m, pr, nn in rows:
        lines.append(
            f"| {label} | {m['n']} | {m['geoguessr']:.0f} | {pr['geoguessr']:.0f} | {nn['geoguessr']:.0f} | "
            f"{m['median_km']:,.0f} | {100 * m['acc@25km']:.1f} % | {100 * m['acc@750km']:.1f} % | "
            f"{100 * m['acc@2500km']:.1f} % | {100 * m['cov50']:.0f} % | {100 * m['cov68']:.0f} % | "
            f"{100 * m['cov90']:.0f} % | {m['expected']:.0f} |"
        )
    st = s["retrieval_storage"]
    lines += [
        "",
        "## Retrieval index storage",
        "",
        f"{len(bundle.retrieval)} training views of {bundle.retrieval.vectors.shape[1]} dimensions, stored as "
        f"**{args.retrieval}**"
        + (" (one float32 scale per row, max |value| / 127)" if args.retrieval == "int8" else "")
        + f". Validation GeoGuessr (`{args.guess}`, uncalibrated, same head): float16 "
        f"{st['float16']['val_geoguessr']:.1f}, int8 {st['int8']['val_geoguessr']:.1f}.",
    ]
    lines += [
        "",
        "## Calibration methods (chosen by the validation criterion, never by the test sets)",
        "",
        "Temperature fitted by `nll` (likelihood of the true cells) or `score` (expected GeoGuessr scores that best "
        "predict the achieved ones, squared error). "
        f"Calibration data: {len(rec)} cross-fitted views ({mix_desc}): 5 folds of ~1 km areas; each fold predicted "
        "by a head with this model's parameters and cells trained on every other non-test view (Croatia included), "
        "its novelty measured against that head's training views. Validation criterion (out-of-fold: fit on 4 "
        "folds, state on the 5th) = mean |stated - observed| coverage of the 50 / 68 / 90 % radii + |expected - "
        "scored| / scored GeoGuessr. The previous calibration (global, fitted on the validation split only) is scored "
        "out-of-fold on the validation split instead. Test columns: each method fitted on all its data, applied to "
        f"this model. Chosen: **{chosen}**"
        + (" (lowest validation criterion)." if args.calibration == "auto" else " (asked for)."),
        "",
        "| method (temperature fitted by) | val criterion | val 50 / 68 / 90 % hold | val expected / scored | panoramas 50 / 68 / 90 % hold | "
        "panoramas expected / scored | im2gps 50 / 68 / 90 % hold | im2gps expected / scored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cov(m):
        return " / ".join(f"{100 * m[f'cov{q}']:.0f}" for q in ("50", "68", "90")) + " %"

    for method, (cv, _cal, pm, im) in cal_rows.items():
        lines.append(
            f"| {method}{' (chosen)' if method == chosen else ''} | {cv['criterion']:.3f} | {cov(cv)} | "
            f"{cv['expected']:.0f} / {cv['geoguessr']:.0f} | {cov(pm)} | {pm['expected']:.0f} / {pm['geoguessr']:.0f} | "
            f"{cov(im)} | {im['expected']:.0f} / {im['geoguessr']:.0f} |"
        )
    lines += [
        "",
        "GeoGuessr = mean of 5000·exp(-d / 1492.7 km) at the answered point (`" + args.guess + "`); prior = always "
        "answering the spherical mean of the training locations; 1-NN = the location of the most similar training "
        "view. Same numbers: `python benchmarks/ablation.py` (section \"World-wide default model\").",
        "",
        "## Intended use and limits",
        "",
        "A small, offline, CPU-only default: EfficientNet-Lite2 ImageNet features (no geographic fine-tuning"
        + (
            "; its final features plus the mean and standard deviation over space of the outputs of stages 3-6, "
            "backbone `effnet-lite2-stages`"
            if args.features == "mean+stages"
            else ""
        )
        + ") and a "
        "cell classifier trained on a few thousand Street View / Mapillary views, most of them from roads near towns. "
        "It guesses the region of Street View-like photos far better than chance; on Flickr-style photos (people, "
        "landmarks, indoor scenes) it is only somewhat better than the geographic prior. Its radii and expected score "
        f"are calibrated ({chosen}) on a world-wide mix of Street View and Mapillary photos, each predicted by a "
        "model that did not train on it (cross-fitting); "
        + (
            "its temperature grows with how unlike its training photos a photo is, so on unfamiliar photos it "
            "states wider radii and a lower expected score. "
            if bundle.calibration.uses_novelty
            else ""
        )
        + "Stated vs observed on the test sets: see the Test table (im2gps: Flickr photos; held-out panoramas: "
        "Street View like most of its training data). For real accuracy use `--model geoclip` or train a bundle "
        "with a CLIP backbone on data from your region.",
        "",
        "Photos' licences are those of their sources; check them before publishing predictions.",
        "",
    ]
    bundle.card = "\n".join(lines)
    bundle.training = s
    bundle.save(args.out)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.is_file())
    print(bundle.card)
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
