"""``geoscout push BUNDLE REPO``: share a model bundle on the Hugging Face hub (or in a hub-cache folder)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, fail


@app.command("push")
def push(
    bundle: Path = typer.Argument(..., help="A model bundle folder written by `geoscout train`."),
    repo: str = typer.Argument(..., help="Hub model repository USER/NAME (created if missing)."),
    revision: str = typer.Option(None, "--revision", help="Branch to commit to (created if missing; default main)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    message: str = typer.Option(None, "--message", help="Commit message."),
    to_cache: Path = typer.Option(
        None,
        "--to-cache",
        help="Write into this folder laid out like the hub cache instead of uploading (for offline machines: "
        "HF_HUB_CACHE=DIR geoscout locate -m hf-bundle:USER/NAME).",
    ),
) -> None:
    """Upload a bundle (its checksummed files, config.json and a hub README) to the Hugging Face hub.

    The token comes from HF_TOKEN or `huggingface-cli login`; it is never printed. Load it anywhere with
    `geoscout locate -m hf-bundle:USER/NAME[@REVISION] photo.jpg`.
    """
    from geoscout.errors import GeoscoutError
    from geoscout.hub import export_to_cache, push_bundle

    try:
        if to_cache is not None:
            snap = export_to_cache(bundle, repo, to_cache, revision=revision or "main")
            typer.echo(f"wrote {snap}")
            typer.echo(
                f"load it with: HF_HUB_CACHE={to_cache} HF_HUB_OFFLINE=1 geoscout locate -m hf-bundle:{repo} PHOTO"
            )
            return
        url = push_bundle(bundle, repo, revision=revision, private=private, commit_message=message)
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # network, authentication: huggingface_hub's own errors
        raise fail(f"push to {repo} failed: {type(exc).__name__}: {exc}", code=1) from None
    typer.echo(f"pushed {bundle} to {url}")
    typer.echo(f"load it with: geoscout locate -m hf-bundle:{repo}{'@' + revision if revision else ''} PHOTO")
