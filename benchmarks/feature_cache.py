"""Embed every ../shared/data set once, per view, into a feature cache for the ablation (issue 16).

One ONNX Runtime forward pass of EfficientNet-Lite gives several candidate features at once:

- ``mean``: the 1280-d global-average-pooled head activations (exactly what ``effnet-lite*`` embeds today),
- ``gem``: GeM pooling (p = 3) of the same head activation map,
- ``stages``: mean and standard deviation over space of the outputs of stages 3-6 (colour and texture
  statistics that the last layer discards).

Panorama strips are split into their views (``streetview-panoramas``: 4, ``streetview-strips``: 5),
every view keeping its strip's ``location_id``. ``--flip`` embeds the mirrored views (for flip TTA);
``--variant lite0`` the smaller network (for the Lite0 + Lite2 row). Files are written atomically, one
``.npz`` per data set (the panoramas in parts of 50 strips, in a seeded random order), so an interrupted
run resumes where it stopped.

    python benchmarks/feature_cache.py --out /work/cache16 [--variant lite2] [--flip] [--sets a,b]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED

ALL_SETS = (
    "streetview-croatia",
    "streetview-world",
    "streetview-strips",
    "osv5m-sample",
    "im2gps",
    "streetview-panoramas",
)
VIEWS = {"streetview-panoramas": 4, "streetview-strips": 5}
CHUNKED = ("streetview-panoramas",)  # big sets are written in parts (resumable, usable while running)
CHUNK = 50


def _multi_output_module(net):
    import torch
    from torch import nn

    from geoscout.backbones.efficientnet_lite import _StagesHead

    stages = _StagesHead(net)  # the forward pass of the effnet-lite2-stages backbone: one code path

    class Multi(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = stages

        def forward(self, x: torch.Tensor):
            h, mean, stats = self.stages.pooled(x)
            gem = h.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1.0 / 3)
            return mean, gem, stats

    return Multi().eval()


def session(variant: str, out: Path):
    import onnxruntime as ort
    import torch

    from geoscout.backbones.efficientnet_lite import LITE_CONFIGS, load_lite

    cfg = LITE_CONFIGS[variant]
    path = out / f"multi-{variant}.onnx"
    if not path.is_file():
        net, _ = load_lite(cfg)
        m = _multi_output_module(net)
        s = cfg.image_size
        tmp = path.with_suffix(".tmp")
        torch.onnx.export(
            m,
            (torch.zeros(2, 3, s, s),),
            str(tmp),
            input_names=["pixels"],
            output_names=["mean", "gem", "stages"],
            dynamic_axes={"pixels": {0: "b"}, "mean": {0: "b"}, "gem": {0: "b"}, "stages": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
        os.replace(tmp, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def views_of(bb, path: Path, n_views: int):
    from geoscout.imageio import load_image

    if n_views == 1:
        return [bb.load_image(path)]
    im = load_image(path)
    w, h = im.size
    edges = np.linspace(0, w, n_views + 1).round().astype(int)
    return [im.crop((int(edges[i]), 0, int(edges[i + 1]), h)) for i in range(n_views)]


def embed_set(name: str, bb, sess, out_file: Path, flip: bool, batch: int = 16, rows_of=None) -> None:
    import pandas as pd

    root = SHARED / "data" / name
    man = pd.read_csv(root / "manifest.csv")
    if rows_of is not None:
        man = man.iloc[rows_of]
    nv = VIEWS.get(name, 1)
    rows, pix = [], []
    feats: dict[str, list[np.ndarray]] = {"mean": [], "gem": [], "stages": []}
    t0 = time.perf_counter()

    def flush() -> None:
        if not pix:
            return
        x = np.stack(pix)
        if flip:
            x = np.ascontiguousarray(x[..., ::-1])
        outs = sess.run(None, {"pixels": x})
        for k, v in zip(("mean", "gem", "stages"), outs):
            feats[k].append(v.astype(np.float16))
        pix.clear()

    for r in man.itertuples(index=False):
        loc = getattr(r, "location_id", None)
        loc = str(r.path) if loc is None or (isinstance(loc, float) and np.isnan(loc)) else str(loc)
        try:
            vs = views_of(bb, root / r.path, nv)
        except Exception as exc:  # recorded, the set goes on
            print(f"  {name}/{r.path}: {exc}", file=sys.stderr)
            continue
        for v, im in enumerate(vs):
            rows.append((str(r.path), v, float(r.lat), float(r.lon), loc))
            pix.append(bb.preprocess(im))
            if len(pix) >= batch:
                flush()
    flush()
    tmp = out_file.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        path=np.array([r[0] for r in rows]),
        view=np.array([r[1] for r in rows], np.int16),
        lat=np.array([r[2] for r in rows]),
        lon=np.array([r[3] for r in rows]),
        location_id=np.array([r[4] for r in rows]),
        **{k: np.concatenate(v) for k, v in feats.items()},
        seconds=np.array(time.perf_counter() - t0),
    )
    os.replace(tmp, out_file)
    dt = time.perf_counter() - t0
    print(f"  {name}: {len(rows)} views in {dt:.0f} s ({1000 * dt / max(len(rows), 1):.0f} ms/view)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("GEOSCOUT_FEATURE_CACHE", "/work/cache16"))
    ap.add_argument("--variant", default="lite2", choices=("lite0", "lite2"))
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--sets", default=",".join(ALL_SETS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from geoscout.backbones import create_backbone

    bb = create_backbone(f"effnet-{args.variant}")  # for its decoder and preprocessing
    sess = session(args.variant, out)
    for name in args.sets.split(","):
        stem = f"{name}-{args.variant}{'-flip' if args.flip else ''}"
        if name in CHUNKED:
            # a random order (seed 0) in parts of CHUNK rows: any prefix of parts is a random subset
            import pandas as pd

            n = len(pd.read_csv(SHARED / "data" / name / "manifest.csv"))
            order = np.random.default_rng(0).permutation(n)
            for k, s in enumerate(range(0, n, CHUNK)):
                f = out / f"{stem}.part{k:03d}.npz"
                if not f.is_file():
                    embed_set(name, bb, sess, f, args.flip, rows_of=order[s : s + CHUNK])
            continue
        f = out / f"{stem}.npz"
        if f.is_file():
            continue
        embed_set(name, bb, sess, f, args.flip)


if __name__ == "__main__":
    main()
