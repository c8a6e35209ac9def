"""Backbone throughput, CPU vs GPU in one run: EfficientNet-Lite2 (real ImageNet weights) and a ViT-L/14-sized
CLIP image tower with random weights (transformers ``CLIPVisionConfig``: 24 layers, width 1024, patch 14, 224 px;
the size of openai/clip-vit-large-patch14 and StreetCLIP, whose speed does not depend on the weights' values).

For each backbone and device it prints forward images/s on a preprocessed batch of real photos (the bound that
decoding must keep up with), through geoscout's own ``Backbone.encode_batch`` (so the GPU rows include the
fp16/bf16 autocast geoscout uses), plus the cosine between the GPU's and the CPU's embeddings of the same photos.
GPU rows are skipped (and say so) when torch sees no CUDA GPU.

    python benchmarks/gpu_throughput.py                      # CPU sample + GPU if present
    python benchmarks/gpu_throughput.py --cpu-images 8 --gpu-images 2048 --batch 256 --json out.json

Measured numbers and their extrapolation to OSV-5M / MP-16 are in docs/full-scale.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED, markdown_table

sys.path.insert(0, str(ROOT / "src"))


def vit_l14_random(device: str, precision: str):
    """A geoscout Backbone around a randomly initialised ViT-L/14 CLIP image tower (+ projection to 768)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from geoscout.backbones.base import Backbone, BackboneInfo
    from geoscout.backbones.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    cfg = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=768,
    )
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(cfg).eval()

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.m(pixel_values=pixels).image_embeds

    info = BackboneInfo(
        name="clip-vit-l14-random",
        dim=768,
        input_size=224,
        resize_size=224,
        mean=tuple(v * 255.0 for v in OPENAI_CLIP_MEAN),  # type: ignore[arg-type]
        std=tuple(v * 255.0 for v in OPENAI_CLIP_STD),  # type: ignore[arg-type]
        interpolation="bicubic",
        license="random weights",
        source="transformers CLIPVisionConfig (ViT-L/14 sizes)",
    )
    bb = Backbone(info.name, info, Tower(), "random", device=device)
    bb.precision = precision
    n_params = sum(p.numel() for p in model.parameters())
    return bb, n_params


def build(name: str, device: str, precision: str):
    from geoscout.backbones import create_backbone

    if name == "clip-vit-l14-random":
        return vit_l14_random(device, precision)
    bb = create_backbone(name, device=device, precision=precision)
    return bb, sum(p.numel() for p in bb.module.parameters())


def photos(n: int) -> list[Path]:
    root = SHARED / "data" / "streetview-world"
    if not root.is_dir():
        raise SystemExit(f"needs {root} (real photos to embed)")
    files = sorted((root / "images").glob("*.jpg"))
    return [files[i % len(files)] for i in range(n)]


def measure(bb, batch: np.ndarray, batch_size: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` forward images/s over ``batch`` in chunks of ``batch_size``; returns (rate, vectors)."""
    import torch

    def run() -> np.ndarray:
        out = [bb.encode_batch(batch[s : s + batch_size]) for s in range(0, len(batch), batch_size)]
        if bb.device.startswith("cuda"):
            torch.cuda.synchronize()
        return np.concatenate(out)

    vec = run()  # warm-up (cuDNN autotune, lazy init, allocator)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        vec = run()
        best = min(best, time.perf_counter() - t)
    return len(batch) / best, vec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="effnet-lite2,clip-vit-l14-random")
    ap.add_argument("--cpu-images", type=int, default=16, help="photos per CPU measurement (keep small on a laptop)")
    ap.add_argument("--gpu-images", type=int, default=1024, help="photos per GPU measurement")
    ap.add_argument("--batch", type=int, default=128, help="GPU batch size (CPU uses min(batch, 16))")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="auto", help="GPU precision: auto (bf16/fp16), fp16, bf16, fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()

    import torch

    from geoscout.devices import cuda_available, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = cuda_available()
    gpu_name = torch.cuda.get_device_name(0) if gpu else None
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, GPU: {gpu_name or 'none (GPU rows skipped)'}"
    )
    rows = []
    for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        cpu_bb, n_params = build(name, "cpu", "fp32")
        pre = [
            cpu_bb.preprocess(cpu_bb.load_image(p)) for p in photos(max(args.cpu_images, args.gpu_images if gpu else 0))
        ]
        batch_all = np.stack(pre).astype(np.float32)
        cpu_batch = batch_all[: args.cpu_images]
        rate_cpu, vec_cpu = measure(cpu_bb, cpu_batch, min(args.batch, 16), args.repeats)
        rows.append(
            {
                "backbone": name,
                "params_M": round(n_params / 1e6, 1),
                "device": "cpu",
                "precision": "fp32",
                "images": len(cpu_batch),
                "images_per_s": round(rate_cpu, 2),
                "cos_vs_cpu": 1.0,
            }
        )
        print(f"{name}: cpu fp32 {rate_cpu:.2f} images/s ({len(cpu_batch)} photos)", flush=True)
        del cpu_bb
        if not gpu:
            rows.append(
                {
                    "backbone": name,
                    "params_M": round(n_params / 1e6, 1),
                    "device": "cuda",
                    "precision": "-",
                    "images": 0,
                    "images_per_s": None,
                    "cos_vs_cpu": None,
                    "note": "skipped: no CUDA GPU",
                }
            )
            continue
        prec = resolve_precision(args.precision, "cuda")
        gpu_bb, _ = build(name, "cuda", prec)
        rate_gpu, vec_gpu = measure(gpu_bb, batch_all[: args.gpu_images], args.batch, args.repeats)
        cos = float(np.mean(np.sum(vec_gpu[: len(vec_cpu)] * vec_cpu, axis=1)))
        rows.append(
            {
                "backbone": name,
                "params_M": round(n_params / 1e6, 1),
                "device": f"cuda ({gpu_name})",
                "precision": prec,
                "images": args.gpu_images,
                "images_per_s": round(rate_gpu, 1),
                "cos_vs_cpu": round(cos, 4),
                "speedup_vs_cpu": round(rate_gpu / rate_cpu, 1),
                "peak_gpu_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
        print(
            f"{name}: cuda {prec} {rate_gpu:.1f} images/s, x{rate_gpu / rate_cpu:.1f} vs CPU, cos {cos:.4f}", flush=True
        )
        del gpu_bb
        torch.cuda.empty_cache()
    print()
    print(markdown_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
