"""The world-wide section of benchmarks/ablation.py (issue 16): features, panorama use, guess rule, calibration, goals.

All rows run on the feature cache of ``benchmarks/feature_cache.py`` (EfficientNet-Lite2 on ONNX Runtime,
every ../shared/data set embedded once per view) and the location-grouped splits of ``_world16``. Choices
(features, panorama handling, guess rule, temperature, radius quantiles) are made on the validation split
(world-wide: panoramas, streetview-world, -strips, osv5m-sample; never Croatia); the held-out fifth of the
panoramas and im2gps are only reported.
"""

from __future__ import annotations

import re
import time

import numpy as np

from _world16 import KIND_BACKBONE, TRAIN_SETS, VAL_SETS, Views, fuse, load_views, training_data

GOAL_PRIOR, GOAL_1NN = 1.3, 1.1
SECTION = "## World-wide default model (benchmarks/ablation.py)"


def _cat(*vs: Views) -> Views:
    return Views(*(np.concatenate([getattr(v, f) for v in vs]) for f in Views.__dataclass_fields__))


def fingerprint(backbone: str = "effnet-lite2") -> dict:
    from geoscout.backbones import create_backbone

    return create_backbone(backbone).fingerprint()


def fit_bundle(train: Views, val: Views, *, seed: int = 0, cells: str = "semantic", retrieval: bool = True):
    """geoscout's own training path (``train_model``) on cached features: early stopping on ``val``."""
    from geoscout.train import train_model

    td = training_data(_cat(train, val), fingerprint())
    return train_model(
        None,
        data=td,
        backbone="effnet-lite2",
        cells=cells,
        seed=seed,
        progress=False,
        retrieval=retrieval,
    )


def locator(bundle, *, guess: str = "mode", calibration=None):
    from geoscout.locator import Locator

    return Locator(
        None,
        bundle.head,
        partition=bundle.partition,
        retrieval=bundle.retrieval,
        geocode=False,
        heatmap_points=0,
        calibration=calibration,
        guess=guess,
    )


def predict(loc, X: np.ndarray):
    return loc.locate_embeddings(X, [str(i) for i in range(len(X))], top_k=5)


def scores(preds, v: Views) -> dict:
    from geoscout.evaluate import distance_metrics
    from geoscout.geo import haversine_km

    a = np.array([[p.answer.lat, p.answer.lon] for p in preds])
    d = haversine_km(a[:, 0], a[:, 1], v.lat, v.lon)
    m = distance_metrics(d)
    m["d"] = d
    m["expected_each"] = np.array([p.expected_score for p in preds])
    m["expected"] = float(np.mean(m["expected_each"]))
    for q in ("50", "68", "90"):
        m[f"r{q}"] = np.array([p.radii_km[q] for p in preds])
        m[f"cov{q}"] = float(np.mean(d <= m[f"r{q}"]))
    return m


def point_scores(pred_latlon: np.ndarray, v: Views) -> dict:
    from geoscout.evaluate import distance_metrics
    from geoscout.geo import haversine_km

    return distance_metrics(haversine_km(pred_latlon[:, 0], pred_latlon[:, 1], v.lat, v.lon))


def calibration_error(m: dict) -> float:
    """The validation criterion for a calibration: mean |stated - observed| coverage over the 50 / 68 / 90 %
    radii plus the relative gap between the mean expected and the scored GeoGuessr score."""
    cov = np.mean([abs(m[f"cov{q}"] - int(q) / 100) for q in ("50", "68", "90")])
    return float(cov + abs(m["expected"] - m["geoguessr"]) / max(m["geoguessr"], 1e-9))


