"""The ``geoclip`` backbone: CLIP ViT-L/14 image tower (transformers) + GeoCLIP's image MLP -> 512-d features.

The CLIP weights come from the Hugging Face hub (``openai/clip-vit-large-patch14``, standard cache) or
a local folder (``weights=DIR``: ``config.json`` + ``model.safetensors`` [+ ``preprocessor_config.json``]);
the MLP (768 -> 768 -> 512) comes from the ``geoclip`` wheel. Only the vision tower and its projection
are loaded (no text tower), and only safetensors files are read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones._registry import BACKBONES
from ..errors import InvalidInput, MissingWeights
from ._wheel import load_wheel_weights, weights_digest

__all__ = ["GeoCLIPBackbone", "CLIP_REPO"]

CLIP_REPO = "openai/clip-vit-large-patch14"
_HOW = (
    f"download it once with internet (`huggingface-cli download {CLIP_REPO}`), or pass --weights DIR "
    "(weights=DIR): a folder with config.json, model.safetensors and preprocessor_config.json"
)


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)


def _image_processor(source: str, local_only: bool) -> Any:
    """CLIP's Pillow/numpy image processor (no torchvision) configured from ``source``."""
    try:
        from transformers import CLIPImageProcessorPil as Proc  # transformers >= 5
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Proc
    try:
        return Proc.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError):
        if Path(source).is_dir():  # a weights folder without preprocessor_config.json: CLIP's defaults
            return Proc()
        raise


@BACKBONES.register("geoclip", help="GeoCLIP image features: CLIP ViT-L/14 + GeoCLIP's MLP (512-d); needs the hub or --weights DIR")
class GeoCLIPBackbone:
    """GeoCLIP's image encoder. ``encode`` returns (n, 512) L2-normalised float32 features."""

    name = "geoclip"
    dim = 512

    def __init__(self, weights: str | os.PathLike[str] | None = None, *, device: str = "cpu",
                 runtime: str = "torch", batch_size: int = 16, local_files_only: bool | None = None) -> None:
        import torch
        from transformers import CLIPVisionModelWithProjection

        if runtime != "torch":
            raise InvalidInput(f"backbone 'geoclip' runs only with runtime='torch', got {runtime!r}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        if weights is not None:
            wdir = Path(weights).expanduser()
            if not wdir.is_dir():
                raise MissingWeights(f"--weights {weights}: not a folder; {_HOW}")
            missing = [f for f in ("config.json", "model.safetensors") if not (wdir / f).is_file()]
            if missing:
                raise MissingWeights(f"--weights {wdir}: missing {', '.join(missing)}; {_HOW}")
            source, local = str(wdir), True
        else:
            source = CLIP_REPO
            local = bool(local_files_only) if local_files_only is not None else bool(os.environ.get("HF_HUB_OFFLINE"))
        self.source = source
        try:
            with _quiet_transformers():
                model = CLIPVisionModelWithProjection.from_pretrained(
                    source, local_files_only=local, use_safetensors=True)
                self.processor = _image_processor(source, local)
        except (OSError, ValueError) as exc:
            raise MissingWeights(
                f"cannot load the CLIP ViT-L/14 weights of backbone 'geoclip' from {source!r} "
                f"(offline and not in the Hugging Face cache?): {exc.__class__.__name__}; {_HOW}"
            ) from None
        if model.config.projection_dim != 768:
            raise InvalidInput(
                f"{source}: CLIP projection_dim is {model.config.projection_dim}, GeoCLIP's MLP needs 768 (ViT-L/14)")
        self.clip = model.to(self.device).eval()
        mlp_state = load_wheel_weights("image_mlp")
        self.mlp = torch.nn.Sequential(torch.nn.Linear(768, 768), torch.nn.ReLU(), torch.nn.Linear(768, 512))
        self.mlp.load_state_dict(mlp_state, strict=True)
        self.mlp.to(self.device).eval()
        self._mlp_digest = weights_digest(mlp_state)
        self._fingerprint: dict[str, Any] | None = None

    def fingerprint(self) -> dict[str, Any]:
        """Name, CLIP source + weights hash, MLP hash and preprocessing: equal fingerprints = equal features."""
        if self._fingerprint is None:
            from .._io import sha256_file

            try:
                from huggingface_hub import try_to_load_from_cache

                local = Path(self.source) / "model.safetensors"
                path = local if local.is_file() else Path(str(try_to_load_from_cache(self.source, "model.safetensors")))
                clip_hash = sha256_file(path)[:16] if path.is_file() else str(self.clip.config._name_or_path)
            except Exception:  # noqa: BLE001 - the hash is informative only
                clip_hash = "unknown"
            p = self.processor
            self._fingerprint = {
                "name": self.name, "dim": self.dim, "clip": self.source if not Path(self.source).is_dir() else "local",
                "clip_weights": clip_hash, "mlp_weights": self._mlp_digest,
                "preprocess": {"size": getattr(p, "size", None), "crop_size": getattr(p, "crop_size", None),
                               "mean": list(getattr(p, "image_mean", []) or []), "std": list(getattr(p, "image_std", []) or [])},
            }
        return self._fingerprint

    def preprocess(self, image: Any) -> np.ndarray:
        """One RGB PIL image -> (3, 224, 224) float32 (CLIP resize, centre crop, normalise)."""
        return self._pixels([image])[0].numpy()

    def _pixels(self, images: list[Any]) -> Any:
        return self.processor(images=[im.convert("RGB") if im.mode != "RGB" else im for im in images],
                              return_tensors="pt")["pixel_values"]

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """Preprocessed (n, 3, 224, 224) pixels -> (n, 512) L2-normalised float32 features."""
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(pixels, dtype=torch.float32, device=self.device)
            feats = self.mlp(self.clip(pixel_values=x).image_embeds)
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.float().cpu().numpy()

    def encode(self, images: list[Any]) -> np.ndarray:
        """RGB PIL images -> (n, 512) L2-normalised float32 GeoCLIP image features, in batches."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        out = [self.encode_pixels(self._pixels(images[i:i + self.batch_size]))
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out, axis=0)

    def encode_text(self, texts: list[str]) -> None:
        """GeoCLIP has no text tower here."""
        return None
