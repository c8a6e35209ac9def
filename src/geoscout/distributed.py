"""Scale out with Ray: embed a dataset and locate many photos on a Ray cluster.

The same library code as the single-process path runs inside Ray Data actors
(``map_batches`` over an actor pool): each actor loads the backbone (or the whole
:class:`~geoscout.locator.Locator`) once in ``__init__`` and then handles one batch of
images per call. The driver streams the results (``iter_batches``) into the same
:class:`~geoscout.embeddings.EmbeddingStore` the single-process :func:`embed_dataset`
writes, committing every batch, so a killed run resumes where it stopped and a store can be
continued by either path. Images that cannot be read are recorded as failures, never
crash the run.

Ray is optional (``pip install 'geoscout[ray]'``) and imported only when these functions
run. ``address``: ``"auto"`` (the cluster this machine belongs to, e.g. after
``ray start --head``), ``"HOST:PORT"`` or ``"ray://HOST:10001"`` (a remote cluster), or
``None`` / ``"local"`` (a private Ray instance on this machine, shut down afterwards). If
Ray is already initialised in this process, that session is used as is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInput, PhotoFailure

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset
    from .embeddings import EmbeddingStore
    from .locator import Locator
    from .types import Prediction

__all__ = ["RAY_INSTALL_HINT", "embed_dataset_ray", "locate_ray", "ray_session", "require_ray"]

RAY_INSTALL_HINT = "pip install 'geoscout[ray]'"


def require_ray() -> Any:
    """Import and return the ``ray`` module (with Ray Data); a clear error if it is not installed."""
    from .backbones.base import MissingDependency

    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependency(
            f"the Ray path needs Ray Data, which is not installed ({exc}); install it with: {RAY_INSTALL_HINT} "
            "(or run without --ray on one machine)"
        ) from None
    return ray


def _local_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def ray_session(address: str | None = "auto", *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to (or start) Ray for the duration of a ``with`` block; yields the ``ray`` module.

    An already initialised Ray session is reused and left running. ``None``/``"local"`` starts
    a private local instance with ``num_cpus`` CPUs (default: the cores this process may use)
    and shuts it down on exit; any other ``address`` connects to an existing cluster.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address is None or str(address).lower() == "local":
        ray.init(num_cpus=num_cpus or _local_cpus(), **common)
    else:
        try:
            ray.init(address=str(address), **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InvalidInput(
                f"--ray {address}: no Ray cluster reachable there ({exc}); start one with `ray start --head` "
                "(then use auto), pass the head node's HOST:6379 or ray://HOST:10001, or use local for a Ray "
                "instance on this machine only"
            ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _gpus_per_worker(ray: Any, requested: float | None, num_workers: int) -> float:
    """``requested``, or (``None``) one GPU per actor when the cluster has enough GPUs, a share of them
    when it has fewer, 0 on a CPU-only cluster."""
    if requested is not None:
        if requested < 0:
            raise InvalidInput(f"num_gpus_per_worker must be >= 0, got {requested}")
        return float(requested)
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus <= 0:
        return 0.0
    return min(1.0, gpus / max(1, num_workers))


def _check_workers(num_workers: int, batch_size: int) -> None:
    if int(num_workers) < 1:
        raise InvalidInput(f"num_workers must be >= 1, got {num_workers}")
    if int(batch_size) < 1:
        raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")


def _configure_data_context(ray: Any, progress: bool) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    for attr in ("print_on_execution_start", "enable_operator_progress_bars"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, bool(progress) if attr == "enable_operator_progress_bars" else False)


def _dataset_of(ray: Any, frame: Any, rows: int, num_workers: int) -> Any:
    """A Ray Dataset of ``frame``'s rows in blocks of at most ``rows`` (one block = one actor call =
    one commit), smaller when needed so that every worker gets at least one block.

    Built with ``from_items`` (blocks made on the driver): ``from_pandas`` runs a metadata task
    per block, which we saw abort now and then on busy machines (Ray retried it, but noisily).
    """
    rows = max(1, min(int(rows), -(-len(frame) // max(1, int(num_workers)))))
    n_blocks = -(-len(frame) // rows)
    return ray.data.from_items(frame.to_dict("records"), override_num_blocks=n_blocks)


# ----------------------------------------------------------------------------------------------
# Embedding
# ----------------------------------------------------------------------------------------------
class EmbedActor:
    """Ray Data actor: loads the backbone once, then embeds one batch of image paths per call.

    Input batch (numpy format): ``image_id``, ``path``. Output: ``image_id``, ``path``,
    ``vector`` (n, dim) float32 (NaN rows for failures), ``failure`` (the JSON of the
    :class:`~geoscout.errors.PhotoFailure`; "" when embedded) and
    ``fingerprint`` (the backbone's fingerprint hash, so the driver can refuse vectors from a
    worker whose weights differ from the store's).
    """

    def __init__(
        self,
        backbone: str,
        *,
        weights: Any = None,
        runtime: str = "auto",
        device: str = "cpu",
        tta: bool = False,
        decode_threads: int = 1,
        max_pixels: int | None = None,
        precision: str = "auto",
    ) -> None:
        from .backbones import create_backbone

        self.backbone = create_backbone(backbone, weights=weights, device=device, runtime=runtime, precision=precision)
        self.fingerprint = self.backbone.fingerprint_hash()
        self.tta = bool(tta)
        self.decode_threads = int(decode_threads)
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .embeddings import embed_images

        paths = [str(p) for p in batch["path"]]
        vecs, failed = embed_images(
            paths,
            self.backbone,
            batch_size=max(1, len(paths)),
            tta=self.tta,
            workers=self.decode_threads,
            max_pixels=self.max_pixels,
        )
        return {
            "image_id": np.asarray([str(i) for i in batch["image_id"]], dtype=object),
            "path": np.asarray(paths, dtype=object),
            "vector": vecs.astype(np.float32, copy=False),
            "failure": np.asarray(
                [json.dumps(failed[i].to_dict()) if i in failed else "" for i in range(len(paths))], dtype=object
            ),
            "fingerprint": np.asarray([self.fingerprint] * len(paths), dtype=object),
        }


def embed_dataset_ray(
    dataset: Dataset | str | os.PathLike[str],
    backbone_name: str = "effnet-lite2",
    out: str | os.PathLike[str] | None = None,
    *,
    address: str | None = "auto",
    num_workers: int = 2,
    num_gpus_per_worker: float | None = None,
    num_cpus_per_worker: float = 1,
    batch_size: int = 32,
    tta: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    runtime: str = "auto",
    weights: Any = None,
    max_pixels: int | None = None,
    limit: int | None = None,
    decode_threads: int = 1,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    precision: str = "auto",
) -> EmbeddingStore:
    """Embed ``dataset`` on a Ray cluster into the same store :func:`~geoscout.embeddings.embed_dataset` writes.

    ``num_workers`` actors each load ``backbone_name`` once (on a GPU when the actor gets one:
    ``num_gpus_per_worker``, default ``None`` = one per actor when the cluster has GPUs, 0 on
    a CPU-only cluster) and embed ``batch_size`` images per call. Only images missing from the
    store (and not recorded as failures, unless ``retry_failed``) are sent; every batch is
    committed as it arrives, so a killed run resumes without duplicates. Same options and
    fingerprint checks as ``embed_dataset``; statistics in ``store.last_run``. Image paths must
    be readable from every node (a shared file system) on a multi-node cluster. ``precision`` is the GPU
    actors' autocast (auto = bf16 where supported, else fp16; CPU actors run fp32).
    """
    from .backbones import create_backbone
    from .embeddings import _writer_lock, default_store_path

    _check_workers(num_workers, batch_size)
    if not hasattr(dataset, "frame"):
        from .data import load_dataset

        dataset = load_dataset(dataset)
    require_ray()
    bb = create_backbone(backbone_name, weights=weights, runtime=runtime)
    path = Path(out) if out is not None else default_store_path(dataset, bb.name)  # type: ignore[arg-type]
    with _writer_lock(path, progress=progress):  # one writer per store, shared with embed_dataset
        return _embed_ray_locked(
            dataset,
            bb,
            path,
            backbone_name=backbone_name,
            address=address,
            num_workers=num_workers,
            num_gpus_per_worker=num_gpus_per_worker,
            num_cpus_per_worker=num_cpus_per_worker,
            batch_size=batch_size,
            tta=tta,
            overwrite=overwrite,
            retry_failed=retry_failed,
            runtime=runtime,
            weights=weights,
            max_pixels=max_pixels,
            limit=limit,
            decode_threads=decode_threads,
            progress=progress,
            on_batch=on_batch,
            precision=precision,
        )


def _embed_ray_locked(
    dataset: Any,
    bb: Any,
    path: Path,
    *,
    backbone_name: str,
    address: str | None,
    num_workers: int,
    num_gpus_per_worker: float | None,
    num_cpus_per_worker: float,
    batch_size: int,
    tta: bool,
    overwrite: bool,
    retry_failed: bool,
    runtime: str,
    weights: Any,
    max_pixels: int | None,
    limit: int | None,
    decode_threads: int,
    progress: bool,
    on_batch: Callable[[int], None] | None,
    precision: str = "auto",
) -> EmbeddingStore:
    import pandas as pd

    from .embeddings import _embed_locked, finish_run, record_batch

    ray = require_ray()
    # Open (or create) the store with exactly the single-process checks (same fingerprint and
    # options, repair of a killed writer's tail); limit=0 embeds nothing there.
    store = _embed_locked(
        dataset,
        bb,
        path,
        batch_size=batch_size,
        workers=0,
        tta=tta,
        progress=False,
        overwrite=overwrite,
        retry_failed=retry_failed,
        max_pixels=max_pixels,
        limit=0,
        on_batch=None,
    )
    fp_hash = bb.fingerprint_hash()
    todo_ids, todo_paths, run = _todo(dataset, store, retry_failed, limit)
    t0 = time.perf_counter()
    if todo_ids:
        from ._progress import progress_bar

        todo = pd.DataFrame({"image_id": todo_ids, "path": todo_paths})
        with ray_session(address, num_cpus=max(_local_cpus(), int(np.ceil(num_workers * num_cpus_per_worker)))):
            _configure_data_context(ray, progress=False)
            gpus = _gpus_per_worker(ray, num_gpus_per_worker, num_workers)
            ds = _dataset_of(ray, todo, batch_size, num_workers).map_batches(
                EmbedActor,
                fn_constructor_kwargs={
                    "backbone": backbone_name,
                    "weights": weights,
                    "runtime": runtime,
                    "device": "cuda" if gpus > 0 else "cpu",
                    "tta": tta,
                    "decode_threads": decode_threads,
                    "max_pixels": max_pixels,
                    "precision": precision if gpus > 0 else "fp32",
                },
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=int(num_workers)),
                num_cpus=num_cpus_per_worker,
                num_gpus=gpus or None,
            )
            committed: set[str] = set()
            desc = f"embed {backbone_name} on Ray x{num_workers}"
            with progress_bar(len(todo), desc, unit="img", enabled=progress) as bar:
                for out_batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    ids_ok, rows_ok, fails = _ray_batch_rows(out_batch, committed, fp_hash)
                    vecs = out_batch["vector"][rows_ok] if rows_ok else np.zeros((0, store.dim), np.float32)
                    record_batch(store, run, bar, ids_ok, vecs, fails, on_batch)
    return finish_run(store, run, t0, progress=progress, nothing_to_do=not todo_ids)


def _todo(
    dataset: Any, store: EmbeddingStore, retry_failed: bool, limit: int | None
) -> tuple[list[str], list[str], Any]:
    """The ids and paths still to embed into ``store`` (each id once, at most ``limit``; recorded failures
    only with ``retry_failed``) and the run that accounts for them."""
    from .embeddings import EmbedRun

    all_ids = dataset.frame["image_id"].astype(str).tolist()
    done = set(store.ids.tolist())
    if not retry_failed:
        done |= set(store.failures["image_id"].tolist())
    todo_ids, todo_paths, seen = [], [], set()
    for i, image_id in enumerate(all_ids):
        if image_id in done or image_id in seen:
            continue
        seen.add(image_id)
        todo_ids.append(image_id)
        todo_paths.append(str(dataset.image_path(i)))
    if limit is not None:
        todo_ids, todo_paths = todo_ids[: max(0, int(limit))], todo_paths[: max(0, int(limit))]
    run = EmbedRun(store=store.path, total=len(set(all_ids)), already=len(done & set(all_ids)))
    return todo_ids, todo_paths, run


def _ray_batch_rows(
    out_batch: dict[str, np.ndarray], committed: set[str], fp_hash: str
) -> tuple[list[str], list[int], list[PhotoFailure]]:
    """The embedded ids (and their rows in ``out_batch``) and the failures of one batch from the actors,
    each image once (``committed`` grows); refuses vectors made with other backbone weights."""
    bad_fp = {str(f) for f in out_batch["fingerprint"]} - {fp_hash}
    if bad_fp:
        raise InvalidInput(
            f"a Ray worker embedded with different backbone weights (fingerprint {sorted(bad_fp)[0]} vs "
            f"{fp_hash} here); install the same geoscout and weights on every node"
        )
    ids_ok: list[str] = []
    rows_ok: list[int] = []
    fails: list[PhotoFailure] = []
    for k, image_id in enumerate(out_batch["image_id"]):
        image_id = str(image_id)
        if image_id in committed:  # a block re-run after a worker died: never store it twice
            continue
        committed.add(image_id)
        failure = str(out_batch["failure"][k])
        if failure:
            fails.append(PhotoFailure(**json.loads(failure)).named(image_id))
        else:
            ids_ok.append(image_id)
            rows_ok.append(k)
    return ids_ok, rows_ok, fails


# ----------------------------------------------------------------------------------------------
# Locating
# ----------------------------------------------------------------------------------------------
class LocateActor:
    """Ray Data actor: builds the :class:`~geoscout.locator.Locator` once, then locates one batch of
    photos per call. Output: ``index`` (position in the input) and ``prediction`` (JSON of
    :meth:`Prediction.to_dict`)."""

    def __init__(
        self,
        model: Any,
        *,
        weights: str | None = None,
        runtime: str = "auto",
        refine: Any = None,
        geocode: bool = True,
        device: str = "cpu",
        top_k: int = 5,
        guess: str | None = None,
    ) -> None:
        from .locator import Locator, load_model

        self.locator = (
            model
            if isinstance(model, Locator)
            else load_model(
                model, weights=weights, runtime=runtime, refine=refine, geocode=geocode, device=device, guess=guess
            )
        )
        self.top_k = int(top_k)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        preds = self.locator.locate(paths, top_k=self.top_k)
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "prediction": np.asarray([json.dumps(p.to_dict(), ensure_ascii=False) for p in preds], dtype=object),
        }


def locate_ray(
    paths: Sequence[str | os.PathLike[str]],
    model: str | os.PathLike[str] | Locator = "geoscout-lite",
    *,
    address: str | None = "auto",
    num_workers: int = 2,
    num_gpus_per_worker: float | None = None,
    num_cpus_per_worker: float = 1,
    top_k: int = 5,
    batch_size: int = 16,
    weights: str | None = None,
    runtime: str = "auto",
    refine: Any = None,
    geocode: bool = True,
    progress: bool | None = False,
    guess: str | None = None,
) -> list[Prediction]:
    """:meth:`Locator.locate` for many photos on a Ray cluster; one prediction per path, in input order.

    ``model`` is a name or bundle folder (each actor calls :func:`~geoscout.locator.load_model`
    once; on a multi-node cluster the folder must be readable on every node) or a ready
    :class:`Locator` (shipped to the actors). A photo that cannot be read gets a prediction
    with ``error`` set, as in the single-process path.
    """
    import pandas as pd

    from .locator import Locator
    from .types import Prediction

    _check_workers(num_workers, batch_size)
    if top_k < 1:
        raise InvalidInput(f"top_k must be >= 1, got {top_k}")
    paths = [str(p) for p in paths]
    if not paths:
        raise InvalidInput("no images to locate; pass at least one photo")
    ray = require_ray()
    if isinstance(model, os.PathLike) or (isinstance(model, str) and Path(model).is_dir()):
        model = str(Path(model).resolve())
    elif not isinstance(model, (str, Locator)):
        raise InvalidInput(f"model must be a model name, a bundle folder or a Locator, got {type(model).__name__}")
    frame = pd.DataFrame({"index": np.arange(len(paths), dtype=np.int64), "path": paths})
    out: list[Prediction | None] = [None] * len(paths)
    with ray_session(address, num_cpus=max(_local_cpus(), int(np.ceil(num_workers * num_cpus_per_worker)))):
        _configure_data_context(ray, progress=False)
        gpus = _gpus_per_worker(ray, num_gpus_per_worker, num_workers)
        ds = _dataset_of(ray, frame, batch_size, num_workers).map_batches(
            LocateActor,
            fn_constructor_kwargs={
                "model": model,
                "weights": weights,
                "runtime": runtime,
                "refine": refine,
                "geocode": geocode,
                "device": "cuda" if gpus > 0 else "cpu",
                "top_k": top_k,
                "guess": guess,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=int(num_workers)),
            num_cpus=num_cpus_per_worker,
            num_gpus=gpus or None,
        )
        from ._progress import progress_bar

        with progress_bar(len(paths), f"locate on Ray x{num_workers}", unit="photo", enabled=progress) as bar:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for idx, js in zip(b["index"], b["prediction"]):
                    out[int(idx)] = Prediction.from_dict(json.loads(str(js)))
                bar.update(len(b["index"]))
    missing = [paths[i] for i, p in enumerate(out) if p is None]
    if missing:  # pragma: no cover - Ray Data returns every row or raises
        raise InvalidInput(f"Ray returned no answer for {len(missing)} photo(s), e.g. {missing[0]}; run again")
    return out  # type: ignore[return-value]
