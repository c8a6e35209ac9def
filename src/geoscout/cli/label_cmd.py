"""`geoscout label`: add country / admin-1 / city / climate / elevation / density / month / cell labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app, fail
from ._options import Quiet


@app.command("label")
def label_command(
    dataset: Path = typer.Argument(..., help="A geoscout dataset folder, a folder with manifest.csv, or a CSV file."),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Write the labelled dataset to this new folder instead (needed when DATASET is read-only or a CSV).",
    ),
    aux_dir: Path = typer.Option(
        None,
        "--aux-dir",
        help="Folder with the aux rasters (Koeppen-Geiger-ASCII.txt, "
        "etopo20*.gz, gpw_v4_*.asc; e.g. ../shared/geo). "
        "Default: download them once into the geoscout cache.",
    ),
    no_aux: bool = typer.Option(False, "--no-aux", help="Skip climate, elevation and population density."),
    cells: str = typer.Option(
        "", "--cells", help="Comma-separated partition specs to add as cell:<spec> columns, e.g. geohash:3,country."
    ),
    coast_km: float = typer.Option(
        2.0,
        "--coast-km",
        min=0.0,
        help="Points this close (km) to a country's coast or border count as in it (0: strict polygons).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail when an aux file is missing instead of skipping that label."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset at -o OUT."),
    quiet: Quiet = False,
) -> None:
    """Label every image of DATASET from its coordinates: written into the manifest (atomically) or into -o OUT."""
    import warnings

    from rich.console import Console

    from geoscout.data import load_dataset
    from geoscout.labels import label_dataset

    out_root = _check_options(dataset, output, aux_dir, no_aux, force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress = False if quiet else None  # None: bars on stderr only when it is a terminal
        ds = load_dataset(dataset, progress=progress)
        if out_root is None and not ds.writable:
            raise fail(f"{dataset} is read-only (or a CSV imported in memory): pass -o OUT to write a labelled copy")
        spec_list = [s.strip() for s in cells.split(",") if s.strip()]
        ds = label_dataset(
            ds,
            aux_dir=aux_dir,
            aux=not no_aux,
            cells=spec_list,
            coast_km=coast_km,
            strict_aux=strict,
            progress=progress,
        )
    for w in caught:
        if str(w.message).startswith("label:"):  # reported from the label report below
            continue
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
    report = ds.label_report
    ds, where = _write(ds, out_root, force)
    _print_summary(Console(highlight=False, soft_wrap=True, stderr=False), ds, report, where)


def _check_options(dataset: Path, output: Path | None, aux_dir: Path | None, no_aux: bool, force: bool) -> Path | None:
    """Refuse what cannot work before any labelling; the resolved ``-o`` folder (``None``: label in place)."""
    from geoscout.data.schema import MANIFEST_NAME

    if not dataset.exists():
        raise fail(f"{dataset}: no such file or folder")
    if aux_dir is not None and no_aux:
        raise fail("--aux-dir and --no-aux contradict each other; give one")
    if aux_dir is not None and not aux_dir.is_dir():
        raise fail(f"--aux-dir {aux_dir}: no such folder")
    out_root = output.expanduser().resolve() if output is not None else None
    if out_root is not None and (out_root / MANIFEST_NAME).exists() and not force:
        raise fail(f"{out_root} already holds a dataset; choose another -o folder or pass --force")
    return out_root


def _write(ds: Any, out_root: Path | None, force: bool) -> tuple[Any, Path]:
    """The labelled dataset saved in place, or as a new dataset at ``out_root`` (images stay where they are)."""
    from geoscout.data import Dataset

    if out_root is not None and out_root != ds.root:
        frame = ds.frame.copy()
        frame["path"] = [p.as_posix() for p in ds.image_paths()]  # absolute: the images stay where they are
        ds = Dataset.create(out_root, frame, overwrite=force)
        return ds, ds.manifest_path
    return ds, ds.save()


def _print_summary(console: Any, ds: Any, report: Any, where: Path) -> None:
    """What was labelled (stdout), and what was skipped or left unlabelled (stderr)."""
    df = ds.frame
    n = len(df)
    has = df["country"].notna()
    console.print(f"[bold]labelled {n} image(s)[/bold] -> {where}")
    console.print(f"columns: {', '.join(report.columns)}")
    top = df.loc[has, "country"].value_counts().head(8)
    console.print(
        f"countries: {int(df.loc[has, 'country'].nunique())} "
        f"({', '.join(f'{k} {v}' for k, v in top.items())}); no country: {int((~has).sum())}"
    )
    if "climate" in report.columns:
        console.print(f"climate: {int(df['climate'].notna().sum())} labelled")
    if "elevation_m" in report.columns:
        console.print(f"elevation: median {df['elevation_m'].median():.0f} m")
    for col, why in report.skipped.items():
        typer.secho(f"skipped {col}: {why}", fg=typer.colors.YELLOW, err=True)
    if report.invalid_rows:
        typer.secho(
            f"{len(report.invalid_rows)} row(s) without valid coordinates were left unlabelled",
            fg=typer.colors.YELLOW,
            err=True,
        )