def calibration_cv(bundle, val: Views, method: str, rule: str, *, folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold calibration quality on the validation split: fit ``method`` on 4/5 of its locations
    (grouped by ~1 km area), state radii and expected scores on the other fifth, pooled over the folds."""
    from _world16 import _area
    from geoscout.locator import calibrate

    areas = np.array([_area(k.split("/", 1)[1]) for k in val.location])
    uniq = np.unique(areas)
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % folds))
    f = np.array([fold_of[a] for a in areas])
    d, r, e = np.zeros(len(val)), np.zeros((3, len(val))), np.zeros(len(val))
    for k in range(folds):
        fit, out = val.take(f != k), f == k
        cal = calibrate(bundle, fit.X, fit.y, guess=rule, method=method)
        m = scores(predict(locator(bundle, guess=rule, calibration=cal), val.X[out]), val.take(out))
        d[out], e[out] = m["d"], m["expected_each"]
        for j, q in enumerate(("50", "68", "90")):
            r[j, out] = m[f"r{q}"]
    from geoscout.evaluate import distance_metrics

    m = distance_metrics(d)
    m["expected"] = float(e.mean())
    for j, q in enumerate(("50", "68", "90")):
        m[f"cov{q}"] = float(np.mean(d <= r[j]))
    m["criterion"] = calibration_error(m)
    return m


def cross_fitted_records(bundle, v: Views, *, guess: str, seed: int = 0, folds: int = 5):
    """Calibration records of a diverse world-wide mix, each photo predicted by a model that never saw it.

    The mix: every non-test view of streetview-world, -strips and osv5m-sample (Mapillary), and as many
    non-test panorama views (whole panoramas, seeded) as those three sets together, so Street View panoramas do
    not drown the other kinds of photo; never Croatia, never a test photo. Folds: ``folds`` groups of ~1 km
    areas. For each fold, a head with ``bundle``'s parameters and partition is trained on every other
    non-test view (Croatia included; its own early stopping holds out a tenth of its groups) and the fold's
    photos are predicted with that head and its training views as retrieval data (their novelty is measured
    against those; stored like ``bundle``'s index, float16 or int8). Returns (records, fold of each record,
    dataset of each record).
    """
    from _world16 import _area
    from geoscout.bundle import ModelBundle, RetrievalData
    from geoscout.calibration import CalibrationRecords
    from geoscout.heads import create_head
    from geoscout.locator import calibration_records

    rng = np.random.default_rng(seed)
    pool = (v.split != "test") & (v.dataset != "streetview-croatia")
    pano = pool & (v.dataset == "streetview-panoramas")
    others = pool & ~pano
    locs = np.unique(v.location[pano])
    keep = set(rng.permutation(locs)[: max(1, int(others.sum()) // 4)])  # 4 views per panorama
    mix = others | (pano & np.isin(v.location, list(keep)))
    areas = np.array([_area(k.split("/", 1)[1]) for k in v.location])
    uniq = np.unique(areas[mix])
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % folds))
    fold = np.array([fold_of.get(a, -1) for a in areas])
    recs, rec_fold, rec_ds = [], [], []
    params = bundle.head.get_params()
    for k in range(folds):
        out = mix & (fold == k)
        fit = (v.split != "test") & ~(pool & np.isin(areas, [a for a, f in fold_of.items() if f == k]))
        head = create_head("classifier", **params)
        head.fit(v.X[fit], v.y[fit], partition=bundle.partition, groups=v.location[fit], progress=False)
        ret = RetrievalData(v.X[fit].astype(np.float16), v.lat[fit], v.lon[fit])
        if bundle.retrieval is not None and bundle.retrieval.int8:
            ret = ret.as_int8()  # novelty measured against the index as the model stores it
        b = ModelBundle(head=head, partition=bundle.partition, retrieval=ret)
        recs.append(calibration_records(b, v.X[out], v.y[out], guess=guess))
        rec_fold.append(np.full(int(out.sum()), k))
        rec_ds.append(v.dataset[out])
    return CalibrationRecords.concat(recs), np.concatenate(rec_fold), np.concatenate(rec_ds)


def records_cv(rec, fold: np.ndarray, method: str, guess: str, objective: str = "nll") -> dict:
    """Out-of-fold quality of a calibration method on cross-fitted records: fit on the other folds' records,
    state on this fold's, pooled (coverage per level, expected vs scored, the criterion)."""
    from geoscout.calibration import calibration_report, fit_calibration

    parts = []
    for k in np.unique(fold):
        cal = fit_calibration(rec.take(fold != k), method=method, guess=guess, objective=objective)
        parts.append(calibration_report(cal, rec.take(fold == k)))
    n = np.array([p["n"] for p in parts], float)
    m = {
        key: float(np.dot(n, [p[key] for p in parts]) / n.sum())
        for key in ("cov50", "cov68", "cov90", "expected", "scored")
    }
    m["geoguessr"] = m["scored"]
    m["n"] = int(n.sum())
    m["criterion"] = calibration_error(m)
    return m


def onnx_ms_per_photo(n: int = 8, reps: int = 3) -> dict[str, float]:
    """ms per photo of the ONNX forward passes the feature rows need (interleaved, same batch, median of reps),
    the shipped ``effnet-lite2-stages`` backbone's session among them."""
    import onnxruntime as ort

    from _world16 import CACHE
    from geoscout.backbones import create_backbone

    out = {}
    sess = {}
    for variant in ("lite2", "lite0"):
        bb = create_backbone(f"effnet-{variant}")
        s = bb.input_size
        x = np.random.default_rng(0).normal(size=(n, 3, s, s)).astype(np.float32)
        sess[variant] = (bb._ort, x)
        multi = CACHE / f"multi-{variant}.onnx"
        if multi.is_file():
            o = ort.SessionOptions()
            o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = 2, 1, 3
            sess[f"{variant}-multi"] = (ort.InferenceSession(str(multi), o, providers=["CPUExecutionProvider"]), x)
    sess["lite2-stages"] = (create_backbone("effnet-lite2-stages")._ort, sess["lite2"][1])  # what locate runs
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(reps):
        for k, (se, x) in sess.items():
            t = time.perf_counter()
            se.run(None, {se.get_inputs()[0].name: x})
            times[k].append(1000 * (time.perf_counter() - t) / n)
    for k, v in times.items():
        out[k] = float(np.median(v))
    return out


def lite0_lite2_row(v: Views, im2: Views, ms: dict, *, seed: int = 0, log=print):
    """The ablation row of EfficientNet-Lite0 + Lite2 features (each pooled vector L2-normalised, concatenated):
    (name, val, held-out panoramas, im2gps metrics, note), or None while the Lite0 cache is incomplete."""
    from _world16 import _files

    def complete(n: str) -> bool:
        return bool(_files(n, "lite0", False)) and len(_files(n, "lite0", False)) == len(_files(n, "lite2", False))

    if not all(complete(n) for n in ("im2gps", *TRAIN_SETS)):
        log("Lite0 + Lite2 row skipped: run feature_cache.py --variant lite0")
        return None

    def both(vv: Views, names) -> Views:
        z0 = load_views(names, kind="mean", variant="lite0", seed=seed)
        assert (z0.path == vv.path).all() and (z0.lat == vv.lat).all(), "lite0 cache rows out of order"
        X = np.concatenate([vv.X, z0.X], axis=1) / np.sqrt(2.0)
        return Views(X, vv.lat, vv.lon, vv.dataset, vv.location, vv.path, vv.split)

    v02, im02 = both(v, TRAIN_SETS), both(im2, ["im2gps"])
    tr2, va2 = v02.take(v02.split == "train"), v02.take(v02.split == "val")
    te2 = fuse(v02.take((v02.split == "test") & (v02.dataset == "streetview-panoramas")))
    loc = locator(fit_bundle(tr2, va2, seed=seed))
    return (
        "classifier, EfficientNet-Lite0 + Lite2 features concatenated",
        scores(predict(loc, va2.X), va2),
        scores(predict(loc, te2.X), te2),
        scores(predict(loc, im02.X), im02),
        f"{ms['lite0'] + ms['lite2']:.0f} ms/photo (two backbones)",
    )


def run(seed: int = 0, log=print, compare=(), compare_labels=()) -> tuple[str, dict]:
    """Run the world-wide ablation; returns (Markdown section, chosen settings). ``compare``: bundle folders
    (e.g. retrained candidates) judged beside the shipped one: their rows, calibration and goals."""
    from geoscout.geo import spherical_mean
    from geoscout.heads import create_head

    t0 = time.perf_counter()
    views = {k: load_views(TRAIN_SETS, kind=k, seed=seed) for k in ("mean", "gem", "mean+stages")}
    im2 = {k: load_views(["im2gps"], kind=k, seed=seed) for k in views}
    v = views["mean"]
    is_pano = v.dataset == "streetview-panoramas"
    n_pano = len(np.unique(v.location[is_pano]))
    log(f"views: {len(v)} ({n_pano} panoramas embedded); im2gps {len(im2['mean'])}")

    def parts(vv: Views):
        tr, va = vv.take(vv.split == "train"), vv.take(vv.split == "val")
        te = vv.take((vv.split == "test") & (vv.dataset == "streetview-panoramas"))
        return tr, va, te

    tr, va, te = parts(v)
    te_f = fuse(te)  # held-out panoramas, their views fused (what `locate --strip` answers)
    rows: list[tuple[str, dict, str]] = []

    def add(name: str, val_m, pano_m, im_m, note: str = "") -> None:
        rows.append((name, {"val": val_m, "pano": pano_m, "im2gps": im_m}, note))
        log(
            f"{name:55s} val {val_m['geoguessr'] if val_m else float('nan'):6.0f} | panoramas "
            f"{pano_m['geoguessr'] if pano_m else float('nan'):6.0f} | im2gps {im_m['geoguessr'] if im_m else float('nan'):6.0f}"
        )

    # -- baselines
    clat, clon = spherical_mean(tr.lat, tr.lon)
    prior = {
        k: point_scores(np.tile([clat, clon], (len(x), 1)), x)
        for k, x in (("val", va), ("pano", te_f), ("im", im2["mean"]))
    }
    add("training-centroid prior", prior["val"], prior["pano"], prior["im"])
    knn = create_head("knn", k=1).fit(tr.X, tr.y)
    nn1 = {k: point_scores(knn.predict(x.X), x) for k, x in (("val", va), ("pano", te_f), ("im", im2["mean"]))}
    add("1-NN retrieval (cosine, training views)", nn1["val"], nn1["pano"], nn1["im"])
    # 1-NN on the final + stage features too: the goals compare a model with the 1-NN of its own features
    nn1_of = {"mean": nn1}
    trs, vas, tes = parts(views["mean+stages"])
    tes_f = fuse(tes)
    knn_s = create_head("knn", k=1).fit(trs.X, trs.y)
    nn1_of["mean+stages"] = {
        k: point_scores(knn_s.predict(x.X), x) for k, x in (("val", vas), ("pano", tes_f), ("im", im2["mean+stages"]))
    }
    add(
        "1-NN retrieval, final + stage 3-6 features",
        nn1_of["mean+stages"]["val"],
        nn1_of["mean+stages"]["pano"],
        nn1_of["mean+stages"]["im"],
    )

    # -- features x panorama handling, classifier recipe of geoscout-lite (semantic cells, tau 75 km), mode guess
    ms = onnx_ms_per_photo()
    ms_note = {
        "mean": f"{ms['lite2']:.0f} ms/photo",
        "gem": f"{ms.get('lite2-multi', float('nan')):.0f} ms/photo (one pass gives all three)",
        "mean+stages": f"{ms['lite2-stages']:.0f} ms/photo (effnet-lite2-stages)",
    }
    fitted = {}
    for kind, label in (
        ("mean", "classifier, pooled final features (today), panoramas as 4 views"),
        ("gem", "classifier, GeM (p = 3) of the final map"),
        ("mean+stages", "classifier, final + stage 3-6 mean/std pooling"),
    ):
        trk, vak, tek = parts(views[kind])
        b = fit_bundle(trk, vak, seed=seed)
        loc = locator(b)
        fitted[kind] = b
        add(
            label,
            scores(predict(loc, vak.X), vak),
            scores(predict(loc, fuse(tek).X), fuse(tek)),
            scores(predict(loc, im2[kind].X), im2[kind]),
            ms_note[kind],
        )
    # panoramas fused (one training row per panorama) instead of as views
    tr_fused = _cat(
        tr.take(~(tr.dataset == "streetview-panoramas")), fuse(tr.take(tr.dataset == "streetview-panoramas"))
    )
    b_fused = fit_bundle(tr_fused, va, seed=seed)
    loc = locator(b_fused)
    add(
        "classifier, panoramas fused to one row each (mean features)",
        scores(predict(loc, va.X), va),
        scores(predict(loc, te_f.X), te_f),
        scores(predict(loc, im2["mean"].X), im2["mean"]),
    )
    # flip TTA at test time: the classifier of today's features, each photo embedded as the mean of itself and
    # its mirror (what `embed --tta` computes); needs the mirrored views cached (feature_cache.py --flip)
    from _world16 import _files

    def flipped(vv: Views, names) -> np.ndarray:
        f = load_views(names, kind="mean", flip=True, seed=seed)
        assert (f.path == vv.path).all() and (f.lat == vv.lat).all(), "flip cache rows out of order"
        X = vv.X + f.X
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    if all(_files(n, "lite2", True) for n in ("im2gps", *VAL_SETS)):
        vf_all = views["mean"].take(views["mean"].dataset != "streetview-croatia")
        Xf = flipped(vf_all, VAL_SETS)
        keep = v.dataset != "streetview-croatia"
        Xtta = np.zeros_like(v.X)
        Xtta[keep] = Xf
        tta = Views(Xtta, v.lat, v.lon, v.dataset, v.location, v.path, v.split)
        _, va_t, te_t = parts(tta)
        loc = locator(fitted["mean"])
        add(
            "+ flip TTA (mean of photo and mirror; same classifier)",
            scores(predict(loc, va_t.X), va_t),
            scores(predict(loc, fuse(te_t).X), fuse(te_t)),
            scores(predict(loc, flipped(im2["mean"], ["im2gps"])), im2["mean"]),
            f"{2 * ms['lite2']:.0f} ms/photo (2 forward passes)",
        )
    else:
        log("flip TTA row skipped: run feature_cache.py --flip --sets im2gps," + ",".join(VAL_SETS))
    # -- choose features and panorama handling on the validation split
    labels = {
        "mean": "classifier, pooled final features (today), panoramas as 4 views",
        "gem": "classifier, GeM (p = 3) of the final map",
        "mean+stages": "classifier, final + stage 3-6 mean/std pooling",
    }
    val_of = {r[0]: r[1]["val"]["geoguessr"] for r in rows if r[1]["val"] is not None}
    best_kind = max(labels, key=lambda k: val_of[labels[k]])
    fused_wins = val_of["classifier, panoramas fused to one row each (mean features)"] > val_of[labels["mean"]]
    log(f"best on val: features {best_kind}; panoramas {'fused' if fused_wins else 'as views'}")
    # -- guess rules on the features chosen above (each kind has its backbone: KIND_BACKBONE), panoramas as views.
    # The answer is chosen under the untempered distribution, so no calibration enters these rows.
    bundle = fitted[best_kind]
    vk = views[best_kind]
    trk, vak, tek = parts(vk)
    tek_f, im_k = fuse(tek), im2[best_kind]
    guess_val = {}
    for rule in ("mode", "expected-score", "median"):
        loc = locator(bundle, guess=rule)
        guess_val[rule] = scores(predict(loc, vak.X), vak)
        add(
            f"guess = {rule} ({best_kind} features)",
            guess_val[rule],
            scores(predict(loc, tek_f.X), tek_f),
            scores(predict(loc, im_k.X), im_k),
        )
    best_rule = max(("mode", "expected-score", "median"), key=lambda r: guess_val[r]["geoguessr"])

    # EfficientNet-Lite0 + Lite2 together (last: its cache is the slowest to fill)
    row = lite0_lite2_row(v, im2["mean"], ms, seed=seed, log=log)
    if row is not None:
        add(*row)
    # flip TTA and Lite0 + Lite2 against today's features, on the validation split
    val_of = {r[0]: r[1]["val"]["geoguessr"] for r in rows if r[1]["val"] is not None}
    today = val_of[labels["mean"]]
    extra_verdict = []
    for key, what in (("+ flip TTA", "flip TTA"), ("classifier, EfficientNet-Lite0 + Lite2", "Lite0 + Lite2")):
        hit = [k for k in val_of if k.startswith(key)]
        if hit:
            x = val_of[hit[0]]
            extra_verdict.append(
                f"{what}: validation GeoGuessr {x:.0f} vs {today:.0f} for today's features "
                f"({'beats them' if x > today else 'does not beat them'})"
            )

    # -- the shipped bundle itself (benchmarks/train_default.py), with its own calibration and answer rule, on the
    # features of its own backbone; a candidate bundle (--compare DIR) beside it on the same photos, judged the same way
    from geoscout.bundle import ModelBundle
    from geoscout.locator import _builtin_dir

    def judged(b, label: str) -> dict:
        """A bundle's rows (as it ships: its backbone's features, answer rule, calibration) and its goals."""
        kind = {bb: k for k, bb in KIND_BACKBONE.items()}.get(b.backbone_name)
        if kind is None:
            raise SystemExit(f"{b.backbone_name}: no cached feature kind embeds this backbone ({KIND_BACKBONE})")
        _, va_b, te_b = parts(views[kind])
        te_bf = fuse(te_b)
        cal = b.calibration
        lb = locator(b, guess=cal.guess, calibration=cal)
        r = {
            "label": label,
            "backbone": b.backbone_name,
            "kind": kind,
            "calibration": cal,
            "val": scores(predict(lb, va_b.X), va_b),
            "pano": scores(predict(lb, te_bf.X), te_bf),
            "im2gps": scores(predict(lb, im2[kind].X), im2[kind]),
            "pano_views": scores(predict(lb, te_b.X), te_b),
            "nn1": nn1_of[kind],  # the 1-NN of the bundle's own features
        }
        im = r["im2gps"]
        r["goals"] = {
            "pano_prior": r["pano"]["geoguessr"] / prior["pano"]["geoguessr"],
            "pano_1nn": r["pano"]["geoguessr"] / r["nn1"]["pano"]["geoguessr"],
            "im_prior": im["geoguessr"] / prior["im"]["geoguessr"],
            "im_1nn": im["geoguessr"] / r["nn1"]["im"]["geoguessr"],
            "im_cov68": im["cov68"],
            "im_cov90": im["cov90"],
            "im_expected_gap": im["expected"] / im["geoguessr"] - 1,
        }
        add(
            f"**{label}** ({b.backbone_name})",
            r["val"],
            r["pano"],
            im,
            f"{ms_note[kind]}; {cal.guess} answer, calibration {cal.method}",
        )
        return r

    shipped = ModelBundle.load(_builtin_dir("geoscout-lite"))
    calibration = shipped.calibration
    judged_bundles = [judged(shipped, "shipped geoscout-lite")]
    for i, folder in enumerate(compare):
        label = compare_labels[i] if i < len(compare_labels) else f"candidate {folder}"
        judged_bundles.append(judged(ModelBundle.load(folder), label))
    final = judged_bundles[0]
    log(
        f"chosen on val: guess {best_rule}; shipped calibration {calibration.method}, T = {calibration.temperature:.3f}"
    )

    elapsed = time.perf_counter() - t0
    settings = {
        "extra_verdict": extra_verdict,
        "features": best_kind,
        "panoramas": "fused" if fused_wins else "views",
        "guess": best_rule,
        "calibration": calibration,
        "final": final,
        "judged": judged_bundles,
        "prior": prior,
        "goals": final["goals"],
        "n_pano": n_pano,
        "shipped_backbone": shipped.backbone_name,
    }
    return _markdown(rows, settings, v, te_f, im2["mean"], elapsed, seed, ms), settings


def _markdown(rows, s, v, te_f, im, elapsed, seed, ms) -> str:
    def cell(m, k="geoguessr"):
        return "—" if m is None else (f"{m[k]:.0f}" if k in ("geoguessr", "median_km") else f"{100 * m[k]:.1f}")

    n_tr = int((v.split == "train").sum())
    n_va = int((v.split == "val").sum())
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/ablation.py --seed {seed} --world-only"
        + "".join(f" --compare DIR{i + 1}" for i in range(len(s["judged"]) - 1))
        + "`"
        + "".join(f" (DIR{i}: {r['label']})" for i, r in enumerate(s["judged"]) if i)
        + f" (world section: {elapsed / 60:.1f} min on 2 shared CPU "
        "cores, from the feature cache of `python benchmarks/feature_cache.py`). EfficientNet-Lite2 (ImageNet weights) "
        "on ONNX Runtime; semantic cells; classifier with haversine label smoothing (τ = 75 km), geoscout-lite's recipe.",
        f"Data: {len(v)} views: streetview-croatia (train only), streetview-world, streetview-strips (5 views each), "
        f"osv5m-sample, streetview-panoramas ({s['n_pano']} of 1,374 panoramas embedded, 4 views each). Splits by ~1 km "
        f"area: panoramas 70 / 10 / 20 % train / val / test, the other world sets 90 / 10 % train / val; {n_tr} training "
        f"and {n_va} validation views. Everything is chosen on the validation split (world-wide, no Croatia); "
        f"the held-out fifth of the panoramas (n = {len(te_f)}, views fused) and im2gps (n = {len(im)}) are only reported.",
        "",
        "| method | val GeoGuessr | panoramas GeoGuessr | panoramas median km | im2gps GeoGuessr | im2gps median km | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r, note in rows:
        lines.append(
            f"| {name} | {cell(r['val'])} | {cell(r['pano'])} | {cell(r['pano'], 'median_km')} | "
            f"{cell(r['im2gps'])} | {cell(r['im2gps'], 'median_km')} | {note} |"
        )
    c = s["calibration"]
    lines += [
        "",
        f"Best on the validation split: features **{s['features']}**, panoramas **{s['panoramas']}**"
        + "".join(f"; {x}" for x in s["extra_verdict"])
        + "."
        + f" On those features (backbone `{KIND_BACKBONE[s['features']]}`, panoramas as views) the guess rule "
        f"**{s['guess']}** won on the validation split. The rows above are untempered (the answer is chosen under the "
        "model's own distribution), except the bold rows, which evaluate bundles themselves (their backbone's "
        f"features, answer rule and calibration as they ship); the shipped one runs `{s['shipped_backbone']}`. The "
        f"shipped bundle's calibration (method **{c.method}**, fitted on {c.fitted_on}; chosen among global / "
        "novelty / Mondrian by `python benchmarks/train_default.py`, see its model card) states the radii and "
        "expected scores below.",
        "",
        "**Calibration of the judged bundles** (stated radius coverage; expected vs scored GeoGuessr)",
        "",
        "| model | test set | n | 50 % radius holds | 68 % radius holds | 90 % radius holds | expected score | scored |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["judged"]:
        for key, label in (
            ("val", "validation split (single views)"),
            ("pano", "panoramas, views fused"),
            ("pano_views", "panoramas, single views"),
            ("im2gps", "im2gps"),
        ):
            m = r[key]
            lines.append(
                f"| {r['label']} | {label} | {m['n']} | {100 * m['cov50']:.0f} % | {100 * m['cov68']:.1f} % | "
                f"{100 * m['cov90']:.1f} % | {m['expected']:.0f} | {m['geoguessr']:.0f} |"
            )

    def ok(good: bool) -> str:
        return "met" if good else "**NOT met**"

    for r in s["judged"]:
        g, f, nn = r["goals"], r, r["nn1"]
        lines += [
            "",
            f"**Goals** (issue 16) of the {r['label']} ({r['backbone']}) vs baselines on the same photos (1-NN on its "
            f"own features, {r['kind']}):",
            "",
            f"- held-out panoramas: {f['pano']['geoguessr']:.0f} vs prior {s['prior']['pano']['geoguessr']:.0f} = "
            f"{g['pano_prior']:.2f}x (goal >= {GOAL_PRIOR}x: {ok(g['pano_prior'] >= GOAL_PRIOR)}); vs 1-NN "
            f"{nn['pano']['geoguessr']:.0f} = {g['pano_1nn']:.2f}x (goal >= {GOAL_1NN}x: {ok(g['pano_1nn'] >= GOAL_1NN)})",
            f"- im2gps: {f['im2gps']['geoguessr']:.0f} vs prior {s['prior']['im']['geoguessr']:.0f} = "
            f"{g['im_prior']:.2f}x, vs 1-NN {nn['im']['geoguessr']:.0f} = {g['im_1nn']:.2f}x (goal: above both: "
            f"{ok(min(g['im_prior'], g['im_1nn']) > 1.0)})",
            f"- im2gps calibration: 68 % radius holds {100 * g['im_cov68']:.1f} % (goal 60-76 %: "
            f"{ok(0.60 <= g['im_cov68'] <= 0.76)}), 90 % radius {100 * g['im_cov90']:.1f} % (goal 84-95 %: "
            f"{ok(0.84 <= g['im_cov90'] <= 0.95)}), expected score {f['im2gps']['expected']:.0f} vs scored "
            f"{f['im2gps']['geoguessr']:.0f} ({100 * g['im_expected_gap']:+.1f} %; goal within 15 %: "
            f"{ok(abs(g['im_expected_gap']) <= 0.15)})",
        ]
    lines.append("")
    lines += [
        f"ONNX forward cost per photo (batch of 8, median of 3, same run): Lite2 {ms['lite2']:.0f} ms, Lite0 "
        f"{ms['lite0']:.0f} ms, Lite2 multi-output (mean + GeM + stages) {ms.get('lite2-multi', float('nan')):.0f} ms; "
        f"effnet-lite2-stages (final + stage 3-6 pooling, one pass; the candidates' backbone) {ms['lite2-stages']:.0f} ms; "
        f"Lite0 + Lite2 together would cost {ms['lite0'] + ms['lite2']:.0f} ms; flip TTA doubles Lite2's.",
        "",
    ]
    # the calibration methods compared when the shipped model was trained, as its card states them
    from geoscout.locator import _builtin_dir

    card = (_builtin_dir("geoscout-lite") / "MODEL_CARD.md").read_text(encoding="utf-8")
    m = re.search(r"## Calibration methods[^\n]*\n(.*?)(?=\n## |\Z)", card, re.S)
    if m:
        lines += [
            "**Calibration methods** compared by `python benchmarks/train_default.py --out "
            "src/geoscout/models/geoscout-lite` (copied from the shipped model card; chosen by the validation "
            "criterion, never by the test sets):",
            "",
            m.group(1).strip().split("\n\nGeoGuessr = mean")[0],
            "",
        ]
    return "\n".join(lines)
