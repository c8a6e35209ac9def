"""`geoscout import --from osv5m|mp16|hf SRC -o OUT`: stream an open dataset into a geoscout dataset."""

from __future__ import annotations

from pathlib import Path

from ._app import fail


def run_open_import(
    fmt: str,
    src: Path,
    output: Path | None,
    *,
    only_split: str | None,
    images: Path | None,
    limit: int | None,
    workers: int | None,
    chunk_size: int,
    progress: bool | None = None,
) -> None:
    """Import with a progress bar, print the problems by reason, exit 1 when nothing (or less than half) imported."""
    from rich.console import Console
    from rich.table import Table

    from geoscout.data.open_datasets import import_open_dataset
    from geoscout.errors import GeoscoutError

    if output is None:
        raise fail(f"--from {fmt} needs an output dataset folder: -o OUT")
    if not src.exists():
        raise fail(f"{src}: no such file or folder")
    try:
        rep = import_open_dataset(
            fmt,
            src,
            output,
            split=only_split,
            images=images,
            workers=workers,
            chunk_size=chunk_size,
            limit=limit,
            progress=progress,
        )
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    out = Console(highlight=False, soft_wrap=True)
    out.print(
        f"[bold]imported {fmt} from {src}[/bold]: {rep.n_imported} of {rep.total} row(s), {rep.n_problems} problem(s)"
    )
    if rep.n_problems:
        table = Table(title="problems by reason")
        table.add_column("reason")
        table.add_column("count", justify="right")
        table.add_column("example")
        for kind, count in rep.problem_counts().items():
            ex = next((p for p in rep.problems if p.kind == kind), None)
            table.add_row(kind, str(count), "" if ex is None else str(ex))
        out.print(table)
        out.print(f"problems: {rep.root / 'problems.csv'}")
    if rep.n_imported == 0:
        raise fail("nothing could be imported; see the problems above", code=1)
    out.print(f"dataset: {rep.manifest_path} (columns: {', '.join(rep.columns)})")
    if rep.n_imported * 2 < rep.total:
        raise fail(f"only {rep.n_imported} of {rep.total} rows imported; see {rep.root / 'problems.csv'}", code=1)
