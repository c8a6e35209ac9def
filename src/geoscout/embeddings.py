"""Embed images with a backbone into a resumable, crash-safe :class:`EmbeddingStore`.

A store is a folder:

- ``meta.json``: format version, dim, dtype, the backbone fingerprint (name, weights SHA-256,
  preprocessing) and the embedding options (TTA);
- ``vectors.f16``: a raw little-endian float16 (N, dim) matrix, appended batch by batch;
- ``ids.txt``: one image id per line, row-aligned with the matrix;
- ``failures.csv``: images that could not be embedded (image_id, path, reason, kind: the
  :class:`~geoscout.errors.PhotoFailure` kind; stores written before the kinds lack the column and read
  as kind ``unknown``);
- ``index.json``: how many rows of the three files above are committed.

A batch is committed by appending (and fsyncing) its rows, then atomically replacing
``index.json``. Bytes past the committed counts (from a killed run) are ignored by readers and
truncated by the next writer, so a killed run loses at most the batch in flight and the store
never holds a half-written row.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoscout._io import atomic_write_json, atomic_write_text, cache_dir
from geoscout.errors import InvalidInput, PhotoFailure, failure_of
from geoscout.geo import l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from geoscout.backbones.base import Backbone
    from geoscout.data import Dataset

__all__ = [
    "EmbedRun",
    "EmbeddingStore",
    "default_store_path",
    "embed_dataset",
    "embed_images",
    "load_pooled",
    "pool_vectors",
    "write_pooled",
]

FORMAT_VERSION = 1
_META, _INDEX, _VECTORS, _IDS, _FAILURES = "meta.json", "index.json", "vectors.f16", "ids.txt", "failures.csv"
_FAILURE_COLUMNS = ["image_id", "path", "reason", "kind"]
_F16 = np.dtype("<f2")


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so tuples/lists compare equal with what was stored."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _numerics(fingerprint: dict[str, Any]) -> str:
    """``int8 (<scheme>)`` for a quantised backbone's fingerprint, else ``fp32``."""
    q = fingerprint.get("quantization")
    return f"int8 ({q})" if q else "fp32"


def _l2(x: np.ndarray) -> np.ndarray:
    return l2_normalize(x).astype(np.float32, copy=False)


