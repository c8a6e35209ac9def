"""The :class:`Dataset`: a folder with ``images/`` and one ``manifest.parquet``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoscout._io import atomic_path
from geoscout.errors import InvalidInput

from .schema import FORMAT_VERSION, MANIFEST_NAME, normalize_frame, validate_frame

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Dataset"]

_META_KEY = b"geoscout"


class Dataset:
    """A set of geotagged images: ``root`` folder + ``frame`` (one row per image, manifest schema).

    ``Dataset.open(root)`` reads ``root/manifest.parquet``; ``Dataset.create(root, frame)`` writes one.
    A dataset imported in memory (``load_dataset`` on a CSV) is not ``writable``.
    """

    def __init__(
        self, root: str | os.PathLike[str], frame: pd.DataFrame, *, name: str | None = None, writable: bool = False
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        df = normalize_frame(frame)
        validate_frame(df, what=f"dataset {self.root}")
        self.frame = df
        self.name = name or self.root.name
        self._writable = writable
        self.problems: list[Any] = []  #: rows left out when a CSV was imported in memory (importers.Problem)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Dataset:
        """Open the geoscout dataset folder ``root`` (reads ``root/manifest.parquet``)."""
        import pyarrow.parquet as pq

        root = Path(root).expanduser()
        manifest = root / MANIFEST_NAME if root.is_dir() or not root.suffix else root
        if not manifest.is_file():
            raise InvalidInput(
                f"{root}: no {MANIFEST_NAME} there; create a dataset with `geoscout import SRC -o {root}` "
                "or open a CSV / photo folder with geoscout.data.load_dataset"
            )
        try:
            table = pq.read_table(manifest)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InvalidInput(
                f"{manifest}: not a readable Parquet manifest ({exc}); re-create it with `geoscout import`"
            ) from None
        meta = (table.schema.metadata or {}).get(_META_KEY)
        if meta:
            version = json.loads(meta).get("format_version", 1)
            if version > FORMAT_VERSION:
                raise InvalidInput(
                    f"{manifest}: manifest format {version} is newer than this geoscout "
                    f"understands ({FORMAT_VERSION}); upgrade geoscout"
                )
        return cls(manifest.parent, table.to_pandas(), writable=os.access(manifest.parent, os.W_OK))

    @classmethod
    def create(cls, root: str | os.PathLike[str], frame: pd.DataFrame, *, overwrite: bool = False) -> Dataset:
        """Make ``root`` a dataset folder holding ``frame`` as its manifest (written atomically).

        Raises :class:`InvalidInput` if ``root`` already holds a manifest and ``overwrite`` is False.
        """
        root = Path(root).expanduser()
        if (root / MANIFEST_NAME).exists() and not overwrite:
            raise InvalidInput(
                f"{root}: already holds a {MANIFEST_NAME}; pass overwrite=True to replace it or choose another folder"
            )
        root.mkdir(parents=True, exist_ok=True)
        ds = cls(root, frame, writable=True)
        ds.save()
        return ds

    # -- persistence ----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """``root/manifest.parquet``."""
        return self.root / MANIFEST_NAME

    @property
    def writable(self) -> bool:
        """True when :meth:`save` may write ``manifest.parquet`` (not for in-memory imports)."""
        return self._writable

    def save(self) -> Path:
        """Validate and write the manifest atomically to ``root/manifest.parquet``; returns its path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._writable:
            raise InvalidInput(
                f"dataset {self.name!r} was imported in memory from {self.root} and is not writable; "
                f"write it as a dataset folder with `geoscout import {self.root} -o OUT` or Dataset.create(OUT, ds.frame)"
            )
        self.frame = normalize_frame(self.frame)
        validate_frame(self.frame, what=f"dataset {self.root}")
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = json.dumps({"format_version": FORMAT_VERSION}).encode()
        table = table.replace_schema_metadata(meta)
        with atomic_path(self.manifest_path) as tmp:
            pq.write_table(table, tmp)
        return self.manifest_path

    def to_csv(self, path: str | os.PathLike[str], *, absolute_paths: bool = False) -> Path:
        """Write the manifest as CSV atomically (``path,lat,lon`` first, like ``../shared/data``).

        Image paths are written relative to the CSV's folder when the image lies under it (so
        ``import_csv`` reads the file back), else absolute; ``absolute_paths=True`` forces absolute.
        """
        path = Path(path).expanduser()
        base = path.parent.resolve()
        df = self.frame.copy()
        rel = []
        for p in self.image_paths():
            try:
                rel.append(p.as_posix() if absolute_paths else p.relative_to(base).as_posix())
            except ValueError:
                rel.append(p.as_posix())
        df["path"] = rel
        cols = ["path", "lat", "lon"] + [c for c in df.columns if c not in ("path", "lat", "lon")]
        with atomic_path(path) as tmp:
            df[cols].to_csv(tmp, index=False)
        return path

    # -- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, root={str(self.root)!r}, images={len(self)})"

    def _abs(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.root / q

    def image_path(self, i: int | str) -> Path:
        """Absolute path of the image at row position ``i`` (int) or with image_id ``i`` (str)."""
        if isinstance(i, str):
            hit = self.frame.index[self.frame["image_id"] == i]
            if not len(hit):
                raise InvalidInput(f"dataset {self.name!r}: no image with image_id {i!r}")
            return self._abs(self.frame.at[hit[0], "path"])
        n = len(self.frame)
        if not -n <= int(i) < n:
            raise InvalidInput(f"dataset {self.name!r}: row {i} out of range (it has {n} images)")
        return self._abs(self.frame["path"].iloc[int(i)])

    def image_paths(self) -> list[Path]:
        """Absolute paths of all images, in row order."""
        return [self._abs(p) for p in self.frame["path"]]
