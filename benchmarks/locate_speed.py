"""How much faster is geoscout's GeoCLIP mode than geoclip's own ``GeoCLIP.predict``, at equal results?

One run, same machine, same weights: a CLIP with the ViT-L/14 vision architecture (random weights:
hub weights are unreachable offline; timing does not depend on their values) saved to a temp folder,
GeoCLIP's real location encoder, image MLP, logit scale and 100k GPS gallery from the wheel.

- theirs: ``geoclip.GeoCLIP(clip_path=DIR).predict(path, top_k)`` photo by photo (it re-encodes the
  100k gallery every call; it has no batch API);
- ours: ``geoscout.locator.load_model("geoclip", weights=DIR)`` (gallery features cached on disk once),
  per photo (batch of 1) and batched.

Each side runs in its own subprocess (sequentially) so peak memory is per side. Prints per-photo latency
(ONNX Runtime, the default; ``--runtime torch``; the opt-in ``--precision int8``, with its agreement with fp32
on ``--agree`` real photos) beside the bound, CLIP ViT-L/14's vision forward pass
alone (goal: locate <= 1.25x of it), throughput, the speed-up vs the peer (goal: >= 15x per photo), top-1
agreement and peak RSS; then the cold start
of the ``geoscout locate`` CLI with the default model beside ``python -c "import torch"`` (goal: ratio <= 1,
and < 3 s; ``--cold-only`` measures just that).

    python benchmarks/locate_speed.py [--photos 8] [--theirs 3] [--batch 8]
    python benchmarks/locate_speed.py --cold-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, need_shared, peak_rss_mb


def _photos(n: int) -> list[str]:
    import pandas as pd

    root = need_shared() / "data" / "im2gps"
    frame = pd.read_csv(root / "manifest.csv").head(n)
    return [str(root / p) for p in frame["path"]]


def _make_clip(folder: Path) -> None:
    """A random CLIP with ViT-L/14's vision tower (24 layers, 1024 wide, patch 14, 224 px, projection 768)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = CLIPConfig(
        projection_dim=768,
        # the text tower is never used by predict; keep it small to save time and disk
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "projection_dim": 768,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "patch_size": 14,
            "image_size": 224,
            "projection_dim": 768,
        },
    )
    torch.manual_seed(0)
    CLIPModel(cfg).eval().save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)


