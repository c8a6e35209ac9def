"""Options that several commands take, declared once: ``device: Device = "cpu"`` in a command's signature.

Each alias carries the flag and its help; the default stays in the command (Typer reads it from the
signature), so a command can differ in its default without a second declaration.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import fail

__all__ = ["Device", "Model", "Precision", "Quiet", "Runtime", "Weights", "check_runtime"]

#: Where the backbone runs (default ``"cpu"``).
Device = Annotated[
    str,
    typer.Option("--device", help="Where the backbone runs: cpu, cuda, cuda:N or auto (a GPU when torch sees one)."),
]
#: The backbone's numeric precision (default ``"auto"``).
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Backbone precision: auto (bf16/fp16 autocast on a GPU, fp32 on CPU), fp32, fp16, bf16, or int8 "
        "(geoclip on the CPU: int8 weights on ONNX Runtime, faster, approximate; its own embedding fingerprint).",
    ),
]
#: The inference runtime of the backbone (default ``"auto"``); check it with :func:`check_runtime`.
Runtime = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="auto (ONNX Runtime for EfficientNet and GeoCLIP backbones when installed, else torch), onnx or torch.",
    ),
]
#: A local folder (or file) with the backbone's weights (default ``None``).
Weights = Annotated[
    str | None,
    typer.Option("--weights", help="Local folder (or file) with the backbone's weights (offline hub models)."),
]
#: The model to load (default ``"geoscout-lite"``).
Model = Annotated[str, typer.Option("--model", "-m", help="geoscout-lite (built in), geoclip, or a bundle folder.")]
#: No progress bars (default ``False``).
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (shown on stderr in a terminal).")]

RUNTIMES = ("auto", "onnx", "torch")


def check_runtime(runtime: str) -> None:
    """Refuse an unknown ``--runtime`` with the valid choices (exit status 2)."""
    if runtime not in RUNTIMES:
        raise fail(f"--runtime {runtime!r}: choose auto, onnx or torch")
