"""`geoscout embed`: turn every image of a dataset into a vector (resumable, float16 store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app, fail
from ._options import Device, Precision, Quiet, Runtime, Weights, check_runtime


@app.command("embed")
def embed_command(
    dataset: Path = typer.Argument(
        ..., help="A dataset folder (manifest.parquet), a folder with manifest.csv, or a CSV."
    ),
    backbone: str = typer.Option(
        "effnet-lite2", "--backbone", "-b", help="Backbone name (see `geoscout list backbones`)."
    ),
    out: Path = typer.Option(
        None, "--output", "-o", help="Store folder (default: DATASET/embeddings/BACKBONE, or the cache)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass (and per commit)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Decoding threads (0 = decode in the main thread)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: mean of the image and its mirror."),
    runtime: Runtime = "auto",
    weights: Weights = None,
    pool_panoramas: bool = typer.Option(
        False, "--pool-panoramas", help="Also write the mean vector per location_id (panoramas.npz)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a store made with another backbone/options."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try images recorded as failures again."),
    limit: int = typer.Option(None, "--limit", min=1, help="Embed at most this many new images."),
    quiet: Quiet = False,
    ray: str = typer.Option(
        None,
        "--ray",
        help="Embed on Ray: auto (this machine's cluster), HOST:PORT / ray://HOST:10001, or local (needs geoscout[ray]).",
    ),
    ray_workers: int = typer.Option(
        2,
        "--ray-workers",
        min=1,
        help="Ray actors, each loading the backbone once (one GPU each when the cluster has GPUs).",
    ),
    ray_gpus: float = typer.Option(
        None,
        "--ray-gpus",
        min=0.0,
        help="GPUs per Ray actor (e.g. 1, or 0.5 to put two actors on a GPU; 0 = CPU actors). Default: one each "
        "when the cluster has GPUs.",
    ),
    device: Device = "cpu",
    precision: Precision = "auto",
) -> None:
    """Embed a dataset's images with a backbone; a re-run only embeds what is missing."""
    from geoscout.data import load_dataset
    from geoscout.embeddings import embed_dataset, write_pooled

    _check_options(runtime, ray, ray_gpus, device, precision)
    ds = load_dataset(dataset, warn=False)  # a CSV's bad rows are recorded in the store's failures, all of them
    # the same options on this machine and on Ray
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "tta": tta,
        "progress": not quiet,
        "overwrite": overwrite,
        "retry_failed": retry_failed,
        "runtime": runtime,
        "weights": weights,
        "limit": limit,
        "precision": precision,
    }
    if ray:
        from geoscout.distributed import embed_dataset_ray

        store = embed_dataset_ray(
            ds, backbone, out, address=ray, num_workers=ray_workers, num_gpus_per_worker=ray_gpus, **common
        )
    else:
        store = embed_dataset(ds, backbone, out, workers=workers, device=device, **common)
    if pool_panoramas:
        path = write_pooled(store, ds)
        typer.echo(f"pooled panoramas -> {path}", err=True)
    typer.echo(str(store.path))
    run = store.last_run
    if run is not None and run.mostly_failed:
        typer.secho(
            f"most images could not be embedded ({len(run.failed)} of {run.embedded + len(run.failed)}): "
            "see the reasons above and the store's failures.csv",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)


def _check_options(runtime: str, ray: str | None, ray_gpus: float | None, device: str, precision: str) -> None:
    """Refuse a runtime, device or precision this machine cannot give (on Ray, the cluster decides), and
    --ray-gpus without --ray."""
    check_runtime(runtime)
    if ray_gpus is not None and not ray:
        raise fail("--ray-gpus applies to --ray; on this machine use --device cuda (or auto)")
    if not ray:
        from geoscout.devices import resolve_device, resolve_precision
        from geoscout.errors import GeoscoutError

        try:
            resolve_precision(precision, resolve_device(device))
        except GeoscoutError as exc:
            raise fail(str(exc)) from None
