"""``geoscout evaluate``: score a predictions file against a dataset's coordinates."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from ._app import app, fail
from ._options import Quiet


class _Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class _Unit(StrEnum):
    image = "image"
    location = "location"


@app.command("evaluate")
def evaluate_command(
    predictions: Path = typer.Option(
        ..., "--predictions", "-p", help="Predictions file (.jsonl, .json or .csv), e.g. from `geoscout locate`."
    ),
    truth: str = typer.Option(
        ...,
        "--truth",
        "-t",
        help="Ground truth: a geoscout dataset folder, a folder with manifest.csv, or a CSV (path,lat,lon).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Folder for report.json, report.md, per_image.csv, error_cdf.png, error_map.png."
    ),
    fmt: _Format = typer.Option(
        _Format.table, "--format", "-f", help="What to print: a table, the JSON report, or Markdown."
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", "-k", min=1, help="Use at most K candidates for top-k accuracy (default: all)."
    ),
    no_places: bool = typer.Option(
        False, "--no-places", help="Skip country / admin-1 accuracy (no reverse geocoding)."
    ),
    unit: _Unit = typer.Option(
        _Unit.image, "--unit", help="Score each image, or each location (one answer per panorama, by location_id)."
    ),
    min_matched: float = typer.Option(
        0.1,
        "--min-matched",
        min=0.0,
        max=1.0,
        help="Fail when fewer than this share of the predictions match a truth image (none matching always fails).",
    ),
    quiet: Quiet = False,
    strict: bool = typer.Option(
        False, "--strict", help="Refuse a predictions file with any malformed line (default: skip and list them)."
    ),
) -> None:
    """Distance accuracies (1/25/200/750/2500 km), GeoGuessr score, country and admin-1 accuracy, coverage."""
    from geoscout.errors import GeoscoutError
    from geoscout.evaluate import evaluate

    if not predictions.is_file():
        raise fail(f"--predictions {predictions}: no such file")
    progress = False if quiet else None  # None: bars on stderr only when it is a terminal
    try:
        report = evaluate(
            predictions,
            truth,
            k=top_k,
            places=not no_places,
            unit=unit.value,
            min_matched=min_matched,
            progress=progress,
            strict=strict,
        )
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    bad = report.bad_prediction_rows
    if bad:
        typer.echo(f"skipped {len(bad)} malformed line(s) of {predictions} (--strict refuses the file):", err=True)
        for line in bad[:10]:
            typer.echo(f"  {line}", err=True)
        if len(bad) > 10:
            typer.echo(f"  ... and {len(bad) - 10} more (all in the JSON report's bad_prediction_rows)", err=True)
    if output is not None:
        report.save(output, progress=progress)
    if fmt is _Format.json:
        typer.echo(report.to_json())
    elif fmt is _Format.markdown:
        typer.echo(report.to_markdown())
    else:
        _print_table(report)
    if output is not None:
        typer.echo(f"report written to {output}", err=True)
    if report.metrics["n_answered"] == 0:
        raise fail("no prediction answered a truth image (every matched prediction failed); nothing was scored", 1)


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from geoscout.evaluate import THRESHOLD_NAMES, accuracy_key

    m = report.metrics

    def pct(x: float | None) -> str:
        return "–" if x is None or x != x else f"{100 * x:.1f}%"

    def km(x: float | None) -> str:
        return "–" if x is None or x != x else f"{x:,.1f}"

    # metrics as rows, answer sets as columns: fits an 80-column terminal with any number of thresholds
    unit = m.get("unit", "image")
    cols = [("top-1", "acc", m["n"])]
    k = m.get("top_k", 1)
    if k > 1:
        cols.append((f"best of top-{k}", f"top{k}_acc", m["n"]))
    if m["n_answered"] < m["n_truth"]:
        cols.append(("all truth¹", "acc_all", m["n_truth"]))
    t = Table(title=f"geoscout evaluation: {report.name}", title_justify="left")
    t.add_column("metric")
    for head, _, _ in cols:
        t.add_column(head, justify="right")
    t.add_row(f"{unit}s scored", *[f"{n:,}" for _, _, n in cols], end_section=True)
    for th in report.thresholds:
        t.add_row(
            f"within {th:g} km ({THRESHOLD_NAMES.get(th, '')})".replace(" ()", ""),
            *[pct(m.get(accuracy_key(th, prefix))) for _, prefix, _ in cols],
        )
    med_k = m.get(f"top{k}_median_km") if k > 1 else None
    t.add_row("median error (km)", km(m["median_km"]), *([km(med_k)] if k > 1 else []))
    t.add_row("mean error (km)", km(m["mean_km"]))
    t.add_row("GeoGuessr (mean)", "–" if m["geoguessr"] != m["geoguessr"] else f"{m['geoguessr']:,.0f}")
    if "country_acc" in m:
        t.add_row("country accuracy", pct(m.get("country_acc")))
        t.add_row("admin-1 accuracy", pct(m.get("admin1_acc")))
    console = Console()
    console.print(t)
    if m["n_answered"] < m["n_truth"]:
        console.print(f"¹ every truth {unit} counts; unanswered ones count as misses")
    console.print(
        f"coverage {pct(m['coverage'])}: {m['n_answered']} answered of {m['n_truth']} truth {m.get('unit', 'image')}s; "
        f"failed {m['n_failed']}, missing {m['n_missing']}, predictions without truth {m['n_unmatched']}"
        + (
            f"; {m['n_truth_at_sea']} truth points at sea left out of country accuracy"
            if m.get("n_truth_at_sea")
            else ""
        )
    )
    if m.get("n_radius"):
        console.print(
            f"calibration: true place within the stated 68% radius for {pct(m['radius_coverage'])} of "
            f"{m['n_radius']} images (calibrated: ~68%); expected GeoGuessr {m['expected_geoguessr']:,.0f}, "
            f"scored {m['geoguessr_on_expected']:,.0f}"
        )