def _side_theirs(clip: str, photos: list[str], top_k: int) -> dict:
    import importlib
    import importlib.util
    import types

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    spec = importlib.util.find_spec("geoclip")
    mod = types.ModuleType("geoclip")  # geoclip/__init__ imports torchvision (training code); skip it
    mod.__path__ = list(spec.submodule_search_locations)  # type: ignore[union-attr]
    sys.modules["geoclip"] = mod
    GeoCLIP = importlib.import_module("geoclip.model.GeoCLIP").GeoCLIP
    t0 = time.perf_counter()
    model = GeoCLIP(from_pretrained=True, clip_path=clip).eval()
    load_s = time.perf_counter() - t0
    lat, tops = [], []
    for p in photos:
        t = time.perf_counter()
        gps, prob = model.predict(p, top_k=top_k)
        lat.append(time.perf_counter() - t)
        tops.append([[float(a), float(b)] for a, b in gps.tolist()] + [[float(prob[0]), 0.0]])
    return {
        "load_s": load_s,
        "latency_s": lat,
        "top": tops,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def _side_ours(clip: str, photos: list[str], top_k: int, batch: int, agree: list[str]) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPVisionModelWithProjection

    from geoscout._io import cache_dir
    from geoscout.heads.geoclip import load_geoclip_head
    from geoscout.locator import load_model

    t0 = time.perf_counter()
    had_cache = any(cache_dir("geoclip").glob("gallery-*.safetensors"))
    load_geoclip_head()  # builds the gallery cache on the first ever run
    cache_s = time.perf_counter() - t0
    had_export = any(cache_dir("onnx").glob("geoclip-*.onnx"))
    t0 = time.perf_counter()
    loc = load_model("geoclip", weights=clip, geocode=False)  # runtime auto: ONNX Runtime (exported once)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loc_torch = load_model("geoclip", weights=clip, geocode=False, runtime="torch")
    loc_torch.backbone.module  # noqa: B018 - build the torch tower now, not inside the first timed call
    load_torch_s = time.perf_counter() - t0
    # the opt-in int8 tower (--precision int8): quantised once per weights, then cached like the fp32 export
    from geoscout.backbones.onnx_runtime import onnx_path

    had_int8 = onnx_path(loc.backbone, precision="int8").is_file()
    t0 = time.perf_counter()
    loc8 = load_model("geoclip", weights=clip, geocode=False, precision="int8")
    load_int8_s = time.perf_counter() - t0
    # the bound: CLIP ViT-L/14's vision forward pass alone (transformers, torch, batch of 1), nothing else
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    vision = CLIPVisionModelWithProjection.from_pretrained(clip, use_safetensors=True).eval()
    loc.batch_size = loc_torch.batch_size = loc8.batch_size = batch
    loc.locate(photos[:1], top_k=top_k)  # warm-up
    loc_torch.locate(photos[:1], top_k=top_k)
    loc8.locate(photos[:1], top_k=top_k)
    lat, lat_torch, lat_int8, bare_torch, bare_onnx, bare_int8, tops = [], [], [], [], [], [], []
    for p in photos:  # interleaved, so that every pipeline sees the same load
        t = time.perf_counter()
        pred = loc.locate([p], top_k=top_k)[0]
        lat.append(time.perf_counter() - t)
        if pred.error:
            raise SystemExit(f"geoscout could not locate {p}: {pred.error}")
        tops.append([[c.lat, c.lon] for c in pred.candidates] + [[pred.candidates[0].probability, 0.0]])
        t = time.perf_counter()
        loc_torch.locate([p], top_k=top_k)
        lat_torch.append(time.perf_counter() - t)
        with Image.open(p) as im:
            x = loc.backbone.preprocess(im.convert("RGB"))[None]
        t = time.perf_counter()
        with torch.inference_mode():
            vision(pixel_values=torch.from_numpy(x))
        bare_torch.append(time.perf_counter() - t)
        t = time.perf_counter()
        loc.backbone.forward_features(x)
        bare_onnx.append(time.perf_counter() - t)
        t = time.perf_counter()
        loc8.locate([p], top_k=top_k)
        lat_int8.append(time.perf_counter() - t)
        t = time.perf_counter()
        loc8.backbone.forward_features(x)
        bare_int8.append(time.perf_counter() - t)
    t = time.perf_counter()
    loc.locate(photos, top_k=top_k)
    batch_s = time.perf_counter() - t
    # the same photos decoded as geoclip does (no EXIF rotation), for an exact comparison
    pils = []
    for p in photos:
        with Image.open(p) as im:
            pils.append(im.convert("RGB"))
    feats = loc.backbone.encode(pils)
    raw = loc.head.predict_topk(feats, top_k)
    raw_tops = [[[c.lat, c.lon] for c in r] + [[r[0].probability, 0.0]] for r in raw]
    # int8 vs fp32 on real photos (the timed ones and `agree` more): feature cosine, top-1 over the whole gallery
    from geoscout.geo import haversine_km

    cos, top_same, top_km = [], 0, []
    gallery = np.asarray(loc.head.gallery_)
    for i in range(0, len(agree), batch):
        ims = []
        for p in agree[i : i + batch]:
            with Image.open(p) as im:
                ims.append(im.convert("RGB"))
        f32, f8 = loc.backbone.encode(ims), loc8.backbone.encode(ims)
        cos += (f32 * f8).sum(axis=1).tolist()
        i32 = loc.head.predict_topk_indices(f32, 1)[0][:, 0]
        i8 = loc8.head.predict_topk_indices(f8, 1)[0][:, 0]
        top_same += int((i32 == i8).sum())
        top_km += haversine_km(gallery[i32, 0], gallery[i32, 1], gallery[i8, 0], gallery[i8, 1]).tolist()
    exif_rot = []
    for p in photos:
        with Image.open(p) as im:
            exif_rot.append(int(im.getexif().get(0x0112, 1)) not in (0, 1))
    return {
        "cache_s": cache_s,
        "had_cache": had_cache,
        "had_export": had_export,
        "load_s": load_s,
        "load_torch_s": load_torch_s,
        "load_int8_s": load_int8_s,
        "had_int8": had_int8,
        "latency_int8_s": lat_int8,
        "bare_int8_s": bare_int8,
        "int8_cos": cos,
        "int8_top_same": top_same,
        "int8_top_km": top_km,
        "latency_s": lat,
        "latency_torch_s": lat_torch,
        "bare_torch_s": bare_torch,
        "bare_onnx_s": bare_onnx,
        "runtime": loc.backbone.runtime,
        "batch_s": batch_s,
        "top": tops,
        "raw_top": raw_tops,
        "exif_rotated": exif_rot,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "n": len(photos),
        "gallery": int(np.asarray(loc.head.gallery_).shape[0]),
    }


def _wall(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole child process; raises when it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (not earlier children's)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss / 1024


def cold_start(runs: int = 5, photo: str | None = None) -> dict:
    """Wall time and peak RSS of whole ``geoscout locate`` processes with the default model (fresh interpreter
    each run; the OS file cache is warm after the first, as for a user who runs it twice), interleaved with
    runs of ``python -c "import torch"`` on the same machine (issue 16's yardstick: locate <= importing torch)."""
    import shutil

    exe = shutil.which("geoscout") or ""
    cmd = [exe, "locate", photo] if photo else [exe, "locate", "--example"]  # the command a user types (a table)
    if not exe:
        raise SystemExit("the geoscout command is not on PATH; pip install -e . first")
    torch_cmd = [sys.executable, "-c", "import torch"]
    walls, torch_walls, peak = [], [], 0.0
    for _ in range(runs + 1):  # the first run of each warms the file cache (and the ONNX export) and is not counted
        w, rss = _wall(cmd)
        walls.append(w)
        peak = max(peak, rss)
        torch_walls.append(_wall(torch_cmd)[0])
    return {
        "cmd": " ".join(["geoscout", *cmd[1:]]),
        "first_s": walls[0],
        "walls": walls[1:],
        "median_s": statistics.median(walls[1:]),
        "torch_median_s": statistics.median(torch_walls[1:]),
        "peak_rss_mb": peak,
    }


def _print_cold(c: dict) -> None:
    ratio = c["median_s"] / c["torch_median_s"]
    print(
        f"load average (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
        f"cold start of `{c['cmd']}` (default model geoscout-lite, whole process, {len(c['walls'])} runs): "
        f"median {c['median_s']:.2f} s, min {min(c['walls']):.2f} s, max {max(c['walls']):.2f} s "
        f"(first run, cold file cache: {c['first_s']:.2f} s); peak RSS {c['peak_rss_mb']:.0f} MiB\n"
        f'`python -c "import torch"` on the same machine, interleaved: median {c["torch_median_s"]:.2f} s\n'
        f"ratio locate / import torch: {ratio:.2f} (goal <= 1: {'met' if ratio <= 1 else 'NOT met'}); "
        f"absolute goal < 3 s: {'met' if c['median_s'] < 3 else 'NOT met'}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=8, help="photos from ../shared/data/im2gps for geoscout")
    ap.add_argument("--theirs", type=int, default=3, help="how many of them geoclip's predict runs on (~16 s each)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--agree", type=int, default=32, help="im2gps photos on which int8 is compared with fp32")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--clip-dir", help="keep the random ViT-L/14 checkpoint here and reuse it on later runs")
    ap.add_argument("--cold-runs", type=int, default=5, help="runs of the CLI cold-start measurement")
    ap.add_argument("--cold-only", action="store_true", help="measure only the CLI cold start (no GeoCLIP comparison)")
    ap.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_only:
        _print_cold(cold_start(args.cold_runs))
        return
    photos = _photos(args.photos)

    if args.side:  # a child process: one side, results as JSON
        res = (
            _side_ours(args.clip, photos, args.top_k, args.batch, _photos(max(args.agree, args.photos)))
            if args.side == "ours"
            else _side_theirs(args.clip, photos[: args.theirs], args.top_k)
        )
        Path(args.out).write_text(json.dumps(res))
        return

    with tempfile.TemporaryDirectory(prefix="vitl14-") as tmp:
        if args.clip_dir:
            tmp = args.clip_dir
            Path(tmp).mkdir(parents=True, exist_ok=True)
        if not (Path(tmp) / "model.safetensors").is_file():
            t = time.perf_counter()
            _make_clip(Path(tmp))
            print(f"random CLIP ViT-L/14 vision tower saved in {time.perf_counter() - t:.1f} s", flush=True)
        results = {}
        for side in ("ours", "theirs"):
            out = Path(tmp) / f"{side}.json"
            cmd = [
                sys.executable,
                __file__,
                "--side",
                side,
                "--clip",
                tmp,
                "--out",
                str(out),
                "--photos",
                str(args.photos),
                "--theirs",
                str(args.theirs),
                "--batch",
                str(args.batch),
                "--top-k",
                str(args.top_k),
                "--agree",
                str(args.agree),
            ]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            results[side] = json.loads(out.read_text())
            print(f"{side}: done in {time.perf_counter() - t:.1f} s", flush=True)
    ours, theirs = results["ours"], results["theirs"]
    n_t = len(theirs["latency_s"])
    ours_lat = statistics.median(ours["latency_s"])
    ours_lat_same = statistics.median(ours["latency_s"][:n_t])
    theirs_lat = statistics.median(theirs["latency_s"])
    ours_tput = ours["n"] / ours["batch_s"]
    theirs_tput = 1.0 / statistics.mean(theirs["latency_s"])
    # top-1 agreement on the photos both sides ran
    import math

    def same(a, b):
        return math.isclose(a[0][0], b[0][0], abs_tol=1e-4) and math.isclose(a[0][1], b[0][1], abs_tol=1e-4)

    agree_locate = sum(same(o, t) for o, t in zip(ours["top"], theirs["top"]))
    agree_raw = sum(same(o, t) for o, t in zip(ours["raw_top"], theirs["top"]))
    prob_diff = max(abs(o[-1][0] - t[-1][0]) for o, t in zip(ours["raw_top"], theirs["top"]))
    ours_torch = statistics.median(ours["latency_torch_s"])
    bound = statistics.median(ours["bare_torch_s"])
    bare_onnx = statistics.median(ours["bare_onnx_s"])
    ours_int8 = statistics.median(ours["latency_int8_s"])
    bare_int8 = statistics.median(ours["bare_int8_s"])
    rows = [
        {
            "pipeline": "geoclip GeoCLIP.predict",
            "photos": n_t,
            "load s": theirs["load_s"],
            "per-photo s (median)": theirs_lat,
            "photos/s": theirs_tput,
            "peak RSS MiB": theirs["peak_rss_mb"],
        },
        {
            "pipeline": "geoscout locate --model geoclip --runtime torch",
            "photos": ours["n"],
            "load s": ours["load_torch_s"],
            "per-photo s (median)": ours_torch,
            "photos/s": 1.0 / statistics.mean(ours["latency_torch_s"]),
            "peak RSS MiB": float("nan"),
        },
        {
            "pipeline": f"geoscout locate --model geoclip ({ours['runtime']}, the default; batch {args.batch})",
            "photos": ours["n"],
            "load s": ours["load_s"],
            "per-photo s (median)": ours_lat,
            "photos/s": ours_tput,
            "peak RSS MiB": ours["peak_rss_mb"],
        },
        {
            "pipeline": "geoscout locate --model geoclip --precision int8 (opt-in)",
            "photos": ours["n"],
            "load s": ours["load_int8_s"],
            "per-photo s (median)": ours_int8,
            "photos/s": 1.0 / statistics.mean(ours["latency_int8_s"]),
            "peak RSS MiB": float("nan"),
        },
    ]
    print()
    print(markdown_table(rows))
    print()
    print(
        f"gallery: {ours['gallery']} GPS points; gallery feature cache "
        f"{'already present, loaded' if ours['had_cache'] else 'built'} in {ours['cache_s']:.1f} s (once per machine); "
        f"ONNX export of the ViT-L/14 tower {'cached' if ours['had_export'] else 'made in this run (once per weights)'}"
    )
    print(f"torch threads: ours {ours['threads']}, theirs {theirs['threads']}; peak RSS of ours covers both runtimes")
    print(f"load average (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"per photo (median of {ours['n']}, interleaved): locate {ours_lat:.3f} s ({ours['runtime']}); "
        f"the bound, CLIP ViT-L/14's vision forward pass alone (transformers, torch, batch 1): {bound:.3f} s; "
        f"ratio {ours_lat / bound:.2f} (goal <= 1.25: {'met' if ours_lat / bound <= 1.25 else 'NOT met'}); "
        f"the ONNX forward pass alone: {bare_onnx:.3f} s (locate spends {ours_lat - bare_onnx:.3f} s beyond it); "
        f"--runtime torch: {ours_torch:.3f} s (ONNX speed-up {ours_torch / ours_lat:.2f}x)"
    )
    print(
        f"speed-up per photo vs GeoCLIP.predict: {theirs_lat / ours_lat:.1f}x (same {n_t} photos: "
        f"{theirs_lat / ours_lat_same:.1f}x; goal >= 15x: {'met' if theirs_lat / ours_lat >= 15 else 'NOT met'})"
    )
    print(f"speed-up in throughput (batched vs one by one): {ours_tput / theirs_tput:.1f}x")
    cos = ours["int8_cos"]
    km = sorted(ours["int8_top_km"])
    print(
        f"--precision int8 (opt-in): locate {ours_int8:.3f} s per photo, ratio {ours_int8 / bound:.2f} to the bound, "
        f"{theirs_lat / ours_int8:.1f}x GeoCLIP.predict (goal >= 15x: {'met' if theirs_lat / ours_int8 >= 15 else 'NOT met'}); "
        f"its forward pass alone {bare_int8:.3f} s ({bare_onnx / bare_int8:.2f}x faster than fp32 ONNX); int8 model "
        f"{'cached' if ours['had_int8'] else 'quantised in this run (once per weights)'}, load {ours['load_int8_s']:.1f} s"
    )
    print(
        f"int8 vs fp32 on {len(cos)} im2gps photos (random ViT-L/14 weights): feature cosine min {min(cos):.4f} "
        f"median {statistics.median(cos):.4f}; same top-1 of the {ours['gallery']} gallery points on "
        f"{ours['int8_top_same']}/{len(cos)}; top-1 moved by median {statistics.median(km):.0f} km, max {km[-1]:.0f} km"
    )
    print(
        f"top-1 equal to GeoCLIP.predict: {agree_raw}/{n_t} on identically decoded pixels "
        f"(max |p1 diff| {prob_diff:.2e}); {agree_locate}/{n_t} through `locate` "
        f"(which applies EXIF orientation; rotated photos among them: {sum(ours['exif_rotated'][:n_t])})"
    )
    _print_cold(cold_start(args.cold_runs))


if __name__ == "__main__":
    main()
