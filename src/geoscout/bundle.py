"""ModelBundle: everything needed to predict, as a directory of JSON + safetensors + GeoJSON.

Layout of a bundle directory::

    config.json               format_version, backbone name + fingerprint, partition spec, head config,
                              training summary, SHA-256 of every other file
    weights.safetensors       the head's arrays
    partition.geojson         the geocell partition (absent for heads without cells, e.g. knn); stored once:
                              the head takes its cell ids and centroids from it when the bundle loads (bundles
                              written before kept a copy in the head's state, which still loads)
    retrieval.safetensors     training embeddings (float16, or int8 with a per-row scale) + lat + lon + cell index
                              + location ids
    MODEL_CARD.md             data sets, sizes, split, backbone, partition, head, validation metrics

``save`` writes into a temporary sibling directory and renames it into place, so a killed
process never leaves a half-written bundle. ``load`` reads JSON and safetensors only (never
unpickles) and checks the checksums, so a truncated or corrupted file gives a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._io import _umask, sha256_file
from .errors import InvalidInput, MissingWeights

__all__ = ["FORMAT_VERSION", "ModelBundle", "RetrievalData"]

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
PARTITION = "partition.geojson"
RETRIEVAL = "retrieval.safetensors"
CARD = "MODEL_CARD.md"


@dataclass
class RetrievalData:
    """Training embeddings for the locator's refinement: ``vectors`` (N, D) float16, ``lat``/``lon``
    (N,) degrees, ``cell`` (N,) partition index or None, ``ids`` (N,) location ids or None.

    ``int8``: stored as int8 with one float32 scale per row (max |value| / 127), half the size of float16
    (the vectors in memory are then exactly what the file gives back; see :meth:`as_int8`)."""

    vectors: NDArray[np.float16]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    cell: NDArray[np.int64] | None = None
    ids: list[str] | None = None
    int8: bool = False

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(np.asarray(self.vectors), dtype=np.float16)
        self.lat = np.asarray(self.lat, dtype=np.float64).reshape(-1)
        self.lon = np.asarray(self.lon, dtype=np.float64).reshape(-1)
        n = self.vectors.shape[0]
        if self.vectors.ndim != 2 or self.lat.shape != (n,) or self.lon.shape != (n,):
            raise InvalidInput(
                f"retrieval data: vectors {self.vectors.shape}, lat {self.lat.shape}, lon {self.lon.shape} disagree"
            )
        if self.cell is not None:
            self.cell = np.asarray(self.cell, dtype=np.int64).reshape(-1)
            if self.cell.shape != (n,):
                raise InvalidInput(f"retrieval data: cell has {self.cell.shape[0]} entries, expected {n}")
        if self.ids is not None:
            self.ids = [str(i) for i in self.ids]
            if len(self.ids) != n:
                raise InvalidInput(f"retrieval data: {len(self.ids)} ids, expected {n}")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def as_int8(self) -> RetrievalData:
        """A copy stored as int8 + per-row scale, its vectors already rounded the way the file keeps them."""
        q, scale = _quantize_int8(self.vectors)
        return RetrievalData(_dequantize_int8(q, scale), self.lat, self.lon, self.cell, self.ids, int8=True)

    def to_tensors(self) -> dict[str, NDArray[Any]]:
        t: dict[str, NDArray[Any]] = {"lat": self.lat, "lon": self.lon}
        if self.int8:
            t["vectors_int8"], t["vectors_scale"] = _quantize_int8(self.vectors)
        else:
            t["vectors"] = self.vectors
        if self.cell is not None:
            t["cell"] = self.cell
        if self.ids is not None:
            enc = [s.encode("utf-8") for s in self.ids]
            width = max([1, *(len(b) for b in enc)])
            t["ids_utf8"] = (
                np.frombuffer(b"".join(b.ljust(width, b"\0") for b in enc), dtype=np.uint8)
                .reshape(len(enc), width)
                .copy()
            )
        return t

    @classmethod
    def from_tensors(cls, t: dict[str, NDArray[Any]]) -> RetrievalData:
        ids = None
        if "ids_utf8" in t:
            raw = np.ascontiguousarray(t["ids_utf8"], dtype=np.uint8)
            ids = [bytes(row).rstrip(b"\0").decode("utf-8") for row in raw]
        if "vectors_int8" in t:
            q, scale = t["vectors_int8"], t.get("vectors_scale")
            if scale is None or q.ndim != 2 or scale.shape != (q.shape[0],):
                raise InvalidInput("retrieval data: int8 vectors need one scale per row; the bundle is corrupt")
            return cls(_dequantize_int8(q, scale), t["lat"], t["lon"], t.get("cell"), ids, int8=True)
        return cls(vectors=t["vectors"], lat=t["lat"], lon=t["lon"], cell=t.get("cell"), ids=ids)


def _quantize_int8(v: NDArray[Any]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Symmetric per-row int8: ``q = round(v / scale)``, ``scale = max |v| / 127`` (1 for an all-zero row)."""
    x = np.asarray(v, dtype=np.float32)
    scale = np.abs(x).max(axis=1) / 127.0 if x.size else np.zeros(len(x), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _dequantize_int8(q: NDArray[Any], scale: NDArray[Any]) -> NDArray[np.float16]:
    return (np.asarray(q, np.float32) * np.asarray(scale, np.float32)[:, None]).astype(np.float16)


def _save_tensors(tensors: dict[str, NDArray[Any]], path: Path, kind: str) -> None:
    from safetensors.numpy import save_file

    save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()},
        str(path),
        metadata={"format": "geoscout", "kind": kind},
    )


