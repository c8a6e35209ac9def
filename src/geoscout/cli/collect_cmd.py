"""``geoscout collect``: build a geotagged dataset from Google Street View or Mapillary."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from ._app import app, fail

_SAMPLER_OPTS = {  # CLI option -> sampler keyword
    "countries": "countries",
    "bbox": "bbox",
    "polygon": "polygon",
    "spacing": "spacing",
    "cities": "cities",
    "aux_dir": "aux_dir",
    "min_population": "min_population",
    "jitter_km": "radius_km",
    "weight": "weight",
    "box_km": "box_km",
}

_PROVIDER_OPTS = {  # provider -> the CLI options only it takes (same names as its keywords)
    "streetview": ("headings", "size", "fov", "pitch", "allow_user_uploads"),
    "mapillary": ("thumb", "allow_panos"),
}


@app.command("collect")
def collect_command(
    out: Path = typer.Option(..., "-o", "--out", help="Dataset folder to create or resume."),
    provider: str = typer.Option("streetview", "--provider", "-p", help="streetview | mapillary"),
    sampler: str = typer.Option(
        "land", "--sampler", "-s", help="land | population | cities | countries | bbox | polygon | grid | citybox"
    ),
    n: int | None = typer.Option(
        None, "--n", "-n", help="Locations (panoramas / photos) to collect; default: sum of --countries quotas."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler and the view headings (same seed = same points)."),
    rate: str = typer.Option("10/s", "--rate", help="Request rate limit, e.g. 10/s, 600/min."),
    daily_quota: int = typer.Option(
        25_000, "--daily-quota", help="Max requests sent per UTC day (all kinds, retries included)."
    ),
    headings: int = typer.Option(
        4, "--headings", help="Street View: views per panorama, evenly spaced from a random start."
    ),
    size: str = typer.Option("640x640", "--size", help="Street View: image size WxH (max 640x640)."),
    fov: float = typer.Option(90.0, "--fov", help="Street View: horizontal field of view, degrees."),
    pitch: float = typer.Option(0.0, "--pitch", help="Street View: camera pitch, degrees."),
    radius: float = typer.Option(50.0, "--radius", help="Search radius around each point, metres."),
    allow_user_uploads: bool = typer.Option(
        False, "--allow-user-uploads", help="Street View: keep non-Google panoramas."
    ),
    thumb: str = typer.Option("1024", "--thumb", help="Mapillary: thumbnail width 256 | 1024 | 2048 | original."),
    allow_panos: bool = typer.Option(False, "--allow-panos", help="Mapillary: keep 360° panoramas."),
    price_per_1000: float | None = typer.Option(
        None, "--price-per-1000", help="US$ per 1000 billable requests for the cost estimate (Street View default 7.0)."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="Provider API base URL (for mirrors and tests)."),
    keys_file: Path | None = typer.Option(
        None, "--keys-file", help="TOML keys file (default ~/.config/geoscout/keys.toml)."
    ),
    countries: str | None = typer.Option(None, "--countries", help="countries sampler: quotas, e.g. HR:100,SI:50."),
    bbox: str | None = typer.Option(None, "--bbox", help="bbox/land/grid/population: W,S,E,N degrees."),
    polygon: str | None = typer.Option(
        None, "--polygon", help="polygon sampler: GeoJSON file or a country (HR, HRV or Croatia)."
    ),
    spacing: str | None = typer.Option(None, "--spacing", help="grid sampler: spacing, e.g. 10km or 0.5deg."),
    cities: str | None = typer.Option(None, "--cities", help="citybox sampler: city names, e.g. 'London,Manchester'."),
    aux_dir: Path | None = typer.Option(None, "--aux-dir", help="population sampler: folder with gpw/<GPWv4 grid>."),
    min_population: int | None = typer.Option(None, "--min-population", help="cities sampler: smallest place size."),
    jitter_km: float | None = typer.Option(None, "--jitter-km", help="cities sampler: jitter radius, km."),
    weight: str | None = typer.Option(None, "--weight", help="cities sampler: uniform | population."),
    box_km: float | None = typer.Option(None, "--box-km", help="citybox sampler: box side, km."),
    timeout: float = typer.Option(30.0, "--timeout", help="Per-request timeout, seconds."),
    max_retries: int = typer.Option(6, "--max-retries", help="Retries per request on 429/5xx/timeouts/broken bodies."),
    backoff_base: float = typer.Option(1.0, "--backoff-base", help="First retry wait, seconds (doubles each retry)."),
    max_points: int | None = typer.Option(
        None, "--max-points", help="Max points asked in this run (default 100*n+1000)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the first points and the cost estimate; send nothing."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log retries and skipped items to stderr."),
) -> None:
    """Collect geotagged imagery into a dataset; rerun the same command to resume after a stop or a crash.

    Exit status: 0 when n locations are collected with all their images, 3 when stopped early (daily
    quota, sampler exhausted, provider failing), 4 when the locations are there but images are still
    missing after retries (rerun to retry them), 2 on errors (refused key, bad options).
    """
    args = dict(locals())  # every option, by parameter name
    import logging

    from geoscout.collect import AccessDenied
    from geoscout.errors import GeoscoutError

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    given = {k: v for k, v in args.items() if k in _SAMPLER_OPTS and v is not None}
    try:
        samp = _sampler(sampler, given)
        if dry_run:
            _dry_run(provider, samp, n, seed, headings, price_per_1000)
            return
        report = _collect(args, samp)
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        raise typer.Exit(130) from None
    except AccessDenied as exc:
        raise fail(str(exc)) from None
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    _report(out, report)


def _collect(args: dict[str, Any], samp: Any) -> Any:
    """Run the collection the command's options (``args``, by parameter name) describe, with the sampler ``samp``:
    the provider (its own options only), the retry policy and the job, resuming what ``out`` holds."""
    from geoscout.collect import CollectJob, RetryPolicy, create_provider, parse_rate

    provider = args["provider"]
    popts: dict[str, Any] = {"keys_file": str(args["keys_file"]) if args["keys_file"] else None}
    popts["radius"] = args["radius"]
    if args["base_url"]:
        popts["base_url"] = args["base_url"]
    popts.update({k: args[k] for k in _PROVIDER_OPTS.get(provider, ())})
    prov = create_provider(provider, **popts)
    retry = RetryPolicy(max_retries=args["max_retries"], base=args["backoff_base"], timeout=args["timeout"])
    job = CollectJob(
        args["out"],
        prov,
        samp,
        args["n"],
        seed=args["seed"],
        rate=parse_rate(args["rate"]),
        daily_quota=args["daily_quota"],
        retry=retry,
        price_per_1000=args["price_per_1000"],
        max_points=args["max_points"],
        progress=args["progress"],
    )
    return job.run()


def _sampler(sampler: str, given: dict[str, Any]) -> Any:
    """The sampler built from the command-line options it accepts; an option it does not take is an error."""
    from geoscout.collect import create_sampler
    from geoscout.collect.samplers import SAMPLERS

    accepted = set(inspect.signature(SAMPLERS.get(sampler)).parameters)
    kwargs = {}
    for opt, value in given.items():
        kw = _SAMPLER_OPTS[opt]
        if kw not in accepted:
            raise fail(
                f"--{opt.replace('_', '-')} does not apply to the {sampler!r} sampler "
                f"(it takes: {', '.join(sorted(a for a in accepted if a != 'arg')) or 'no options'})"
            )
        kwargs[kw] = str(value) if isinstance(value, Path) else value
    return create_sampler(sampler, **kwargs)


def _report(out: Path, report: Any) -> None:
    """The job's summary and first problems; exit 3 when stopped (quota, denied) and 4 with images still missing."""
    typer.echo(f"{out}: {report.summary()}")
    for p in report.problems[:10]:
        typer.echo(f"  skipped: {p}", err=True)
    if len(report.problems) > 10:
        typer.echo(f"  ... and {len(report.problems) - 10} more", err=True)
    if report.stopped:
        raise typer.Exit(3)
    if report.missing_images:
        typer.echo(f"{report.missing_images} image(s) still missing after retries; rerun to retry them", err=True)
        raise typer.Exit(4)


def _dry_run(provider: str, samp, n: int | None, seed: int, headings: int, price: float | None) -> None:
    from geoscout.collect.providers import PROVIDERS

    cls = PROVIDERS.get(provider)
    price = getattr(cls, "price_per_1000", 0.0) if price is None else price
    total = n if n is not None else sum((samp.quotas or {}).values())
    per = headings if provider == "streetview" else 1
    for p in samp.sample(min(10, total or 10), seed=seed):
        typer.echo(f"{p.lat:.6f},{p.lon:.6f}" + (f"  {p.group}" if p.group else ""))
    typer.echo(
        f"{total} locations x {per} images = {total * per} billable requests at ${price:g}/1000 "
        f"= ${total * per * price / 1000:.2f} (metadata requests are free; misses cost nothing)"
    )
