"""Shared torch machinery of the trainable heads: threads, seeding, the mini-batch loop.

Training is AdamW over shuffled mini-batches with early stopping on a validation score
(higher is better, usually the mean GeoGuessr score); the best epoch's weights are kept.
Everything random (initialisation, dropout, shuffling) is drawn inside a forked,
seeded RNG, so the same seed on the same machine gives identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput
from ..geo import haversine_km

__all__ = ["available_cores", "grouped_val_split", "location_groups", "torch_threads", "train_loop"]


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroup-pinned CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run torch ops with ``n`` intra-op threads (default: the available cores), then restore."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n or available_cores())
    try:
        yield
    finally:
        torch.set_num_threads(old)


def location_groups(y: NDArray[np.float64], decimals: int = 5) -> NDArray[np.int64]:
    """Group ids of identical locations (coordinates rounded to ``decimals``, ~1 m)."""
    key = np.round(np.asarray(y, dtype=np.float64), decimals)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def grouped_val_split(
    n: int, groups: NDArray[Any], fraction: float, seed: int, *, min_groups: int = 10
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split row indices into (train, val) so that no group straddles the two.

    Returns an empty val set when there are fewer than ``min_groups`` groups or ``fraction`` is 0.
    """
    idx = np.arange(n)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if n else 0
    n_val = round(fraction * n_groups)
    if fraction <= 0 or n_groups < min_groups or n_val < 1:
        return idx, idx[:0]
    rng = np.random.default_rng(seed)
    val_groups = rng.permutation(n_groups)[:n_val]
    is_val = np.isin(g, val_groups)
    return idx[~is_val], idx[is_val]


