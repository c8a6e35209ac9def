"""`geoscout compare`: how far apart were two photos taken?"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, fail
from ._options import Model, Weights


@app.command("compare")
def compare_command(
    photo_a: Path = typer.Argument(..., help="First photo."),
    photo_b: Path = typer.Argument(..., help="Second photo."),
    model: Model = "geoscout-lite",
    level: float = typer.Option(
        0.8, "--level", min=0.01, max=0.99, help="Coverage of the interval (0.8: 10th to 90th percentile)."
    ),
    near: float = typer.Option(
        None,
        "--near",
        help="Similarity to a training photo above which retrieval is used (default: derived from the model's index).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    weights: Weights = None,
) -> None:
    """Say how far apart two photos were probably taken (median and interval) and whether in one country."""
    from geoscout.errors import GeoscoutError
    from geoscout.locator import load_model
    from geoscout.photo_distance import compare

    for p in (photo_a, photo_b):
        if not p.is_file():
            raise fail(f"{p}: no such file; pass two photos")
    try:
        loc = load_model(model, weights=weights)
        c = compare(str(photo_a), str(photo_b), loc, level=level, near_similarity=near)
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(c.to_dict(), indent=2))
        return
    pct = round(c.distance.level * 100)
    d = c.distance
    how = f"exact over {d.pairs:,} place pairs" if d.exact else f"{d.pairs:,} sampled pairs (seed 0)"
    typer.echo(f"{c.a}\n{c.b}\n(model {c.model})")
    typer.echo(
        f"distance (model's distributions): median {d.median_km:,.0f} km, "
        f"{pct} % interval {d.low_km:,.0f}-{d.high_km:,.0f} km  [{how}]"
    )
    if c.retrieval is not None:
        r = c.retrieval
        typer.echo(
            f"distance (nearest training photos): median {r.median_km:,.0f} km, "
            f"{pct} % interval {r.low_km:,.0f}-{r.high_km:,.0f} km  "
            f"[similarity {c.similarity_a:.2f} / {c.similarity_b:.2f} >= {c.near_similarity:.2f}]"
        )
    elif c.similarity_a is not None and c.near_similarity is not None:
        typer.echo(
            f"distance (nearest training photos): not used, the photos are not both near training photos "
            f"(similarity {c.similarity_a:.2f} / {c.similarity_b:.2f}, needs >= {c.near_similarity:.2f})"
        )
    else:
        typer.echo("distance (nearest training photos): not available, this model has no retrieval index")
    typer.echo(
        f"same country: {c.same_country:.0%}  (first: {c.country_a or '?'} {c.country_a_probability:.0%}, "
        f"second: {c.country_b or '?'} {c.country_b_probability:.0%})"
    )