def _load_tensors(path: Path) -> dict[str, NDArray[Any]]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise MissingWeights(
            f"{path}: missing from the bundle; re-run `geoscout train` or copy the whole bundle folder"
        )
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError on damage
        raise InvalidInput(
            f"{path}: not a readable safetensors file ({exc}); the bundle is corrupt, re-train or re-copy it"
        ) from None


def _member(root: Path, name: object, links_within: Path | None = None) -> Path:
    """``root / name`` for a bundle file name that is one plain component whose file (if any) lies inside ``root``
    (or, for a link, inside ``links_within``: the hub cache links a snapshot's files to its ``blobs/``)."""
    bad = (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or Path(name).is_absolute()
    )
    if bad:
        raise InvalidInput(
            f"{root / CONFIG}: file entry {name!r} is not a plain file name inside the bundle; "
            "the bundle is damaged or hostile: do not use it"
        )
    assert isinstance(name, str)  # checked above
    p = root / name
    if p.is_symlink() and not p.resolve().is_relative_to((links_within or root).resolve()):
        raise InvalidInput(
            f"{p}: a link to a file outside the bundle; a bundle holds its own files (copy them in instead)"
        )
    return p


@dataclass
class ModelBundle:
    """A trained model: ``head`` + ``partition`` + ``retrieval`` data + the backbone's name.

    ``training`` is a JSON-able summary (data sets, sizes, split, validation metrics);
    ``card`` the Markdown model card.
    """

    head: Any
    partition: Any = None
    backbone_name: str = "effnet-lite2"
    backbone_fingerprint: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalData | None = None
    training: dict[str, Any] = field(default_factory=dict)
    card: str = ""
    format_version: int = FORMAT_VERSION
    #: temperature, radius scales and guess rule (:class:`geoscout.calibration.Calibration`); None = uncalibrated
    calibration: Any = None

    def check_backbone(self, fingerprint: dict[str, Any], *, name: str = "model") -> None:
        """Raise :class:`InvalidInput` naming what differs when ``fingerprint`` (the backbone's, as
        :meth:`geoscout.backbones.Backbone.fingerprint`) is not the one this model was trained with.

        Only keys stored in the bundle are compared, so bundles written before a key existed still load.
        """
        saved, now = _flatten(self.backbone_fingerprint), _flatten(fingerprint)
        diffs = [
            f"{k}: trained with {saved[k]!r}, given {now.get(k)!r}" for k in sorted(saved) if saved[k] != now.get(k)
        ]
        if diffs:
            raise InvalidInput(
                f"{name}: the backbone does not match the one this model was trained with ({'; '.join(diffs)}); "
                f"use backbone {self.backbone_name!r} with the same weights and preprocessing, or retrain"
            )

    # -- writing -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON-able part of the bundle (without file checksums)."""
        head_config, _ = self.head.get_state()
        return {
            "format_version": FORMAT_VERSION,
            "kind": "geoscout-model-bundle",
            "backbone": {"name": self.backbone_name, "fingerprint": self.backbone_fingerprint},
            "partition": None
            if self.partition is None
            else {"spec": str(getattr(self.partition, "spec", "")), "n_cells": int(self.partition.n_cells)},
            "head": head_config,
            "retrieval": None
            if self.retrieval is None
            else {
                "n": len(self.retrieval),
                "dim": int(self.retrieval.vectors.shape[1]),
                **({"storage": "int8"} if self.retrieval.int8 else {}),  # float16 (the default) is not written
            },
            "training": self.training,
            **({"calibration": self.calibration.to_dict()} if self.calibration is not None else {}),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle directory atomically (temp sibling dir, then rename); replaces an old bundle."""
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise InvalidInput(f"{target}: exists and is not a directory; choose another output path")
        target.parent.mkdir(parents=True, exist_ok=True)
        config = self.config()
        _, head_tensors = self.head.get_state()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            _save_tensors(head_tensors, tmp / WEIGHTS, "head")
            if self.partition is not None:
                self.partition.save(tmp / PARTITION)
            if self.retrieval is not None:
                _save_tensors(self.retrieval.to_tensors(), tmp / RETRIEVAL, "retrieval")
            (tmp / CARD).write_text(
                self.card or f"# geoscout model\n\nHead: {config['head'].get('name')}\n", encoding="utf-8"
            )
            config["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / CONFIG).write_text(
                json.dumps(config, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
            )
            umask = _umask()  # mkdtemp makes 0700 and files were written 0644 or 0600: give the usual modes
            for p in tmp.iterdir():
                os.chmod(p, 0o666 & ~umask)
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o777 & ~umask)
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return target

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, verify: bool = True, links_within: str | os.PathLike[str] | None = None
    ) -> ModelBundle:
        """Read a bundle directory; never unpickles. ``verify`` checks every file's SHA-256 against config.json."""
        from .heads import head_from_state

        root = Path(path)
        if not root.is_dir():
            raise MissingWeights(
                f"{root}: no such model bundle directory; train one with `geoscout train ... -o {root}`"
            )
        cfg_path = root / CONFIG
        if not cfg_path.is_file():
            raise InvalidInput(f"{root}: not a geoscout model bundle (no {CONFIG})")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{cfg_path}: unreadable or corrupt JSON ({exc}); the bundle is damaged") from None
        if not isinstance(config, dict) or "format_version" not in config or "head" not in config:
            raise InvalidInput(f"{cfg_path}: not a geoscout bundle config (no format_version / head)")
        version = config["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InvalidInput(
                f"{root}: bundle format_version {version!r} is newer than this geoscout reads ({FORMAT_VERSION}); upgrade geoscout"
            )
        files = config.get("files") or {}
        if not isinstance(files, dict):
            raise InvalidInput(f"{cfg_path}: 'files' must map file names to SHA-256 digests; the bundle is damaged")
        for name in (*files, WEIGHTS, PARTITION, RETRIEVAL, CARD):
            _member(
                root, name, None if links_within is None else Path(links_within)
            )  # plain names of files inside the bundle only: no ../, no absolute path, no link out
        if verify:
            for name, digest in files.items():
                p = root / name
                if not p.is_file():
                    raise MissingWeights(f"{p}: missing from the bundle; copy the whole bundle folder")
                if sha256_file(p) != digest:
                    raise InvalidInput(
                        f"{p}: checksum mismatch (file corrupted or truncated); re-train or re-copy the bundle"
                    )
        partition = None
        if config.get("partition") is not None:
            from .cells import load_partition

            ppath = root / PARTITION
            if not ppath.is_file():
                raise MissingWeights(f"{ppath}: missing from the bundle")
            try:
                partition = load_partition(ppath)
            except (ValueError, KeyError, json.JSONDecodeError) as exc:
                raise InvalidInput(f"{ppath}: corrupt partition file ({exc})") from None
        head = head_from_state(config["head"], _load_tensors(root / WEIGHTS), partition=partition)
        retrieval = None
        if config.get("retrieval") is not None:
            try:
                retrieval = RetrievalData.from_tensors(_load_tensors(root / RETRIEVAL))
            except KeyError as exc:
                raise InvalidInput(f"{root / RETRIEVAL}: lacks {exc}; the bundle is damaged") from None
        card = (root / CARD).read_text(encoding="utf-8") if (root / CARD).is_file() else ""
        backbone = config.get("backbone") or {}
        calibration = None
        if config.get("calibration") is not None:
            from .calibration import Calibration

            calibration = Calibration.from_dict(config["calibration"])
        return cls(
            head=head,
            partition=partition,
            backbone_name=str(backbone.get("name", "effnet-lite2")),
            backbone_fingerprint=dict(backbone.get("fingerprint") or {}),
            retrieval=retrieval,
            training=dict(config.get("training") or {}),
            card=card,
            format_version=int(version),
            calibration=calibration,
        )


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, with tuples as lists (JSON's view of them)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out
