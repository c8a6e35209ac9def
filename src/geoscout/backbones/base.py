"""The :class:`Backbone` base class: Pillow/numpy preprocessing, batched encoding, torch or ONNX Runtime."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from geoscout._io import cpu_threads, safe_name
from geoscout.errors import InvalidInput, MissingDependency
from geoscout.geo import l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Backbone",
    "BackboneInfo",
    "MissingDependency",
    "cpu_threads",
    "onnxruntime_available",
    "safe_name",
    "weights_sha256",
]

RUNTIMES = ("auto", "torch", "onnx")


def onnxruntime_available() -> bool:
    """True when ONNX Runtime is installed (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


@dataclass(frozen=True)
class BackboneInfo:
    """The pretrained configuration of a backbone (what timm calls ``pretrained_cfg``).

    ``input_size`` is the square crop in pixels; images are resized so their shorter side is
    ``resize_size`` (``interpolation``) and center-cropped. ``mean``/``std`` are in 0..255 units.
    """

    name: str
    dim: int
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    license: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def preprocessing(self) -> dict[str, Any]:
        """The parts of the config that change the pixels fed to the network (for fingerprints)."""
        d = asdict(self)
        out = {k: d[k] for k in ("input_size", "resize_size", "mean", "std", "interpolation")}
        out["jpeg_draft"] = True  # JPEGs are decoded at the smallest DCT scale >= resize_size (see Backbone.load_image)
        return out


_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def pickle_refusal(files: list[Path], exc: BaseException) -> InvalidInput:
    """A one-line error for a pickle checkpoint (``.bin``/``.pth``) that torch's ``weights_only`` loader
    (or the library around it) refused: names the file and says what to do instead of a long traceback."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return InvalidInput(
        f"{files[0]}: this pickle checkpoint was refused ({type(exc).__name__}: {first[:200]}); geoscout loads "
        "weights only as plain tensors. Use a .safetensors copy (put model.safetensors next to it, or convert "
        "a checkpoint you trust with safetensors.torch.save_file) or re-download the model"
    )


def weights_sha256(paths: list[Path]) -> str:
    """SHA-256 over the weight files (one file: its own SHA-256). Memoised by path, size and mtime,
    in memory and in ``cache_dir("hashes")``, because hashing a 1.7 GB checkpoint takes seconds."""
    from geoscout._io import atomic_write_json, cache_dir, sha256_file

    digests = []
    for p in sorted(Path(p).resolve() for p in paths):
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in _HASH_MEMO:
            memo_file = cache_dir("hashes") / (hashlib.sha1(repr(key).encode()).hexdigest() + ".json")
            digest = None
            if memo_file.is_file():
                try:
                    digest = json.loads(memo_file.read_text())["sha256"]
                except (ValueError, KeyError, OSError):
                    digest = None
            if digest is None:
                digest = sha256_file(p)
                with contextlib.suppress(OSError):
                    atomic_write_json(memo_file, {"path": str(p), "sha256": digest})
            _HASH_MEMO[key] = digest
        digests.append(_HASH_MEMO[key])
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


class Backbone:
    """An image encoder with its preprocessing: PIL images -> L2-normalised float32 vectors.

    Subclasses set ``info``, ``weights_sha`` and ``module`` (a torch module mapping a
    (n, 3, S, S) float32 batch to (n, dim) features) and may override :meth:`encode_text`.
    """

    info: BackboneInfo
    weights_sha: str
    #: ``runtime="auto"`` picks ONNX Runtime for backbones that set this (when it is installed, on the CPU)
    prefers_onnx: bool = False
    #: ``precision="int8"`` (ONNX Runtime, dynamic int8 MatMuls) is offered for backbones that set this
    supports_int8: bool = False

    def __init__(
        self,
        name: str,
        info: BackboneInfo,
        module: torch.nn.Module | None,
        weights_sha: str,
        *,
        device: str = "cpu",
        runtime: str = "auto",
        module_factory: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise InvalidInput(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        from geoscout.devices import resolve_device

        if module is None and module_factory is None:
            raise InvalidInput(f"{name}: a backbone needs its torch module or a factory that builds it")
        self.name = name
        self.info = info
        self.weights_sha = weights_sha
        self.device = resolve_device(device)
        device = self.device
        if runtime == "auto":
            runtime = "onnx" if self.prefers_onnx and device == "cpu" and onnxruntime_available() else "torch"
        self.precision = "fp32"  #: fp32, fp16/bf16 (autocast on a GPU) or int8 (ONNX Runtime); see create_backbone
        self.runtime = runtime
        self._module = module.eval().to(device) if module is not None else None
        self._module_factory = module_factory
        self._ort = None
        if runtime == "onnx":
            self.start_onnx()

    def start_onnx(self, precision: str = "fp32") -> None:
        """Run the tower on ONNX Runtime from now on, in ``precision`` ``fp32`` (the export) or ``int8`` (its
        MatMul weights quantised to int8, activations quantised per call; see :mod:`.onnx_runtime`)."""
        if self.device != "cpu":
            raise InvalidInput("runtime='onnx' runs on the CPU; use device='cpu' (or runtime='torch' on a GPU)")
        if precision not in ("fp32", "int8"):
            raise InvalidInput(f"{self.name}: ONNX Runtime runs fp32 or int8 here, not {precision!r}")
        if precision == "int8" and not self.supports_int8:
            raise InvalidInput(
                f"{self.name}: precision int8 is offered for the geoclip backbone (a ViT, where int8 MatMuls pay); "
                "use fp32 (or auto) for this backbone"
            )
        from .onnx_runtime import onnx_session

        self.precision, self.runtime = precision, "onnx"
        self._ort = onnx_session(self)

    @property
    def module(self) -> torch.nn.Module:
        """The torch module (built on first use when the backbone runs on ONNX Runtime from a cached export)."""
        if self._module is None:
            assert self._module_factory is not None
            self._module = self._module_factory().eval().to(self.device)
        return self._module

    # -- description -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Length of the embedding vectors."""
        return self.info.dim

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def fingerprint(self) -> dict[str, Any]:
        """What makes two embeddings comparable: backbone name, weights SHA-256, preprocessing, dim, and the
        quantisation when the tower runs in int8. (The runtime and fp16/bf16 autocast are not part of it: ONNX and
        torch agree to cosine > 0.999; int8 agrees less closely, so its vectors never mix with fp32 ones.)"""
        fp: dict[str, Any] = {
            "backbone": self.name,
            "weights_sha256": self.weights_sha,
            "preprocessing": self.info.preprocessing(),
            "dim": self.dim,
        }
        if self.precision == "int8":
            from .onnx_runtime import INT8_SCHEME

            fp["quantization"] = INT8_SCHEME
        return fp

    def fingerprint_hash(self) -> str:
        """Short stable hash of :meth:`fingerprint`."""
        from geoscout._io import json_digest

        return json_digest(self.fingerprint())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, runtime={self.runtime!r}, "
            f"device={self.device!r}, precision={self.precision!r})"
        )

    # -- decoding and preprocessing --------------------------------------------------------------
    def load_image(self, src: Any, *, max_pixels: int | None = None) -> Image.Image:
        """Decode ``src`` (path, bytes, stream or PIL image) to upright RGB like :func:`geoscout.imageio.load_image`,
        but let libjpeg decode a JPEG file or bytes at the smallest 1/2, 1/4 or 1/8 scale whose shorter side still
        covers ``resize_size`` (about 2x faster for photos bigger than the network input; embeddings
        agree with a full decode to cosine ~0.99, so use this same decoder for gallery and queries). Failures re-run the plain decoder for its error message."""
        from geoscout._io import open_user_file
        from geoscout.imageio import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, open_image
        from geoscout.imageio import load_image as _load

        limit = max_pixels or DEFAULT_MAX_PIXELS
        if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
            fh: Any = None
            im = None
            try:  # a path is opened like every user's file (regular files only, size-bounded): a FIFO cannot hang us
                fh = open_user_file(src, max_bytes=MAX_FILE_BYTES) if isinstance(src, (str, os.PathLike)) else None
                im = open_image(fh if fh is not None else io.BytesIO(bytes(src)))  # type: ignore[arg-type]
                if (
                    im.format == "JPEG"
                    and 0 < im.width * im.height <= limit
                    and min(im.size) >= 2 * self.info.resize_size
                ):
                    t = self.info.resize_size
                    im.draft("RGB", (t, t))
                    return _load(im, max_pixels=limit)
            except Exception:
                pass  # the plain decoder below words the error
            finally:
                if im is not None:
                    im.close()
                if fh is not None:
                    fh.close()
        return _load(src, max_pixels=limit)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (3, S, S) float32: shorter side resized to ``resize_size``, center crop, (x-mean)/std."""
        info = self.info
        im = image if image.mode == "RGB" else image.convert("RGB")
        w, h = im.size
        scale = info.resize_size / min(w, h)
        nw, nh = max(info.input_size, round(w * scale)), max(info.input_size, round(h * scale))
        if (nw, nh) != (w, h):
            # reducing_gap: fast two-step downscale for big photos, indistinguishable at these sizes
            im = im.resize((nw, nh), _RESAMPLE[info.interpolation], reducing_gap=3.0)
        s = info.input_size
        left, top = (nw - s) // 2, (nh - s) // 2
        im = im.crop((left, top, left + s, top + s))
        a: NDArray[Any] = np.asarray(im, dtype=np.float32)
        a = (a - np.asarray(info.mean, np.float32)) / np.asarray(info.std, np.float32)
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    # -- encoding --------------------------------------------------------------------------------
    def forward_features(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed float32 -> (n, dim) raw (unnormalised) float32 features."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (3, self.input_size, self.input_size):
            raise InvalidInput(
                f"{self.name}: expected a batch of shape (n, 3, {self.input_size}, {self.input_size}), got {batch.shape}"
            )
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        if self._ort is not None:
            return self._ort.run(None, {"pixels": batch})[0].astype(np.float32, copy=False)
        import torch

        from geoscout.devices import autocast

        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.module(torch.from_numpy(batch).to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def encode_batch(self, batch: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Preprocessed batch -> L2-normalised (n, dim) float32; ``tta`` averages with the horizontal flip."""
        feats = _l2(self.forward_features(batch))
        if tta and len(batch):
            flipped = _l2(self.forward_features(np.ascontiguousarray(batch[..., ::-1])))
            feats = _l2(feats + flipped)
        return feats

    def encode(self, images: list[Image.Image], *, tta: bool = False) -> np.ndarray:
        """PIL images -> (n, dim) float32, L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_batch(np.stack([self.preprocess(im) for im in images]), tta=tta)

    def encode_text(self, texts: list[str]) -> np.ndarray | None:
        """Texts -> (n, dim) L2-normalised vectors in the image space, or None without a text tower."""
        return None

    @property
    def has_text(self) -> bool:
        return False


def _l2(x: np.ndarray) -> np.ndarray:
    return l2_normalize(x).astype(np.float32, copy=False)
