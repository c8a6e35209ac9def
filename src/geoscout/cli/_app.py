"""The Typer application that every ``geoscout`` command registers itself on.

Command modules import heavy libraries (torch, pandas, ...) inside the command
function, never at module level, so ``geoscout --help`` starts fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="geoscout",
    help="Tell where on Earth a photo was taken: collect, label, embed, train, locate, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from geoscout import __version__

        typer.echo(f"geoscout {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """Tell where on Earth a photo was taken: collect, label, embed, train, locate, evaluate, serve."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr in red and return an Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
