"""The Typer application that every ``geoscout`` command registers itself on.

Command modules import heavy libraries (torch, pandas, ...) inside the command
function, never at module level, so ``geoscout --help`` starts fast.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup


class _Group(TyperGroup):
    """The root group: on/off flags show no ``<bool>`` type in help (they take no value)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _hide_flag_types(cmd, ctx)
        return cmd


def _hide_flag_types(cmd: Any, ctx: Any) -> None:
    help_option = cmd.get_help_option(ctx) if ctx is not None else None
    for p in [*cmd.params, *([help_option] if help_option is not None else [])]:
        if getattr(p, "param_type_name", "") == "option" and getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""


app = typer.Typer(
    cls=_Group,
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
