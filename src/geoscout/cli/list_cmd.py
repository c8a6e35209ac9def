"""`geoscout list backbones|partitions|heads|models|providers|samplers`: what the registries hold."""

from __future__ import annotations

import importlib
from enum import StrEnum

import typer

from ._app import app

_SOURCES = {
    "backbones": ("geoscout.backbones", "list_backbones", "BACKBONES"),
    "partitions": ("geoscout.cells", "list_partitions", "PARTITIONS"),
    "heads": ("geoscout.heads", "list_heads", "HEADS"),
    "models": ("geoscout.locator", "list_models", "MODELS"),
    "providers": ("geoscout.collect.providers", "", "PROVIDERS"),
    "samplers": ("geoscout.collect.samplers", "", "SAMPLERS"),
}


class Kind(StrEnum):
    backbones = "backbones"
    partitions = "partitions"
    heads = "heads"
    models = "models"
    providers = "providers"
    samplers = "samplers"


def registry_entries(kind: str) -> dict[str, str]:
    """Name -> one-line help of one registry, importing its package lazily."""
    module, lister, registry = _SOURCES[kind]
    mod = importlib.import_module(module)
    if lister and hasattr(mod, lister):
        getattr(mod, lister)()  # loads the built-in (and plugin) entries into the registry
    reg = getattr(mod, registry, None)
    if reg is None:
        reg = getattr(importlib.import_module(f"{module}._registry"), registry)
    return {reg.usage(n): h for n, h in reg.describe().items()}


@app.command("list")
def list_command(
    kind: Kind = typer.Argument(..., help="backbones, partitions, heads, models, providers or samplers."),
) -> None:
    """List the registered backbones, partitions, heads, built-in models, providers or samplers, one line each."""
    entries = registry_entries(kind.value)
    width = max((len(n) for n in entries), default=0)
    for name, help_text in entries.items():
        typer.echo(f"{name:<{width}}  {help_text}".rstrip())
