"""CLIP backbones: ``hf:<repo-id or local dir>`` (transformers ``CLIPModel``) and ``clip:<arch>[/<tag>]`` (open_clip).

Hub weights come from the standard Hugging Face cache (``$HF_HUB_CACHE`` / ``$HF_HOME/hub``);
offline with no cached copy, :class:`~geoscout.errors.MissingWeights` names the repository,
the files that are missing and how to provide them (``--weights DIR``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoscout.errors import InvalidInput, MissingWeights
from geoscout.geo import l2_normalize

from .base import Backbone, BackboneInfo, MissingDependency, pickle_refusal, weights_sha256

__all__ = ["HF_REQUIRED", "HF_WEIGHT_PATTERNS", "build_hf_clip", "build_open_clip", "resolve_hf_files"]

HF_REQUIRED = ("config.json", "preprocessor_config.json")
HF_WEIGHT_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
HF_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}


def _hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "huggingface"
    )
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _has_weights(d: Path) -> bool:
    return any((d / f).is_file() for f in HF_WEIGHT_PATTERNS)


def _missing_in(d: Path | None) -> list[str]:
    def have(f):
        return d is not None and (d / f).is_file()

    missing = [f for f in HF_REQUIRED if not have(f)]
    if d is None or not _has_weights(d):
        missing.append("model.safetensors (or pytorch_model.bin)")
    return missing


def resolve_hf_files(source: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """A local folder holding a CLIP checkpoint: ``weights`` if given, ``source`` if it is a folder,
    else a snapshot of the hub repo ``source`` from the HF cache (downloading it when online)."""
    if weights is not None:
        d = Path(weights).expanduser()
        if not d.is_dir() or _missing_in(d):
            raise MissingWeights(
                f"--weights {d}: needs a folder with {', '.join(_missing_in(d if d.is_dir() else None))} "
                f"(a Hugging Face CLIP checkpoint, e.g. from `huggingface-cli download {source} --local-dir DIR`)"
            )
        return d
    p = Path(source).expanduser()
    if p.is_dir():
        if _missing_in(p):
            raise MissingWeights(f"{p}: not a CLIP checkpoint folder; missing {', '.join(_missing_in(p))}")
        return p
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise InvalidInput(
            f"hf:{source}: neither an existing folder nor a hub repo id like 'openai/clip-vit-base-patch32'"
        )
    try:
        from huggingface_hub import snapshot_download
    except ModuleNotFoundError:
        raise MissingDependency(
            "hf: backbones need transformers and huggingface-hub: pip install 'geoscout[hf]'"
        ) from None
    cache = _hf_cache_dir()
    patterns = list(HF_REQUIRED) + list(HF_WEIGHT_PATTERNS) + ["model-*.safetensors"] + list(HF_TOKENIZER)
    errors: list[str] = []
    for local_only in (True, False):
        if not local_only and _offline():
            errors.append("HF_HUB_OFFLINE is set")
            break
        try:
            d = Path(
                snapshot_download(source, allow_patterns=patterns, cache_dir=str(cache), local_files_only=local_only)
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if not _missing_in(d):
            return d
        errors.append(f"snapshot {d} lacks {', '.join(_missing_in(d))}")
    # Work out which files the cache lacks, for the message.
    snap = None
    repo_dir = cache / f"models--{source.replace('/', '--')}" / "snapshots"
    if repo_dir.is_dir():
        snaps = sorted(repo_dir.iterdir(), key=lambda q: q.stat().st_mtime)
        snap = snaps[-1] if snaps else None
    missing = _missing_in(snap)
    raise MissingWeights(
        f"hf:{source}: weights are not in the Hugging Face cache ({cache}) and could not be downloaded "
        f"({'; '.join(errors[-1:])}). Missing files: {', '.join(missing)}. On a machine with network run "
        f"`huggingface-cli download {source} --local-dir DIR`, copy DIR here and pass --weights DIR "
        "(or weights=DIR), or point HF_HOME at a cache that holds the repo."
    )


def _read_preprocessor(d: Path, image_size: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    f = d / "preprocessor_config.json"
    if f.is_file():
        cfg = json.loads(f.read_text())
    size = cfg.get("size", image_size)
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height") or image_size
    crop = cfg.get("crop_size", image_size)
    if isinstance(crop, dict):
        crop = crop.get("height") or image_size
    mean = tuple(float(v) * 255.0 for v in cfg.get("image_mean", OPENAI_CLIP_MEAN))
    std = tuple(float(v) * 255.0 for v in cfg.get("image_std", OPENAI_CLIP_STD))
    return {
        "resize": int(size),
        "crop": int(crop),
        "mean": mean,
        "std": std,
        "interp": _RESAMPLE_NAMES.get(int(cfg.get("resample", 3)), "bicubic"),
    }


def build_hf_clip(
    source: str, *, weights=None, device: str = "cpu", runtime: str = "torch", name: str | None = None
) -> Backbone:
    """A transformers ``CLIPModel`` image tower (+ text tower) from a hub repo id or a local folder."""
    if not source:
        raise InvalidInput("hf: needs a repo id or folder, e.g. hf:openai/clip-vit-base-patch32")
    d = resolve_hf_files(source, weights)
    try:
        import torch
        from transformers import CLIPModel
    except ModuleNotFoundError:
        raise MissingDependency("hf: backbones need transformers: pip install 'geoscout[hf]'") from None
    has_safetensors = any(d.glob("*.safetensors"))
    try:  # safetensors whenever the folder has them; a pickle checkpoint only through torch's weights_only loader
        model = CLIPModel.from_pretrained(str(d), use_safetensors=True if has_safetensors else None)
    except Exception as exc:
        if has_safetensors:
            raise
        raise pickle_refusal(sorted(d.glob("pytorch_model*.bin")) or [d], exc) from None
    model.eval()
    pp = _read_preprocessor(d, model.config.vision_config.image_size)
    files = sorted(d.glob("*.safetensors")) or sorted(d.glob("pytorch_model*.bin"))
    info = BackboneInfo(
        name=name or f"hf:{source}",
        dim=int(model.config.projection_dim),
        input_size=pp["crop"],
        resize_size=pp["resize"],
        mean=pp["mean"],
        std=pp["std"],
        interpolation=pp["interp"],
        license="see the model card of the repository",
        source=f"Hugging Face {source}" if not Path(source).expanduser().is_dir() else f"local folder {d}",
    )

    class _ImageTower(torch.nn.Module):
        def __init__(self, clip) -> None:
            super().__init__()
            self.vision_model = clip.vision_model
            self.visual_projection = clip.visual_projection

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            pooled = self.vision_model(pixel_values=pixels).pooler_output
            return self.visual_projection(pooled)

    tokenizer = None
    if any((d / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(d))
        except Exception:
            tokenizer = None

    class HFClipBackbone(Backbone):
        clip_model = model

        @property
        def has_text(self) -> bool:
            return tokenizer is not None

        def encode_text(self, texts: list[str]) -> np.ndarray | None:
            """Texts -> (n, dim) L2-normalised CLIP text embeddings (None without a tokenizer)."""
            if tokenizer is None:
                return None
            tok = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            with torch.inference_mode():
                out = model.text_model(
                    input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
                ).pooler_output
                feats = model.text_projection(out).float().cpu().numpy()
            return l2_normalize(feats)

    bb = HFClipBackbone(info.name, info, _ImageTower(model), weights_sha256(files), device=device, runtime=runtime)
    model.to(device)
    return bb


def build_open_clip(arg: str, *, weights=None, device: str = "cpu", runtime: str = "torch") -> Backbone:
    """``clip:<arch>[/<pretrained tag>]`` via open_clip, e.g. ``clip:ViT-B-32/openai``."""
    try:
        import open_clip
        import torch
    except ModuleNotFoundError:
        raise MissingDependency(
            f"clip:{arg} needs open_clip: pip install open_clip_torch (or use the transformers path, "
            "e.g. hf:openai/clip-vit-base-patch32)"
        ) from None
    arch, _, tag = (arg or "").partition("/")
    if not arch:
        raise InvalidInput("clip: needs an architecture, e.g. clip:ViT-B-32/openai; see open_clip.list_pretrained()")
    pretrained = str(weights) if weights is not None else (tag or "openai")
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, device=device)
    except Exception as exc:
        raise MissingWeights(
            f"clip:{arg}: open_clip could not load weights {pretrained!r} ({exc}); pass --weights FILE "
            "(an open_clip checkpoint) when offline"
        ) from exc
    model.eval()
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    pcfg = getattr(visual, "preprocess_cfg", {}) or {}
    mean = _rgb255(pcfg.get("mean", OPENAI_CLIP_MEAN))
    std = _rgb255(pcfg.get("std", OPENAI_CLIP_STD))
    with torch.no_grad():
        dim = int(model.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    info = BackboneInfo(
        name=f"clip:{arg}",
        dim=dim,
        input_size=size,
        resize_size=size,
        mean=mean,
        std=std,
        interpolation=pcfg.get("interpolation", "bicubic"),
        license="see open_clip's pretrained model list",
        source=f"open_clip {arch}/{pretrained}",
    )

    class _Img(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m.encode_image(x)

    tokenizer = open_clip.get_tokenizer(arch)
    sha = (
        weights_sha256([Path(weights)])
        if weights is not None and Path(weights).is_file()
        else f"open_clip:{arch}/{pretrained}"
    )

    class OpenClipBackbone(Backbone):
        @property
        def has_text(self) -> bool:
            return True

        def encode_text(self, texts: list[str]) -> np.ndarray:
            with torch.inference_mode():
                f = model.encode_text(tokenizer(list(texts)).to(self.device)).float().cpu().numpy()
            return l2_normalize(f)

    return OpenClipBackbone(info.name, info, _Img(), sha, device=device, runtime=runtime)


def _rgb255(values: Any) -> tuple[float, float, float]:
    """Per-channel mean or std in 0..1 units -> 0..255 units (three channels)."""
    r, g, b = (float(v) * 255 for v in values)
    return r, g, b