def column_mean_std(
    X: NDArray[np.float32], rows: NDArray[np.int64], *, chunk: int = 65_536, eps: float = 1e-6
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-column mean and std (+ ``eps``) of ``X[rows]``, accumulated in float64 a chunk at a time.

    Never copies ``X`` whole (a 1M x 1280 float32 matrix is 5 GB; ``X[rows].std()`` needs three such
    copies); chunks are merged with Chan et al.'s parallel variance formula, so no precision is lost
    when the mean is large relative to the spread.
    """
    rows = np.asarray(rows, dtype=np.int64)
    d = X.shape[1]
    n, mean, m2 = 0, np.zeros(d), np.zeros(d)
    for a in range(0, rows.size, chunk):
        b = np.asarray(X[rows[a : a + chunk]], dtype=np.float64)
        nb = b.shape[0]
        mb = b.mean(axis=0)
        m2b = ((b - mb) ** 2).sum(axis=0)
        delta = mb - mean
        tot = n + nb
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta**2 * (n * nb / tot)
        n = tot
    if n == 0:
        raise InvalidInput("cannot standardise zero training rows")
    std = np.sqrt(m2 / n) + eps
    return mean.astype(np.float32), std.astype(np.float32)


def standardized_rows(
    X: NDArray[np.float32], rows: NDArray[np.int64], mean: NDArray[np.float32], std: NDArray[np.float32]
) -> Callable[[NDArray[np.int64]], Any]:
    """``get(batch)`` -> float32 tensor ``(X[rows[batch]] - mean) / std``, standardised batch by batch
    so training never holds a standardised copy of the whole embedding matrix."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    rt = np.asarray(rows, dtype=np.int64)
    mt, st = torch.from_numpy(mean), torch.from_numpy(std)

    def get(batch: NDArray[np.int64]) -> Any:
        return (xt[torch.from_numpy(rt[np.asarray(batch)])] - mt) / st

    return get


def split_train_val(
    X: NDArray[np.float32], y: NDArray[np.float64], X_val: Any, y_val: Any, groups: Any, val_fraction: float, seed: int
) -> tuple[NDArray[np.int64], Any, Any]:
    """Training rows of ``X`` and the validation set: the given ``X_val``/``y_val``, else a location-grouped
    share of ``X`` (``groups`` (N,) location ids; default: rows with identical coordinates)."""
    from .base import check_embeddings, check_targets

    if X_val is not None:
        X_val = check_embeddings(X_val, dim=X.shape[1], what="validation embeddings")
        return np.arange(X.shape[0]), X_val, check_targets(y_val, X_val.shape[0])
    g = location_groups(y) if groups is None else np.asarray(groups)
    if g.shape[0] != X.shape[0]:
        raise InvalidInput(f"groups: expected {X.shape[0]} entries, got {g.shape[0]}")
    tr, va = grouped_val_split(X.shape[0], g, float(val_fraction), int(seed))
    return (tr, X[va], y[va]) if va.size else (tr, None, None)


def fit_head_network(
    head: Any,
    net: Any,
    batch_loss: Callable[[NDArray[np.int64]], Any],
    n_rows: int,
    n_features: int,
    val_score: Callable[[], float] | None,
    progress: bool,
) -> dict[str, Any]:
    """Run :func:`train_loop` with the head's :class:`~geoscout.heads.TrainingOptions`; ``head`` counts as fitted during training (its
    validation score predicts) and is reset to unfitted if training fails or is interrupted."""
    head.n_features_in_ = n_features
    opts = head.options
    try:
        return train_loop(
            net,
            batch_loss,
            n_rows,
            epochs=int(opts.epochs),
            batch_size=int(opts.batch_size),
            lr=float(opts.lr),
            weight_decay=float(opts.weight_decay),
            seed=int(opts.seed),
            val_score=val_score,
            patience=int(opts.patience),
            progress=progress,
            desc=f"{head.name} head",
        )
    except BaseException:
        del head.n_features_in_
        raise


def mean_geoguessr(pred: NDArray[np.float64], truth: NDArray[np.float64]) -> float:
    """Mean GeoGuessr score (5000 exp(-d/1492.7 km)) of (N, 2) predictions against (N, 2) truth."""
    d = haversine_km(pred[:, 0], pred[:, 1], truth[:, 0], truth[:, 1])
    return float(np.mean(5000.0 * np.exp(-d / 1492.7)))


def train_loop(
    model: Any,
    batch_loss: Callable[[NDArray[np.int64]], Any],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    val_score: Callable[[], float] | None = None,
    patience: int = 5,
    progress: bool = False,
    desc: str = "training",
) -> dict[str, Any]:
    """Train ``model`` with AdamW on mini-batches of row indices; keep the best validation epoch.

    ``batch_loss(indices)`` returns a scalar loss tensor for those training rows.
    ``val_score()`` (higher is better) is evaluated after every epoch in eval mode; training
    stops after ``patience`` epochs without improvement and the best weights are restored.
    Returns a history dict (``epochs_run``, ``best_epoch``, ``best_val_score``, ``train_loss``, ``val_score``).
    """
    import torch
    from tqdm.auto import tqdm

    if n < 1:
        raise InvalidInput("training set is empty")
    if epochs < 1 or batch_size < 1:
        raise InvalidInput(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    gen = torch.Generator().manual_seed(int(seed) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, Any] = {"train_loss": [], "val_score": [], "best_epoch": None, "best_val_score": None}
    best_state = None
    best = -np.inf
    stale = 0
    n_batches = (n + batch_size - 1) // batch_size
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, unit="batch", leave=False)
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen).numpy()
            total = 0.0
            for b in range(n_batches):
                rows = perm[b * batch_size : (b + 1) * batch_size]
                loss = batch_loss(rows)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(rows)
                bar.update(1)
            history["train_loss"].append(total / n)
            if val_score is None:
                history["best_epoch"] = epoch
                continue
            model.eval()
            with torch.no_grad():
                score = float(val_score())
            history["val_score"].append(score)
            bar.set_postfix(loss=f"{total / n:.4f}", val_geoguessr=f"{score:.0f}")
            if score > best:
                best, stale = score, 0
                best_state = copy.deepcopy(model.state_dict())
                history["best_epoch"], history["best_val_score"] = epoch, score
            else:
                stale += 1
                if stale >= patience:
                    break
    finally:
        bar.close()
    history["epochs_run"] = len(history["train_loss"])
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