def pool_vectors(vectors: np.ndarray, keys: Sequence[Any], *, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the rows sharing a key (e.g. the views of one panorama).

    Returns ``(unique_keys, means)`` with keys in order of first appearance; means are float32
    and re-L2-normalised unless ``normalize=False``. NaN rows are ignored.
    """
    keys_arr = np.asarray([str(k) for k in keys])
    if len(keys_arr) != len(vectors):
        raise InvalidInput(f"pool_by: {len(keys_arr)} keys for {len(vectors)} vectors; give one key per row")
    if len(keys_arr) == 0:
        return keys_arr, np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    uniq, first, inverse = np.unique(keys_arr, return_index=True, return_inverse=True)
    order = np.argsort(first)  # order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse]
    v = np.asarray(vectors, dtype=np.float32)
    ok = np.isfinite(v).all(axis=1)
    sums = np.zeros((len(uniq), v.shape[1]), np.float64)
    np.add.at(sums, group[ok], v[ok])
    counts = np.bincount(group[ok], minlength=len(uniq)).astype(np.float64)
    means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    means[counts == 0] = np.nan
    if normalize:
        good = counts > 0
        means[good] = _l2(means[good])
    return uniq[order], means


class EmbeddingStore:
    """A folder of float16 embeddings keyed by image id (see the module docstring for the layout)."""

    def __init__(self, path: Path, meta: dict[str, Any], rows: int, n_failures: int) -> None:
        self.path = Path(path)
        self.meta = meta
        self._rows = rows
        self._n_failures = n_failures
        self._ids: np.ndarray | None = None
        self._failures: pd.DataFrame | None = None
        self.last_run: EmbedRun | None = None

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """True if ``path`` holds a store (its meta.json)."""
        return (Path(path) / _META).is_file()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EmbeddingStore:
        """Open a store for reading; only committed rows are visible."""
        p = Path(path)
        if not cls.exists(p):
            raise InvalidInput(f"{p}: not an embedding store (no {_META}); create one with `geoscout embed DATASET`")
        try:
            meta = json.loads((p / _META).read_text())
            index = json.loads((p / _INDEX).read_text()) if (p / _INDEX).is_file() else {"rows": 0, "failures": 0}
        except ValueError as exc:
            raise InvalidInput(f"{p}: damaged store metadata ({exc}); re-create it with --overwrite") from None
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise InvalidInput(
                f"{p}: store format {meta.get('format_version')} is newer than this geoscout; upgrade geoscout"
            )
        rows, nf = int(index.get("rows", 0)), int(index.get("failures", 0))
        dim = int(meta["dim"])
        have = (p / _VECTORS).stat().st_size if (p / _VECTORS).is_file() else 0
        if have < rows * dim * _F16.itemsize:
            raise InvalidInput(
                f"{p}: {_VECTORS} holds fewer rows than {_INDEX} says ({rows}); the store is damaged, "
                "re-create it with --overwrite"
            )
        return cls(p, meta, rows, nf)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        fingerprint: dict[str, Any],
        dim: int,
        *,
        options: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> EmbeddingStore:
        """Create an empty store (``overwrite=True`` replaces an existing one)."""
        p = Path(path)
        if cls.exists(p) and not overwrite:
            raise InvalidInput(f"{p}: a store already exists; open it, or pass overwrite=True / --overwrite")
        p.mkdir(parents=True, exist_ok=True)
        for f in (_META, _INDEX, _VECTORS, _IDS, _FAILURES, "panoramas.npz"):
            (p / f).unlink(missing_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": int(dim),
            "dtype": "float16",
            "fingerprint": _jsonable(fingerprint),
            "options": _jsonable(options or {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(_jsonable(extra) if extra else {}),
        }
        (p / _VECTORS).touch()
        (p / _IDS).touch()
        atomic_write_text(p / _FAILURES, ",".join(_FAILURE_COLUMNS) + "\n")
        atomic_write_json(p / _INDEX, {"rows": 0, "failures": 0})
        atomic_write_json(p / _META, meta)  # last: its presence marks a complete empty store
        return cls(p, meta, 0, 0)

    # -- reading -------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> dict[str, Any]:
        """The backbone fingerprint the vectors were made with."""
        return self.meta["fingerprint"]

    @property
    def options(self) -> dict[str, Any]:
        """Embedding options (``tta``)."""
        return self.meta.get("options", {})

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def backbone_name(self) -> str:
        return str(self.fingerprint.get("backbone", ""))

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return (
            f"EmbeddingStore({str(self.path)!r}, backbone={self.backbone_name!r}, rows={self._rows}, "
            f"dim={self.dim}, failures={len(self.failures)})"
        )

    @property
    def ids(self) -> np.ndarray:
        """Image ids (str), row-aligned with :attr:`vectors`."""
        if self._ids is None or len(self._ids) != self._rows:
            lines: list[str] = []
            if self._rows:
                with open(self.path / _IDS, encoding="utf-8") as fh:
                    for line in fh:
                        if len(lines) >= self._rows:
                            break
                        lines.append(line.rstrip("\n"))
            if len(lines) < self._rows:
                raise InvalidInput(
                    f"{self.path}: {_IDS} holds fewer ids than committed rows; re-create with --overwrite"
                )
            self._ids = np.asarray(lines, dtype=str) if lines else np.zeros(0, dtype="<U16")
        return self._ids

    @property
    def vectors(self) -> np.ndarray:
        """The (N, dim) float16 matrix, memory-mapped read-only."""
        if self._rows == 0:
            return np.zeros((0, self.dim), np.float16)
        return np.memmap(self.path / _VECTORS, dtype=_F16, mode="r", shape=(self._rows, self.dim))

    def load(self, ids: Iterable[str] | None = None) -> np.ndarray:
        """float32 copy of all vectors, or of the rows of ``ids`` (in that order; unknown ids raise)."""
        v = self.vectors
        if ids is None:
            return np.asarray(v, dtype=np.float32)
        pos = self.positions(ids)
        if (pos < 0).any():
            bad = [i for i, q in zip(list(ids), pos) if q < 0][:5]
            raise InvalidInput(
                f"{self.path}: {int((pos < 0).sum())} id(s) not in the store, e.g. {bad}; run `geoscout embed` again"
            )
        return np.asarray(v[pos], dtype=np.float32)

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """Row index of each id, -1 where absent."""
        lookup = {k: i for i, k in enumerate(self.ids.tolist())}
        return np.asarray([lookup.get(str(k), -1) for k in ids], dtype=np.int64)

    @property
    def failures(self) -> pd.DataFrame:
        """Images that could not be embedded: image_id, path, reason, kind (a
        :data:`~geoscout.errors.FAILURE_KINDS` value; ``unknown`` in stores written before the kinds).
        Ids embedded later are left out."""
        import pandas as pd

        if self._failures is None:
            if self._n_failures:
                df = pd.read_csv(self.path / _FAILURES, dtype=str, keep_default_na=False, nrows=self._n_failures)
                if "kind" not in df.columns:
                    df["kind"] = "unknown"
            else:
                df = pd.DataFrame({c: [] for c in _FAILURE_COLUMNS}, dtype=str)
            if len(df):
                df = df[~df["image_id"].isin(set(self.ids.tolist()))]
                df = df.drop_duplicates("image_id", keep="last").reset_index(drop=True)
            self._failures = df
        return self._failures

    def pool_by(
        self, keys: Sequence[Any] | Mapping[str, Any], *, normalize: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean vector per key: ``keys`` is one key per row (aligned with :attr:`ids`) or a mapping
        image_id -> key (ids it lacks keep their own id). Returns ``(unique_keys, float32 means)``."""
        is_series = hasattr(keys, "index") and hasattr(keys, "to_dict") and not isinstance(keys, np.ndarray)
        if is_series and type(keys.index).__name__ == "RangeIndex":  # type: ignore[union-attr]
            keys = list(keys)  # a plain column, row-aligned
        elif isinstance(keys, Mapping) or is_series:
            m: Any = keys.to_dict() if is_series else keys  # type: ignore[union-attr]
            keys = [m.get(i, i) for i in self.ids.tolist()]
        return pool_vectors(self.load(), list(keys), normalize=normalize)

    # -- writing -------------------------------------------------------------------------------
    def _repair(self) -> None:
        """Cut anything past the committed counts (left by a killed writer)."""
        want = self._rows * self.dim * _F16.itemsize
        vp = self.path / _VECTORS
        if vp.stat().st_size != want:
            os.truncate(vp, want)
        ids = self.path / _IDS
        with open(ids, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != self._rows:
            atomic_write_text(ids, "".join(line + "\n" for line in lines[: self._rows]))
        with open(self.path / _FAILURES, encoding="utf-8", newline="") as fh:
            records = list(csv.reader(fh))
        if len(records) - 1 != self._n_failures:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(records[: self._n_failures + 1] or [_FAILURE_COLUMNS])
            atomic_write_text(self.path / _FAILURES, buf.getvalue())

    def _add_kind_column(self) -> None:
        """Give a store written before the failure kinds its ``kind`` column (``unknown`` on the committed rows)."""
        with open(self.path / _FAILURES, encoding="utf-8", newline="") as fh:
            records = list(csv.reader(fh))
        if records and "kind" in records[0]:
            return
        rows = records[1 : self._n_failures + 1]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([_FAILURE_COLUMNS, *[[*r, "unknown"] for r in rows]])
        atomic_write_text(self.path / _FAILURES, buf.getvalue())

    def append(self, ids: Sequence[str], vectors: np.ndarray, failures: Sequence[PhotoFailure] = ()) -> None:
        """Commit one batch: rows (ids + vectors) and failure records (``image_id``, ``source`` as the path,
        ``message`` as the reason, ``kind``), then the index (atomically)."""
        vectors = np.asarray(vectors)
        if len(ids) != len(vectors) or (len(vectors) and vectors.shape[1] != self.dim):
            raise InvalidInput(f"append: {len(ids)} ids for vectors of shape {vectors.shape} (dim {self.dim})")
        for i in ids:
            if not i or "\n" in i:
                raise InvalidInput(f"append: invalid image id {i!r}")
        if len(ids):
            with open(self.path / _VECTORS, "ab") as fh:
                fh.write(np.ascontiguousarray(vectors, dtype=_F16).tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            with open(self.path / _IDS, "a", encoding="utf-8") as fh:
                fh.write("".join(f"{i}\n" for i in ids))
                fh.flush()
                os.fsync(fh.fileno())
        if failures:
            self._add_kind_column()
            with open(self.path / _FAILURES, "a", encoding="utf-8", newline="") as fh:
                csv.writer(fh, lineterminator="\n").writerows(
                    [[str(f.image_id), str(f.source or ""), f.message, f.kind] for f in failures]
                )
                fh.flush()
                os.fsync(fh.fileno())
        atomic_write_json(
            self.path / _INDEX, {"rows": self._rows + len(ids), "failures": self._n_failures + len(failures)}
        )
        self._rows += len(ids)
        self._n_failures += len(failures)
        self._ids = None if self._ids is None else np.concatenate([self._ids, np.asarray(list(ids), dtype=str)])
        self._failures = None


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------
def default_store_path(dataset: Dataset, backbone_name: str) -> Path:
    """``<dataset>/embeddings/<backbone>`` when the dataset folder is writable, else
    ``cache_dir("embeddings", "<dataset-name>-<hash of its absolute root>", "<backbone>")``."""
    from geoscout.backbones import safe_name

    root = Path(dataset.root).resolve()
    if getattr(dataset, "writable", False) and os.access(root, os.W_OK):
        return root / "embeddings" / safe_name(backbone_name)
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return cache_dir("embeddings", f"{safe_name(str(dataset.name))}-{tag}", safe_name(backbone_name))


# ----------------------------------------------------------------------------------------------
# The decode -> preprocess -> encode pipeline
# ----------------------------------------------------------------------------------------------
@dataclass
class EmbedRun:
    """What one :func:`embed_dataset` call did."""

    store: Path
    total: int
    already: int
    embedded: int = 0
    #: the images that could not be embedded, each with its ``image_id``
    failed: list[PhotoFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        n = self.embedded + len(self.failed)
        return n / self.seconds if self.seconds > 0 else 0.0

    @property
    def mostly_failed(self) -> bool:
        """More than half of the images this run tried could not be embedded (the CLI's exit status 1)."""
        return 2 * len(self.failed) > self.embedded + len(self.failed)

    def summary(self) -> str:
        kinds = Counter(f.kind for f in self.failed).most_common()
        by_kind = f" ({', '.join(f'{n} {k}' for k, n in kinds)})" if kinds else ""
        lines = [
            f"{self.store}: {self.embedded} embedded, {len(self.failed)} failed{by_kind}, {self.already} already done "
            f"(of {self.total}) in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s)"
        ]
        lines += [f"  skipped [{f.kind}] {f.message}" for f in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more (see {self.store / _FAILURES})")
        return "\n".join(lines)


def _decode(src: Any, backbone: Backbone, max_pixels: int) -> np.ndarray | PhotoFailure:
    """One image -> preprocessed (3,S,S) array, or why it failed (never raises)."""
    try:
        return backbone.preprocess(backbone.load_image(src, max_pixels=max_pixels))
    except Exception as exc:  # MemoryError included: one photo must not end the batch
        from geoscout.imageio import describe_source

        return failure_of(exc, source=describe_source(src))


def _batches(
    items: Sequence[Any], backbone: Backbone, *, batch_size: int, workers: int, max_pixels: int, prefetch: int = 2
) -> Iterator[tuple[int, list[np.ndarray | PhotoFailure]]]:
    """Yield ``(start, decoded)`` per batch, decoding up to ``prefetch`` batches ahead in worker threads."""
    n = len(items)
    starts = range(0, n, batch_size)
    if workers <= 0:
        for s in starts:
            yield s, [_decode(x, backbone, max_pixels) for x in items[s : s + batch_size]]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geoscout-decode")
    queue: deque[tuple[int, list[Future]]] = deque()
    it = iter(starts)
    try:

        def submit_next() -> None:
            s = next(it, None)
            if s is not None:
                queue.append((s, [pool.submit(_decode, x, backbone, max_pixels) for x in items[s : s + batch_size]]))

        for _ in range(prefetch + 1):
            submit_next()
        while queue:
            s, futs = queue.popleft()
            submit_next()
            yield s, [f.result() for f in futs]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def embed_images(
    images: Sequence[Any],
    backbone: str | Backbone = "effnet-lite2",
    *,
    batch_size: int = 32,
    tta: bool = False,
    workers: int = 2,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, dict[int, PhotoFailure]]:
    """Embed paths / bytes / PIL images. Returns ``(vectors (n, dim) float32, {index: failure})``;
    rows of images that failed are NaN. A failure's ``source`` is the path (``<N bytes>`` or
    ``<PIL image ...>`` for in-memory images) and its ``image_id`` is unset."""
    from geoscout.backbones import create_backbone
    from geoscout.imageio import DEFAULT_MAX_PIXELS

    bb = create_backbone(backbone) if isinstance(backbone, str) else backbone
    out = np.full((len(images), bb.dim), np.nan, np.float32)
    failed: dict[int, PhotoFailure] = {}
    for start, decoded in _batches(
        list(images), bb, batch_size=batch_size, workers=workers, max_pixels=max_pixels or DEFAULT_MAX_PIXELS
    ):
        ok = [i for i, d in enumerate(decoded) if not isinstance(d, PhotoFailure)]
        for i, d in enumerate(decoded):
            if isinstance(d, PhotoFailure):
                failed[start + i] = d
        if ok:
            arrays = [d for d in decoded if not isinstance(d, PhotoFailure)]
            out[[start + i for i in ok]] = bb.encode_batch(np.stack(arrays), tta=tta)
    return out, failed


def embed_dataset(
    dataset: Dataset | str | os.PathLike[str],
    backbone: str | Backbone = "effnet-lite2",
    out: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 32,
    workers: int = 2,
    tta: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    retry_failed: bool = False,
    runtime: str = "auto",
    weights: Any = None,
    max_pixels: int | None = None,
    limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    device: str = "cpu",
    precision: str = "auto",
) -> EmbeddingStore:
    """Embed every image of ``dataset`` into a store (default :func:`default_store_path`) and return it.

    Resumable: ids already in the store (or recorded as failures, unless ``retry_failed``) are
    skipped, so a re-run of a complete store is a no-op; each batch is committed on its own.
    A store made with another backbone fingerprint or TTA setting raises unless ``overwrite``.
    Images that cannot be decoded are recorded in ``store.failures`` and the summary; the run goes on.
    ``limit`` embeds at most that many new images (for smoke tests); ``on_batch(n_done)`` is called
    after each commit. The run's statistics are in ``store.last_run``. ``device`` (cpu, cuda, cuda:N, auto) and
    ``precision`` (auto = bf16/fp16 autocast on a GPU) apply when ``backbone`` is a name.
    """
    from geoscout.backbones import Backbone, create_backbone

    if not hasattr(dataset, "frame"):
        from geoscout.data import load_dataset

        dataset = load_dataset(dataset, warn=False)  # its bad rows go to the failures
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
    bb = (
        backbone
        if isinstance(backbone, Backbone)
        else create_backbone(backbone, weights=weights, runtime=runtime, device=device, precision=precision)
    )
    path = Path(out) if out is not None else default_store_path(dataset, bb.name)  # type: ignore[arg-type]
    with _writer_lock(path, progress=progress):
        return _embed_locked(
            dataset,
            bb,
            path,
            batch_size=batch_size,
            workers=workers,
            tta=tta,
            progress=progress,
            overwrite=overwrite,
            retry_failed=retry_failed,
            max_pixels=max_pixels,
            limit=limit,
            on_batch=on_batch,
        )


@contextlib.contextmanager
def _writer_lock(path: Path, *, progress: bool) -> Iterator[None]:
    """One writer per store: an exclusive ``flock`` on ``<store>/.lock`` (others wait, then resume)."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"{path}: another process is writing this store; waiting for it to finish", file=sys.stderr)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _embed_locked(
    dataset: Any,
    bb: Backbone,
    path: Path,
    *,
    batch_size: int,
    workers: int,
    tta: bool,
    progress: bool,
    overwrite: bool,
    retry_failed: bool,
    max_pixels: int | None,
    limit: int | None,
    on_batch: Callable[[int], None] | None,
) -> EmbeddingStore:
    from geoscout.imageio import DEFAULT_MAX_PIXELS

    fp, opts = _jsonable(bb.fingerprint()), _jsonable({"tta": bool(tta)})
    if EmbeddingStore.exists(path) and not overwrite:
        store = EmbeddingStore.open(path)
        if store.fingerprint != fp or store.options != opts:
            raise InvalidInput(
                f"{path}: the store was made with {store.fingerprint.get('backbone')} "
                f"(weights {str(store.fingerprint.get('weights_sha256'))[:12]}, {_numerics(store.fingerprint)}, "
                f"options {store.options}) but this run uses {fp['backbone']} (weights {str(fp['weights_sha256'])[:12]}, "
                f"{_numerics(fp)}, options {opts}); pass --overwrite to replace it or -o to write elsewhere"
            )
        store._repair()
    else:
        store = EmbeddingStore.create(
            path,
            fp,
            bb.dim,
            options=opts,
            overwrite=True,
            extra={"dataset": {"name": str(dataset.name), "root": str(Path(dataset.root).resolve())}},
        )
    frame = dataset.frame
    done = set(store.ids.tolist())
    recorded = set(store.failures["image_id"].tolist())
    if not retry_failed:
        done |= recorded
    left_out = [f for f in _problem_failures(dataset) if f.image_id not in recorded]
    todo: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for i, image_id in enumerate(frame["image_id"].astype(str).tolist()):
        if image_id in done or image_id in seen:
            continue
        seen.add(image_id)
        todo.append((image_id, dataset.image_path(i)))
    if limit is not None:
        todo = todo[: max(0, int(limit))]
    run = EmbedRun(
        store=path,
        total=len(set(frame["image_id"].astype(str))),
        already=len(done & set(frame["image_id"].astype(str))),
    )
    t0 = time.perf_counter()
    if left_out:  # rows of a CSV dataset that never became images: every one is a recorded failure
        store.append([], np.zeros((0, bb.dim), np.float32), left_out)
        run.failed.extend(left_out)
    if todo:
        from geoscout._progress import progress_bar

        with progress_bar(len(todo), f"embed {bb.name}", unit="img", enabled=progress) as bar:
            for start, decoded in _batches(
                [p for _, p in todo],
                bb,
                batch_size=batch_size,
                workers=workers,
                max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
            ):
                chunk = todo[start : start + len(decoded)]
                ok = [k for k, d in enumerate(decoded) if not isinstance(d, PhotoFailure)]
                fails = [d.named(chunk[k][0]) for k, d in enumerate(decoded) if isinstance(d, PhotoFailure)]
                arrays = [d for d in decoded if not isinstance(d, PhotoFailure)]
                vecs = bb.encode_batch(np.stack(arrays), tta=tta) if ok else np.zeros((0, bb.dim))
                record_batch(store, run, bar, [chunk[k][0] for k in ok], vecs, fails, on_batch)
    return finish_run(store, run, t0, progress=progress, nothing_to_do=not todo)


#: the failure kind of a dataset problem (``Problem.kind``); any other problem is ``invalid``
_PROBLEM_KINDS: dict[str, Any] = {
    "missing_file": "missing",
    "not_a_file": "not_a_file",
    "unreadable_image": "decode_error",
    "not_image": "not_an_image",
}


def _problem_failures(dataset: Any) -> list[PhotoFailure]:
    """Failures for the rows a CSV dataset left out when it was read (``dataset.problems``).
    The id names the CSV row (``row N``), so a re-run records each once."""
    out = []
    for p in getattr(dataset, "problems", None) or []:
        where = f"row {p.row}" if p.row is not None else str(p.path)
        if p.failure is not None:  # made where the image failed: carried as it is, named by its row
            out.append(p.failure.named(where, source=str(p.path)))
        else:  # a problem with the row itself (coordinates, values, a missing file)
            out.append(PhotoFailure(_PROBLEM_KINDS.get(p.kind, "invalid"), f"{p.kind}: {p.reason}", str(p.path), where))
    return out


def record_batch(
    store: EmbeddingStore,
    run: EmbedRun,
    bar: Any,
    ids: Sequence[str],
    vectors: np.ndarray,
    fails: Sequence[PhotoFailure],
    on_batch: Callable[[int], None] | None,
) -> None:
    """Commit one embedded batch (vectors and failures) to ``store`` and account for it in ``run`` and ``bar``."""
    store.append(list(ids), vectors, fails)
    run.embedded += len(ids)
    run.failed.extend(fails)
    bar.update(len(ids) + len(fails))
    if fails:
        bar.set_postfix(failed=len(run.failed))
    if on_batch is not None:
        on_batch(run.embedded + len(run.failed))


def finish_run(
    store: EmbeddingStore, run: EmbedRun, t0: float, *, progress: bool, nothing_to_do: bool
) -> EmbeddingStore:
    """Stamp ``run`` on the store and print the end-of-run summary (or "up to date") when ``progress``."""
    run.seconds = time.perf_counter() - t0
    store.last_run = run
    if progress:
        if nothing_to_do:
            print(
                f"{store.path}: up to date ({len(store)} vectors, {len(store.failures)} failures); nothing to embed",
                file=sys.stderr,
            )
        else:
            print(run.summary(), file=sys.stderr)
    return store


def write_pooled(store: EmbeddingStore, dataset: Dataset, *, key: str = "location_id") -> Path:
    """Mean vector per ``key`` (default the panorama ``location_id``) of the store's rows, written to
    ``<store>/panoramas.npz`` (``keys`` str array, ``vectors`` float16); returns the path."""
    from geoscout._io import atomic_path

    frame = dataset.frame
    col = key if key in frame.columns else "image_id"
    mapping = dict(zip(frame["image_id"].astype(str), frame[col].astype(str)))
    keys, vecs = store.pool_by(mapping)
    target = store.path / "panoramas.npz"
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, keys=keys.astype(str), vectors=vecs.astype(np.float16))
    return target


def load_pooled(store: EmbeddingStore | str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``panoramas.npz`` written by :func:`write_pooled`: ``(keys, float32 vectors)``."""
    p = (store.path if isinstance(store, EmbeddingStore) else Path(store)) / "panoramas.npz"
    with np.load(p, allow_pickle=False) as z:
        return z["keys"], z["vectors"].astype(np.float32)
