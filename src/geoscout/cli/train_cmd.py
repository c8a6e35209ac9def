"""``geoscout train``: embed datasets, fit a partition and a head, write a model bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ._app import app, fail
from ._options import Device, Precision, Quiet


@app.command("train")
def train(
    datasets: list[Path] = typer.Argument(
        ..., help="Dataset folders (manifest.parquet or manifest.csv) or CSV files; several are combined."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output bundle directory (replaced atomically if it exists)."),
    backbone: str = typer.Option("effnet-lite2", "--backbone", "-b", help="Backbone registry name."),
    cells: str = typer.Option(
        "semantic", "--cells", "-c", help="Partition spec: semantic, country, geohash:2, h3:2, grid:5, ..."
    ),
    head: str = typer.Option("classifier", "--head", help="Head: classifier, hybrid, multitask, knn, contrastive."),
    tau: float = typer.Option(75.0, "--tau", help="Haversine label-smoothing temperature in km (0 = one-hot)."),
    epochs: int = typer.Option(30, "--epochs", help="Maximum epochs (early stopping on validation GeoGuessr score)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (split, initialisation, shuffling)."),
    aux_dir: Path | None = typer.Option(
        None, "--aux-dir", help="Folder with the auxiliary rasters (multitask head), e.g. ../shared/geo."
    ),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of locations held out for validation."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Extra head parameter KEY=VALUE (JSON value), repeatable."
    ),
    aux_column: list[str] = typer.Option(
        [],
        "--aux-column",
        help="Multitask head: a manifest column as an auxiliary task, COLUMN:class or COLUMN:value (repeatable); "
        "'osv5m' adds OSV-5M's land_cover, climate_code, soil, drive_side, road_index, dist_sea.",
    ),
    store_dir: Path | None = typer.Option(None, "--store-dir", help="Where embedding stores go (default: the cache)."),
    no_retrieval: bool = typer.Option(
        False, "--no-retrieval", help="Do not store training embeddings for retrieval refinement."
    ),
    quiet: Quiet = False,
    device: Device = "cpu",
    precision: Precision = "auto",
    guess: str = typer.Option(
        "expected-score", "--guess", help="The model's answer rule: expected-score, mode or median."
    ),
    no_calibration: bool = typer.Option(
        False, "--no-calibration", help="Do not fit temperature and radius factors on the validation split."
    ),
    calibration: str = typer.Option(
        "global:nll",
        "--calibration",
        help="How to calibrate on the validation split, METHOD:OBJECTIVE. METHOD: global, novelty (temperature "
        "grows with a photo's distance to the training embeddings), mondrian (radius factors per novelty bin) or "
        "novelty+mondrian; OBJECTIVE: nll (likelihood of the true cells) or score (expected vs achieved GeoGuessr).",
    ),
) -> None:
    """Train a geolocation model and write a bundle usable by `geoscout locate -m BUNDLE`."""
    import functools
    import shlex
    import sys

    from geoscout.calibration import CALIBRATION_METHODS, TEMPERATURE_OBJECTIVES
    from geoscout.devices import resolve_device, resolve_precision
    from geoscout.errors import GeoscoutError
    from geoscout.heads import TrainingOptions
    from geoscout.locator import calibrate
    from geoscout.train import train_model, training_options

    cal_method, _, cal_objective = calibration.partition(":")
    cal_objective = cal_objective or "nll"
    if cal_method not in CALIBRATION_METHODS or cal_objective not in TEMPERATURE_OBJECTIVES:
        raise fail(
            f"--calibration {calibration!r}: expected METHOD[:OBJECTIVE] with METHOD one of "
            f"{', '.join(CALIBRATION_METHODS)} and OBJECTIVE one of {', '.join(TEMPERATURE_OBJECTIVES)}"
        )
    if guess not in ("expected-score", "mode", "median"):
        raise fail(f"--guess {guess!r}: choose expected-score, mode or median")

    try:
        resolve_precision(precision, resolve_device(device))
    except GeoscoutError as exc:
        raise fail(str(exc)) from None

    params = _head_params(param, aux_column, head)
    trains = training_options(head) is not None  # a head without a network refuses training --params, as before
    training = {k: params.pop(k) for k in list(params) if trains and k in TrainingOptions.fields()}
    # the head's training options, built once: --epochs, --seed and --param epochs=/lr=/...
    options = training_options(head, **{"epochs": epochs, "seed": seed, **training})  # --param wins, as before
    bundle = train_model(
        [str(d) for d in datasets],
        backbone=backbone,
        cells=cells,
        head=head,
        out=out,
        tau=tau,
        aux_dir=aux_dir,
        val_fraction=val_fraction,
        seed=seed,  # the split's seed; the head's is options.seed
        options=options,
        head_params=params or None,
        store_dir=store_dir,
        retrieval=not no_retrieval,
        progress=not quiet,
        device=device,
        precision=precision,
        guess=guess,
        calibrate=None if no_calibration else functools.partial(calibrate, method=cal_method, objective=cal_objective),
        command=" ".join(["geoscout", *(shlex.quote(a) for a in sys.argv[1:])]),
    )
    _print_summary(bundle, out)


def _head_params(param: list[str], aux_column: list[str], head: str) -> dict[str, Any]:
    """The head parameters of ``--param KEY=VALUE`` (a JSON value, else the text) and ``--aux-column``
    (COLUMN:class, COLUMN:value or osv5m: the multitask head's ``aux_columns``)."""
    params: dict[str, Any] = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--param {item!r}: expected KEY=VALUE, e.g. --param hidden=1024")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    if aux_column:
        from geoscout.data.open_datasets import OSV5M_AUX_TASKS

        cols: dict[str, str] = dict(params.get("aux_columns") or {})
        for item in aux_column:
            if item == "osv5m":
                cols.update(OSV5M_AUX_TASKS)
                continue
            name, _, kind = item.rpartition(":")
            if not name or kind not in ("class", "value"):
                raise fail(f"--aux-column {item!r}: expected COLUMN:class or COLUMN:value (or osv5m)")
            cols[name] = kind
        params["aux_columns"] = cols
        if head != "multitask":
            raise fail("--aux-column needs --head multitask")
    return params


def _print_summary(bundle: Any, out: Path) -> None:
    """One line on what was trained, and the validation metrics when there is a validation split."""
    from geoscout.train import describe_cells

    s = bundle.training
    typer.echo(
        f"wrote {out}: {s['head']} head on {s['n_train']} images ({s['partition']}: {describe_cells(s)}), "
        f"{s['total_seconds']:.0f} s"
    )
    m = s.get("val_metrics")
    if m:
        typer.echo(
            f"validation ({m['n']} images): median {m['median_km']:.0f} km, GeoGuessr {m['geoguessr']:.0f}, "
            f"acc@25km {m['acc@25km']:.1%}, acc@750km {m['acc@750km']:.1%}"
        )
