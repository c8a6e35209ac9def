"""`geoscout import`: a CSV, a folder with manifest.csv, or a folder of geotagged photos -> a dataset."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from ._app import app, fail
from ._options import Quiet


class OpenFormat(StrEnum):
    osv5m = "osv5m"
    mp16 = "mp16"
    hf = "hf"


class ManifestFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command("import")
def import_command(
    src: Path = typer.Argument(
        ...,
        help="A CSV (path,lat,lon,...), a folder with manifest.csv, a folder of photos "
        "with EXIF GPS, or a geoscout dataset folder (to split / export it).",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Dataset folder to write (manifest.parquet, problems.csv, images/)."
    ),
    columns: str = typer.Option(
        None, "--columns", help="Map CSV columns: lat=latitude,lon=lng,path=file,heading=yaw ..."
    ),
    copy: bool = typer.Option(
        False, "--copy", help="Copy the images into OUT/images/ (default: reference them in place)."
    ),
    split: str = typer.Option(
        None, "--split", help="Add a 'split' column: train,val,test fractions, e.g. 0.8,0.1,0.1 (by location)."
    ),
    spatial_block: float = typer.Option(
        None, "--spatial-block", min=0.0, help="Split by lat/lon blocks of DEG degrees instead of by location."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split."),
    fmt: ManifestFormat = typer.Option(
        ManifestFormat.parquet, "--format", help="csv: also write OUT/manifest.csv next to manifest.parquet."
    ),
    export_csv: Path = typer.Option(None, "--export-csv", help="Also write the imported manifest as a CSV file here."),
    workers: int = typer.Option(
        None, "--workers", min=1, max=64, help="Threads for hashing and decoding (default: up to 4)."
    ),
    from_: OpenFormat = typer.Option(
        None,
        "--from",
        help="Read SRC as an open dataset: osv5m (train/test.csv + images/), mp16 (IMG_ID,LAT,LON CSV), "
        "hf (datasets save_to_disk folder or Parquet shards). Streams with bounded memory.",
    ),
    only_split: str = typer.Option(
        None, "--only-split", help="With --from: import only this split (train, val, test)."
    ),
    images: Path = typer.Option(None, "--images", help="With --from mp16: the folder the IMG_ID paths are under."),
    limit: int = typer.Option(None, "--limit", min=1, help="With --from: stop after this many rows."),
    chunk_size: int = typer.Option(4096, "--chunk-size", min=1, help="With --from: rows per streamed chunk."),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse a CSV with any unreadable row (default: report such rows and import the rest)."
    ),
    quiet: Quiet = False,
) -> None:
    """Import geotagged photos into a geoscout dataset; every skipped photo is reported with its reason."""
    from rich.console import Console

    progress = False if quiet else None  # None: a bar on stderr only when it is a terminal
    if from_ is not None:
        if split or columns or copy or export_csv is not None:
            raise fail(
                "--from keeps the publisher's columns and splits; run `geoscout import OUT -o OUT --split ...` "
                "afterwards to re-split, and drop --columns/--copy/--export-csv"
            )
        from .import_open import run_open_import

        run_open_import(
            from_.value,
            src,
            output,
            only_split=only_split,
            images=images,
            limit=limit,
            workers=workers,
            chunk_size=chunk_size,
            progress=progress,
        )
        return
    if only_split or images is not None or limit is not None:
        raise fail("--only-split, --images and --limit apply to --from osv5m|mp16|hf")
    _check_local_options(src, output, export_csv, split, spatial_block, copy)

    console = Console(highlight=False, soft_wrap=True)
    report, what = _import_source(src, output, columns, copy, workers, strict, progress)
    _finish_import(console, report, what, output, (split, spatial_block, seed), fmt, export_csv)


def _check_local_options(
    src: Path, output: Path | None, export_csv: Path | None, split: str | None, spatial_block: float | None, copy: bool
) -> None:
    """Refuse option combinations of a local import (CSV, folder, dataset) that cannot work, saying what to pass."""
    from geoscout.data.schema import MANIFEST_NAME

    if output is None and export_csv is None and not (src.is_dir() and (src / MANIFEST_NAME).is_file()):
        raise fail("give an output dataset folder with -o OUT (or --export-csv FILE to get a CSV only)")
    if spatial_block is not None and not split:
        raise fail("--spatial-block needs --split, e.g. --split 0.8,0.1,0.1 --spatial-block 1")
    if copy and output is None:
        raise fail("--copy needs -o OUT: the images are copied into OUT/images/")
    if not src.exists():
        raise fail(f"{src}: no such file or folder")


def _finish_import(
    console: Any,
    report: Any,
    what: str,
    output: Path | None,
    splitting: tuple[str | None, float | None, int],
    fmt: ManifestFormat,
    export_csv: Path | None,
) -> None:
    """Print the summary and the problems of an import, then split and write what was asked (``splitting``:
    ``--split``, ``--spatial-block``, ``--seed``); refuse an import of nothing."""
    split, spatial_block, seed = splitting
    ds = report.dataset
    n = report.n_imported
    console.print(f"[bold]{what}[/bold]: {n} of {report.total} image(s) imported, {len(report.problems)} problem(s)")
    _print_problems(console, report)
    if n == 0:
        if output is not None and report.problems:
            console.print(f"problems written to {output / 'problems.csv'}")
        raise fail("nothing could be imported; see the problems above")
    if split:
        _split_and_save(console, ds, split, spatial_block, seed)
    if ds.writable:
        console.print(f"dataset: {ds.manifest_path}")
        if fmt == ManifestFormat.csv:
            console.print(f"csv: {ds.to_csv(ds.root / 'manifest.csv')}")
        if report.problems:
            console.print(f"problems: {ds.root / 'problems.csv'}")
    if export_csv is not None:
        console.print(f"csv: {ds.to_csv(export_csv)}")
        if report.problems and output is None:
            pfile = export_csv.with_name(export_csv.stem + ".problems.csv")
            console.print(f"problems: {report.write_problems(pfile)}")


def _import_source(
    src: Path,
    output: Path | None,
    columns: str | None,
    copy: bool,
    workers: int | None,
    strict: bool,
    progress: bool | None,
) -> tuple[Any, str]:
    """Open a dataset folder (re-rooted under ``output``), or import a CSV / a folder of photos: ``(report, what)``."""
    from geoscout.data import Dataset, ImportReport, import_csv, import_exif_folder
    from geoscout.data.schema import MANIFEST_NAME

    if src.is_dir() and (src / MANIFEST_NAME).is_file():
        ds = Dataset.open(src)
        if output is not None and output.expanduser().resolve() != ds.root:
            frame = ds.frame.copy()
            frame["path"] = [p.as_posix() for p in ds.image_paths()]
            out_root = output.expanduser().resolve()
            frame["path"] = [_rel(p, out_root) for p in frame["path"]]
            ds = Dataset.create(out_root, frame, overwrite=True)
        return ImportReport(ds, [], len(ds)), f"opened dataset {ds.root}"
    if src.is_dir() and (src / "manifest.csv").is_file():
        report = import_csv(
            src / "manifest.csv",
            output,
            columns=columns,
            copy=copy,
            workers=workers,
            strict=strict,
            progress=progress,
        )
        return report, f"imported {src / 'manifest.csv'}"
    if src.is_dir():
        if columns:
            raise fail("--columns applies to CSV input; a folder of photos is read from EXIF")
        report = import_exif_folder(src, output, copy=copy, workers=workers, progress=progress)
        return report, f"imported photos (EXIF GPS) from {src}"
    report = import_csv(src, output, columns=columns, copy=copy, workers=workers, strict=strict, progress=progress)
    return report, f"imported {src}"


def _print_problems(console: Any, report: Any) -> None:
    """A table of the skipped photos by reason, with one example each."""
    from rich.table import Table

    if not report.problems:
        return
    table = Table(title="problems by reason", show_lines=False)
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_column("example")
    for kind, count in report.problem_counts().items():
        ex = next(p for p in report.problems if p.kind == kind)
        table.add_row(kind, str(count), str(ex))
    console.print(table)


def _split_and_save(console: Any, ds: Any, split: str, spatial_block: float | None, seed: int) -> None:
    """Assign train/val/test by location (or spatial blocks), print the sizes, save a writable dataset."""
    from geoscout.data import parse_fractions, split_dataset
    from geoscout.errors import GeoscoutError

    try:
        fractions = parse_fractions(split)
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    method = "spatial" if spatial_block is not None else "location"
    try:
        ds.frame["split"] = split_dataset(
            ds,
            fractions=fractions,
            seed=seed,
            method=method,
            block_deg=spatial_block if spatial_block is not None else 1.0,
        ).to_numpy()
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    counts = ds.frame["split"].value_counts()
    nloc = ds.frame.groupby("split")["location_id"].nunique()
    by = f"blocks of {spatial_block:g} deg" if method == "spatial" else "location"
    console.print(
        "split by "
        + by
        + ": "
        + ", ".join(
            f"{s} {int(counts.get(s, 0))} images / {int(nloc.get(s, 0))} locations" for s in ("train", "val", "test")
        )
    )
    if ds.writable:
        ds.save()


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path
