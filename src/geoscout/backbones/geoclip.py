"""The ``geoclip`` backbone: CLIP ViT-L/14 image tower (transformers) + GeoCLIP's image MLP -> 512-d features.

The CLIP weights come from the Hugging Face hub (``openai/clip-vit-large-patch14``, standard cache) or
a local folder (``weights=DIR``: ``config.json``, ``preprocessor_config.json``, ``model.safetensors``);
the MLP (768 -> 768 -> 512) comes from the ``geoclip`` wheel. Only the vision tower and its projection
are kept. Preprocessing is transformers' Pillow/numpy CLIP image processor, i.e. exactly GeoCLIP's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from typing import Any

import numpy as np

from ..errors import InvalidInput, MissingWeights
from ..geoclip._wheel import load_wheel_weights, weights_digest
from .base import Backbone, BackboneInfo, MissingDependency

__all__ = ["CLIP_REPO", "GeoCLIPBackbone", "build_geoclip_backbone"]

CLIP_REPO = "openai/clip-vit-large-patch14"


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)


def _image_processor(folder: str) -> Any:
    """CLIP's Pillow/numpy image processor (no torchvision) configured from ``folder``."""
    try:
        from transformers import CLIPImageProcessorPil as Proc  # transformers >= 5
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Proc
    return Proc.from_pretrained(folder, local_files_only=True)


class GeoCLIPBackbone(Backbone):
    """GeoCLIP's image encoder; ``encode`` returns (n, 512) L2-normalised float32 features.

    Build it with :func:`build_geoclip_backbone` / ``create_backbone("geoclip", weights=DIR)``.
    """

    processor: Any
    #: ONNX Runtime runs the ViT-L/14 tower faster than torch on a CPU (benchmarks/locate_speed.py)
    prefers_onnx = True
    #: ``precision="int8"``: int8 MatMuls, ~1.6x less CPU per photo (benchmarks/locate_speed.py), opt-in
    supports_int8 = True

    def preprocess(self, image: Any) -> np.ndarray:
        """One PIL image -> (3, 224, 224) float32 exactly as GeoCLIP (CLIP resize 224 bicubic, centre crop, normalise)."""
        im = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(self.processor(images=[im], return_tensors="np")["pixel_values"][0], dtype=np.float32)

    def encode(self, images: list[Any], *, tta: bool = False, batch_size: int = 16) -> np.ndarray:
        """PIL images -> (n, 512) float32, L2-normalised, in batches of ``batch_size``."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(
            [
                self.encode_batch(np.stack([self.preprocess(im) for im in images[i : i + batch_size]]), tta=tta)
                for i in range(0, len(images), batch_size)
            ]
        )


def build_geoclip_backbone(
    weights: str | os.PathLike[str] | None = None, *, device: str = "cpu", runtime: str = "auto"
) -> GeoCLIPBackbone:
    """CLIP ViT-L/14 from the hub cache (or ``weights`` folder) + GeoCLIP's MLP from the geoclip wheel.

    ``runtime="auto"`` (default) runs the tower on ONNX Runtime on the CPU: it is exported once per weights
    (cached like the EfficientNet export) and the torch ViT is then never built again; ``"torch"`` runs it
    on torch (and on a GPU)."""
    try:
        import torch
        from transformers import CLIPVisionConfig
    except ModuleNotFoundError:
        raise MissingDependency("backbone 'geoclip' needs transformers: pip install 'geoscout[geoclip]'") from None
    from .base import weights_sha256
    from .clip import resolve_hf_files

    try:
        folder = resolve_hf_files(CLIP_REPO, weights)
    except MissingWeights as exc:
        raise MissingWeights(f"backbone 'geoclip' needs CLIP ViT-L/14 ({CLIP_REPO}): {exc}") from None
    safetensors = sorted(folder.glob("*.safetensors"))
    if not safetensors:
        raise MissingWeights(
            f"{folder}: backbone 'geoclip' reads only safetensors weights (model.safetensors); "
            f"download them with `huggingface-cli download {CLIP_REPO} --local-dir DIR`"
        )
    with _quiet_transformers():
        config = CLIPVisionConfig.from_pretrained(str(folder), local_files_only=True)
        processor = _image_processor(str(folder))
    if int(config.projection_dim) != 768:
        raise InvalidInput(
            f"{folder}: CLIP projection_dim is {config.projection_dim}; GeoCLIP's MLP needs 768 (CLIP ViT-L/14)"
        )
    mlp_state = load_wheel_weights("image_mlp")

    def factory() -> Any:
        """(n, 3, 224, 224) pixels -> (n, 512) GeoCLIP image features (unnormalised), as a torch module."""
        from transformers import CLIPVisionModelWithProjection

        with _quiet_transformers():
            vision = CLIPVisionModelWithProjection.from_pretrained(str(folder), use_safetensors=True).eval()
        mlp = torch.nn.Sequential(torch.nn.Linear(768, 768), torch.nn.ReLU(), torch.nn.Linear(768, 512))
        mlp.load_state_dict(mlp_state, strict=True)
        return _tower_class()(vision, mlp)

    crop = _dim(getattr(processor, "crop_size", None), "height", 224)
    size = _dim(getattr(processor, "size", None), "shortest_edge", crop)
    info = BackboneInfo(
        name="geoclip",
        dim=512,
        input_size=int(crop),
        resize_size=int(size),
        mean=tuple(float(v) * 255 for v in processor.image_mean),  # type: ignore[arg-type]
        std=tuple(float(v) * 255 for v in processor.image_std),  # type: ignore[arg-type]
        interpolation="bicubic",
        license="CLIP: MIT (OpenAI); GeoCLIP MLP: MIT (VicenteVivan/geo-clip)",
        source=f"CLIP {CLIP_REPO if weights is None else folder} + geoclip wheel image MLP",
    )
    sha = hashlib.sha256((weights_sha256(safetensors) + weights_digest(mlp_state)).encode()).hexdigest()
    bb = GeoCLIPBackbone("geoclip", info, None, sha, device=device, runtime=runtime, module_factory=factory)
    bb.processor = processor
    return bb


@functools.cache
def _tower_class() -> Any:
    import torch

    class Tower(torch.nn.Module):
        """CLIP's vision tower with its projection, then GeoCLIP's image MLP."""

        def __init__(self, clip: Any, mlp: Any) -> None:
            super().__init__()
            self.clip = clip
            self.mlp = mlp

        def forward(self, pixels: Any) -> Any:
            return self.mlp(self.clip(pixel_values=pixels).image_embeds)

    return Tower


def _dim(value: Any, key: str, default: int) -> int:
    """An int out of a processor size field (int, dict or transformers SizeDict)."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value)
    v = value.get(key) if hasattr(value, "get") else getattr(value, key, None)
    return int(v) if v else default
