"""`geoscout watch`: the GeoGuessr screenshot helper."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app
from ._options import Model, Runtime


@app.command("watch")
def watch_command(
    folder: Path = typer.Argument(..., help="Folder your screenshots land in."),
    model: Model = "geoscout-lite",
    crop: str = typer.Option(
        "0,0.08,1,0.78",
        "--crop",
        help="Part of the screenshot to keep: left,top,right,bottom fractions. 'none' keeps all.",
    ),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50),
    map_path: Path = typer.Option(
        Path("geoscout-watch.html"), "--map", help="Map page refreshed after each screenshot."
    ),
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between looks at the folder."),
    existing: bool = typer.Option(False, "--existing", help="Also locate screenshots already in the folder."),
    give_up: float = typer.Option(
        3.0, "--give-up-after", min=0.0, help="Seconds an unreadable file must stay unchanged before it is reported."
    ),
    runtime: Runtime = "auto",
) -> None:
    """Watch a folder for new screenshots, locate each, print the top guesses, refresh a map (Ctrl-C stops)."""
    from rich.console import Console

    from geoscout.locator import load_model
    from geoscout.watch import CropBox, watch_folder

    console = Console()
    box = None if crop.strip().lower() == "none" else CropBox.parse(crop)
    try:
        loc = load_model(model, runtime=runtime)
    except KeyboardInterrupt:  # Ctrl-C while the model loads: stop quietly, like Ctrl-C while watching
        console.print("stopped")
        raise typer.Exit(130) from None
    console.print(f"watching [bold]{folder}[/bold] with {loc.name}; map: {map_path}  (Ctrl-C to stop)")

    def show(path, pred) -> None:
        if pred.error:  # the reason alone: the failure's source is this file
            console.print(f"[red]{path.name}: {pred.error.reason}[/red]")
            return
        guesses = "  ".join(
            f"#{i} {c.country_name or c.country or 'sea'}{' / ' + c.admin1 if c.admin1 else ''} "
            f"({c.lat:.3f}, {c.lon:.3f}) {c.probability:.0%}"
            for i, c in enumerate(pred.candidates, 1)
        )
        console.print(f"[bold]{path.name}[/bold] -> {guesses}  [dim]±{pred.radius_km:,.0f} km[/dim]")

    def waiting(path, reason) -> None:
        console.print(f"[dim]{path.name}: not readable yet ({reason}); trying again when it changes[/dim]")

    watch_folder(
        folder,
        loc,
        crop=box,
        top_k=top_k,
        interval_s=interval,
        give_up_s=give_up,
        on_result=show,
        on_incomplete=waiting,
        map_path=map_path,
        include_existing=existing,
    )
    console.print("stopped")
