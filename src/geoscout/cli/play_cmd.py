"""`geoscout play`: the model plays a GeoGuessr-style game alone on a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, fail
from ._options import Model, Weights


@app.command("play")
def play_command(
    dataset: Path = typer.Argument(..., help="Dataset folder (manifest.parquet or manifest.csv) or a CSV."),
    rounds: int = typer.Option(5, "--rounds", "-n", min=1, max=50, help="Rounds (photos of distinct locations)."),
    seed: int = typer.Option(None, "--seed", help="Draw the same rounds again with the same seed."),
    model: Model = "geoscout-lite",
    as_json: bool = typer.Option(False, "--json", help="Print the finished game as JSON."),
    weights: Weights = None,
) -> None:
    """Let the model play ROUNDS rounds of GeoGuessr on DATASET's photos; prints each round and the total."""
    from geoscout.errors import GeoscoutError
    from geoscout.game import Game, model_guess, pick_rounds
    from geoscout.locator import load_model

    try:
        game = Game(pick_rounds(dataset, rounds, seed=seed))
        loc = load_model(model, weights=weights)
        for rnd in game.rounds:
            res = game.play_round(model_guess(loc, rnd.path))
            if not as_json:
                t = res.truth
                place = ", ".join(str(x) for x in (t["city"], t["admin1"], t["country_name"]) if x) or "open sea"
                typer.echo(
                    f"round {res.round}/{rounds}  {rnd.path.name}: truth {t['lat']:.4f}, {t['lon']:.4f} ({place}); "
                    f"model {res.model.lat:.4f}, {res.model.lon:.4f}: {res.model.distance_km:,.0f} km, "
                    f"{res.model.score:,.0f} points"
                )
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(game.to_dict(), indent=2))
        return
    typer.echo(f"total: {game.total('model'):,.0f} of {5000 * rounds:,} points (model {loc.name}, seed {seed})")
