"""`geoscout serve`: the web page and REST API."""

from __future__ import annotations

import typer

from ._app import app, fail
from ._options import Device, Model, Precision, Runtime, Weights


@app.command("serve")
def serve_command(
    model: Model = "geoscout-lite",
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 exposes it to your network)."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.1, help="Largest accepted file."),
    max_files: int = typer.Option(8, "--max-files", min=1, help="Most files per request."),
    timeout: float = typer.Option(60.0, "--timeout", min=1, help="Seconds before a request is answered 504."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, help="Locate calls running at once."),
    weights: Weights = None,
    game: str = typer.Option(
        None, "--game", help="Dataset for the play mode (GeoGuessr-style rounds at /game; API under /v1/game)."
    ),
    game_rounds: int = typer.Option(5, "--game-rounds", min=1, max=50, help="Rounds of a game."),
    device: Device = "cpu",
    precision: Precision = "auto",
    cues: str = typer.Option(
        "all", "--cues", help="Evidence read besides the pixels: all, text (signs), metadata (EXIF) or none."
    ),
    runtime: Runtime = "auto",
) -> None:
    """Serve the web page (drop a photo, see the map) and the REST API (/v1/locate, /docs)."""
    try:
        import uvicorn

        from geoscout.errors import GeoscoutError
        from geoscout.server import ServerSettings, create_app
    except ImportError as exc:
        raise fail(f"the server needs the [server] extra: pip install 'geoscout[server]' ({exc})") from None
    settings = ServerSettings(
        model=model,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_files=max_files,
        request_timeout_s=timeout,
        concurrency=concurrency,
        weights=weights,
        game=game,
        game_rounds=game_rounds,
        device=device,
        precision=precision,
        cues=cues,
        runtime=runtime,
    )
    if cues not in ("all", "text", "metadata", "none"):
        raise fail(f"--cues {cues}: use all, text, metadata or none")
    from geoscout.devices import resolve_device, resolve_precision

    try:
        settings.device = resolve_device(device)
        resolve_precision(precision, settings.device)
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    try:
        application = create_app(settings)
    except GeoscoutError as exc:
        raise fail(f"--game {game}: {exc}") from None
    _limit_malloc_arenas()
    typer.echo(f"geoscout: serving {model} on http://{host}:{port}/  (API docs: /docs; Ctrl-C to stop)", err=True)
    if game:
        typer.echo(f"geoscout: play mode on {game}: http://{host}:{port}/game", err=True)
    uvicorn.run(application, host=host, port=port, log_level="info")


def _limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX=n would) unless the user set that variable.

    glibc gives each thread its own arena; the locate pool's threads then fragment memory and the
    server's RSS sits higher and creeps up (benchmarks/serve_load.py, 300 requests: ~720 -> 734 MiB
    without the cap, ~650 -> 653 MiB with MALLOC_ARENA_MAX=2). No-op off glibc.
    """
    import contextlib
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, n)  # -8 = M_ARENA_MAX
