"""``geoscout finetune``: caption pretraining of a CLIP backbone (PIGEON), resumable; writes an ``hf:`` folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from ._app import app, fail
from ._options import Device, Weights


@app.command("finetune")
def finetune_command(
    datasets: list[Path] = typer.Argument(
        ..., help="Dataset folders (manifest.parquet or manifest.csv) or CSV files; several are combined."
    ),
    backbone: str = typer.Option(
        ..., "--backbone", "-b", help="A transformers CLIP backbone: hf:DIR, hf:REPO, streetclip, clip-vit-b32..."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: a CLIP checkpoint usable as --backbone hf:OUT."),
    train: str = typer.Option(
        "image", "--train", help="What to train: image (vision tower), projection (its projection only), lora."
    ),
    text: bool = typer.Option(False, "--text", help="Also train the text tower (LoRA on it with --train lora)."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Passes over the training photos."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps (overrides --epochs)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Photos per step (InfoNCE negatives)."),
    lr: float = typer.Option(1e-5, "--lr", help="Peak learning rate (linear warm-up, then cosine to zero)."),
    weight_decay: float = typer.Option(0.1, "--weight-decay", min=0.0, help="AdamW weight decay (matrices only)."),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank (--train lora)."),
    val_fraction: float = typer.Option(
        0.05, "--val-fraction", min=0.0, max=0.9, help="Share of locations held out for the validation loss."
    ),
    save_every: int = typer.Option(50, "--save-every", min=1, help="Steps between checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Random seed (split, data order, initialisation)."),
    device: Device = "cpu",
    weights: Weights = None,
    aux_dir: Path = typer.Option(None, "--aux-dir", help="Folder with the Köppen raster, for climate in captions."),
    restart: bool = typer.Option(False, "--restart", help="Discard a checkpoint or result already in OUT."),
    keep_checkpoint: bool = typer.Option(
        False, "--keep-checkpoint", help="Keep OUT/checkpoint.safetensors at the end."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the first captions; train nothing."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Print the loss every N steps."),
) -> None:
    """Fine-tune a CLIP backbone on captions built from each photo's labels (PIGEON's caption pretraining)."""
    from geoscout.clip_finetune import FinetuneConfig, finetune
    from geoscout.errors import GeoscoutError

    try:
        config = FinetuneConfig(
            train=train,
            text=text,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            lora_rank=lora_rank,
            seed=seed,
            save_every=save_every,
            val_fraction=val_fraction,
            device=device,
        )
        if dry_run:
            _dry_run(datasets, config, aux_dir)
            return

        def progress(step: int, loss: float | None) -> None:
            if step % log_every == 0 or step == 1:
                typer.echo(f"step {step}: loss {loss:.4f}" if loss is not None else f"step {step}: skipped", err=True)

        res = finetune(
            [str(d) for d in datasets],
            backbone,
            out,
            config,
            weights=weights,
            aux_dir=aux_dir,
            restart=restart,
            keep_checkpoint=keep_checkpoint,
            on_step=progress,
        )
    except GeoscoutError as exc:
        raise fail(str(exc)) from None
    _print_result(res)


def _dry_run(datasets: list[Path], config: Any, aux_dir: Path | None) -> None:
    """Print the plan (photos, held out, steps) and the first captions; train nothing."""
    from geoscout.clip_finetune import _training_rows

    tr, va = _training_rows([str(d) for d in datasets], config, aux_dir)
    steps = config.max_steps or config.epochs * max(1, len(tr) // config.batch_size)
    typer.echo(f"{len(tr)} training photos, {len(va)} held out, {steps} steps of {config.batch_size}")
    for c in tr["caption"].head(5):
        typer.echo(f"  {c}")


def _print_result(res: Any) -> None:
    """What a run did: steps and losses (first and last, held-out before and after), skipped photos by kind."""
    losses = [v for v in res.losses if v is not None]
    note = (
        " (already finished: nothing to do)"
        if res.resumed_from == res.steps
        else (f" (resumed at step {res.resumed_from})" if res.resumed_from else "")
    )
    typer.echo(
        f"wrote {res.out}: {res.steps} steps on {res.n_train} photos{note}; "
        f"loss {losses[0]:.4f} at the first step, {losses[-1]:.4f} at the last"
        if losses
        else f"wrote {res.out}: {res.steps} steps"
    )
    if res.val_losses:
        typer.echo(
            f"held-out loss ({res.n_val} photos): {res.val_losses[0][1]:.4f} before, {res.val_losses[-1][1]:.4f} after"
        )
    if res.failed:
        kinds = Counter(f.kind for f in res.failed.values())
        first = next(iter(res.failed.values()))
        typer.secho(
            f"{len(res.failed)} photos could not be read and were skipped "
            f"({', '.join(f'{n} {k}' for k, n in kinds.most_common())}; first: {first.message})",
            fg="yellow",
            err=True,
        )
    typer.echo(f"use it with --backbone hf:{res.out}")
