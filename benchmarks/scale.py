"""How geoscout's cost grows with size, each measured in one run with a ratio (issue 8).

1. Embedding throughput on the same real photos (../shared/data/streetview-croatia, EfficientNet-
   Lite0): the single-process ``embed_dataset`` and the Ray path with 1 and 2 actors (one CPU
   each) on a local Ray instance. Wall time includes Ray's actor start-up (import torch, load
   the weights); "steady" counts only the images after the first committed batch.
   Goal: 2 workers >= 1.7x one worker.
2. Retrieval: query latency, memory and recall@10 of exact (faiss flat) vs. approximate (IVF-PQ)
   search at 10k, 100k, 1M (and 10M with --full) synthetic gallery entries
   (``benchmarks/scale_retrieval.run``). Goal: 10M entries, approximate query < 20 ms at
   recall@10 >= 0.9 in < 2 GB.
3. Head training: one epoch of the ``classifier`` head (512 hidden, grid:5 cells, label
   smoothing) on 10k, 100k, 1M synthetic 1280-d embeddings: seconds and microseconds per sample.

    python benchmarks/scale.py                      # all three, 10M left out
    python benchmarks/scale.py --full               # adds the 10M-entry gallery
    python benchmarks/scale.py --parts embed --images 128
    python benchmarks/scale.py --no-write           # print only, leave RESULTS.md alone

The tables go into the "Scale" section of benchmarks/RESULTS.md (only that section is replaced).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, current_rss_mb, markdown_table, need_shared

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"


# ------------------------------------------------------------------------------------- embedding
def _dataset(n: int, root: Path):
    from geoscout.data import Dataset, load_dataset

    src = load_dataset(need_shared() / "data" / "streetview-croatia")
    frame = src.frame.iloc[:n].copy()
    frame["path"] = [str(src.image_path(i)) for i in range(len(frame))]
    return Dataset.create(root / "ds", frame)


def bench_embedding(n_images: int, batch_size: int, backbone: str) -> tuple[list[dict], dict]:
    import ray

    from geoscout.backbones import create_backbone
    from geoscout.distributed import embed_dataset_ray
    from geoscout.embeddings import embed_dataset

    tmp = Path(tempfile.mkdtemp(prefix="geoscout-scale-"))
    ds = _dataset(n_images, tmp)
    rows: list[dict] = []

    def timed(label: str, fn) -> dict:
        stamps: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        store = fn(lambda done: stamps.append((time.perf_counter(), done)))
        wall = time.perf_counter() - t0
        n = len(store)
        # steady rate: from the first commit that reaches 25% of the images (every actor is up by
        # then) to the last one, so start-up (imports, weights) is left out
        q = next(i for i, (_, done) in enumerate(stamps) if done >= 0.25 * n or i == len(stamps) - 1)
        (t_q, n_q), (t_end, n_end) = stamps[q], stamps[-1]
        steady = (n_end - n_q) / (t_end - t_q) if t_end > t_q else float("nan")
        row = {
            "path": label,
            "load": os.getloadavg()[0],
            "images": n,
            "wall s": wall,
            "images/s (wall)": n / wall,
            "images/s (steady)": steady,
            "first commit s": stamps[0][0] - t0,
        }
        print("commits (s, images done):", [(round(t - t0, 2), d) for t, d in stamps], flush=True)
        rows.append(row)
        print(row, flush=True)
        return row

    bb = create_backbone(backbone)  # loaded before the clock starts, as the Ray actors' start-up is counted separately
    single = timed(
        "single process (embed_dataset, 2 decode threads, torch on all cores)",
        lambda cb: embed_dataset(ds, bb, tmp / "single", batch_size=batch_size, workers=2, progress=False, on_batch=cb),
    )
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, logging_level="WARNING")
    ray_init_s = time.perf_counter() - t
    try:
        one = timed(
            "Ray, 1 actor (1 CPU)",
            lambda cb: embed_dataset_ray(
                ds,
                backbone,
                tmp / "ray1",
                address=None,
                num_workers=1,
                batch_size=batch_size,
                progress=False,
                on_batch=cb,
            ),
        )
        two = timed(
            "Ray, 2 actors (1 CPU each)",
            lambda cb: embed_dataset_ray(
                ds,
                backbone,
                tmp / "ray2",
                address=None,
                num_workers=2,
                batch_size=batch_size,
                progress=False,
                on_batch=cb,
            ),
        )
    finally:
        ray.shutdown()
    ratios = {
        "ray_init_s": ray_init_s,
        "two_over_one_wall": two["images/s (wall)"] / one["images/s (wall)"],
        "two_over_one_steady": two["images/s (steady)"] / one["images/s (steady)"],
        "two_over_single_wall": two["images/s (wall)"] / single["images/s (wall)"],
        "two_over_single_steady": two["images/s (steady)"] / single["images/s (steady)"],
    }
    print(ratios, flush=True)
    return rows, ratios


# ------------------------------------------------------------------------------------- retrieval
def bench_retrieval(size: int, dim: int, queries: int, nprobes: list[int]) -> list[dict]:
    from scale_retrieval import run

    load = os.getloadavg()[0]
    t = time.perf_counter()
    rows = run(size, dim, queries, 2_000_000, nprobes)
    for row in rows:
        row["total s"] = time.perf_counter() - t
        row["load"] = load
        print(row, flush=True)
    return rows


# ------------------------------------------------------------------------------------- heads
class Skipped(Exception):
    """A measurement this machine cannot make (the message says why)."""


def _mem_available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def bench_head(n: int, dim: int) -> dict:
    import warnings

    from geoscout.cells import create_partition
    from geoscout.heads import create_head

    # fit() holds X itself (it standardises batch by batch, so no N x dim copy); 1.3 x for the synthetic build
    need_gb = 1.3 * n * dim * 4 / 2**30
    avail_gb = _mem_available_gb()
    if need_gb > 0.8 * avail_gb:
        raise Skipped(
            f"head training at {n:,} (needs ~{need_gb:.0f} GB for the embedding matrix; {avail_gb:.0f} GB available)"
        )
    rng = np.random.default_rng(0)
    k = 400
    places = np.column_stack([rng.uniform(-55, 70, k), rng.uniform(-180, 180, k)])
    lab = rng.integers(0, k, n)
    y = np.clip(places[lab] + rng.normal(0, 1.0, (n, 2)), [-89, -180], [89, 179.999])
    protos = rng.standard_normal((k, dim), dtype=np.float32)
    X = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # chunked: no N x dim temporaries
        e = min(n, s + 100_000)
        x = protos[lab[s:e]] + 0.8 * rng.standard_normal((e - s, dim), dtype=np.float32)
        X[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    del lab
    part = create_partition("grid:5").fit(y[:, 0], y[:, 1])
    head = create_head("classifier", epochs=1, val_fraction=0.0, seed=0)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        head.fit(X, y, partition=part, groups=np.arange(n))
    secs = time.perf_counter() - t
    row = {
        "embeddings": f"{n:,}",
        "load": load,
        "dim": dim,
        "cells": part.n_cells,
        "epochs": 1,
        "fit s": secs,
        "us/sample": secs / n * 1e6,
        "samples/s": n / secs,
        "process RSS MB": current_rss_mb(),
    }
    print(row, flush=True)
    del X, y, head
    return row


# ------------------------------------------------------------------------------------- report
def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace the Scale section (between the markers) of RESULTS.md; append it when absent."""
    from geoscout._io import atomic_write_text

    old = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, new)


def render(
    args: argparse.Namespace,
    header: list[str],
    emb: tuple[list[dict], dict] | None,
    ret: list[dict],
    heads: list[dict],
    pending: list[str],
    skipped: list[str],
) -> str:
    out = header[:]
    if emb is not None:
        rows, r = emb
        out += [
            "",
            f"### Embedding throughput ({args.images} real 640x640 photos, {args.backbone}, batch {args.batch_size})",
            "",
            markdown_table(
                rows, ["path", "load", "images", "wall s", "first commit s", "images/s (wall)", "images/s (steady)"]
            ),
            "",
            "Steady = images per second from the commit that reaches 25% of the images to the last one "
            "(start-up left out). Ray actors run torch on one thread each (Ray sets OMP_NUM_THREADS from num_cpus=1); "
            "the single process runs torch on all cores.",
            "",
            f"2 vs 1 Ray actor: **{r['two_over_one_wall']:.2f}x** (wall, incl. actor start-up), "
            f"**{r['two_over_one_steady']:.2f}x** (steady). 2 Ray actors vs single process: "
            f"{r['two_over_single_wall']:.2f}x (wall), {r['two_over_single_steady']:.2f}x (steady). "
            f"Goal 2 vs 1 >= 1.7x (steady): **{'met' if r['two_over_one_steady'] >= 1.7 else 'not met'}**. "
            f"Local Ray start-up (not counted above): {r['ray_init_s']:.1f} s.",
        ]
    if ret:
        big = [r for r in ret if r["gallery"] == "10,000,000"]
        goal = ""
        if big:

            def meets(b: dict) -> bool:
                return b["approx ms/query"] < 20 and b["recall@10 (NN in top-10)"] >= 0.9 and b["approx MB"] < 2048

            ok = [b for b in big if meets(b)]
            b = ok[0] if ok else max(big, key=lambda r: r["recall@10 (NN in top-10)"])
            goal = (
                f" 10M entries at nprobe {b.get('nprobe', '?')}: {b['approx ms/query']:.2f} ms/query, recall@10 "
                f"{b['recall@10 (NN in top-10)']:.3f}, {b['approx MB']:,.0f} MB index; goal (< 20 ms, >= 0.9, < 2 GB) "
                f"**{'met' if ok else 'not met'}**."
            )
        out += [
            "",
            f"### Retrieval (synthetic unit vectors, dim {args.dim}, {args.queries} queries, IVF-PQ at "
            "64 bytes/vector, one query per search call; each gallery built once and searched at every nprobe)",
            "",
            markdown_table(
                ret,
                [
                    "gallery",
                    "load",
                    "approx kind",
                    "nlist",
                    "nprobe",
                    "approx ms/query",
                    "exact ms/query",
                    "speed-up",
                    "recall@10 (NN in top-10)",
                    "top-10 overlap",
                    "approx MB",
                    "exact MB",
                    "approx bytes/entry",
                    "build s",
                ],
            ),
            "",
            "Exact search is skipped above 2M entries (4*dim bytes per entry); recall there is against a "
            "chunked exact scan. recall@10 = share of queries whose exact nearest neighbour is among the 10 "
            "returned; top-10 overlap = share of the exact top 10 returned (PQ codes reorder near ties)." + goal,
        ]
    if heads:
        per = [r["us/sample"] for r in heads]
        out += [
            "",
            "### Head training (classifier, 512 hidden, one epoch, batch 256, synthetic 1280-d embeddings)",
            "",
            markdown_table(
                heads,
                ["embeddings", "load", "dim", "cells", "epochs", "fit s", "us/sample", "samples/s", "process RSS MB"],
            ),
            "",
            f"Cost per sample, largest vs smallest size: {per[-1] / per[0]:.2f}x "
            "(1.0 = training time grows linearly with the data).",
        ]
    if skipped:
        out += ["", "Not measured on this machine: " + "; ".join(skipped) + "."]
    if pending:
        out += ["", "Not measured in this run (stopped before): " + ", ".join(pending) + "."]
    out += [
        "",
        "`load` = 1-minute load average of the machine when that measurement started (2 cores; above ~2 the "
        "cores were shared with other work and the numbers are pessimistic).",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="embed,retrieval,heads", help="comma list of embed, retrieval, heads")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="retrieval gallery sizes")
    ap.add_argument("--full", action="store_true", help="add the 10M-entry gallery")
    ap.add_argument("--dim", type=int, default=256, help="retrieval vector dim (IVF-PQ at 64 bytes/vector)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--nprobe",
        default="32,128,256",
        help="comma list of lists visited per query, each measured on the same index (the library default is 128)",
    )
    ap.add_argument("--head-sizes", default="10000,100000,1000000")
    ap.add_argument("--note", default="", help="a line to print above the tables (e.g. the machine's load)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument(
        "--state",
        type=Path,
        default=None,
        help="JSON file of earlier rows to merge with (several runs fill one Scale section)",
    )
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    load = os.getloadavg()
    import json

    state = json.loads(args.state.read_text()) if args.state is not None and args.state.is_file() else {}
    runs = [
        *state.get("runs", []),
        f"- `python benchmarks/scale.py {' '.join(sys.argv[1:])}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at start "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)" + (f"; {args.note}" if args.note else ""),
    ]
    header = ["## Scale", "", "Runs:", "", *runs]
    # Small sizes first; the section is rewritten after every measurement, so a run stopped
    # early still leaves every finished row in RESULTS.md.
    jobs: list[tuple[str, str, int]] = []
    if "embed" in parts:
        jobs.append(("embed", "embedding 1 vs 2 Ray actors", args.images))
    r_sizes = [int(s) for s in args.sizes.split(",") if s] if "retrieval" in parts else []
    if "retrieval" in parts and args.full and 10_000_000 not in r_sizes:
        r_sizes.append(10_000_000)
    h_sizes = [int(s) for s in args.head_sizes.split(",") if s] if "heads" in parts else []
    jobs += [("retrieval", f"retrieval at {n:,}", n) for n in r_sizes if n < 5_000_000]
    jobs += [("heads", f"head training at {n:,}", n) for n in h_sizes if n < 500_000]
    jobs += [("heads", f"head training at {n:,}", n) for n in h_sizes if n >= 500_000]
    jobs += [("retrieval", f"retrieval at {n:,}", n) for n in r_sizes if n >= 5_000_000]
    emb = state.get("emb")
    ret, heads, skipped = state.get("ret", []), state.get("heads", []), state.get("skipped", [])

    def keep(rows: list[dict], key: str, value: str) -> list[dict]:
        return [r for r in rows if r[key] != value]

    for i, (kind, _label, n) in enumerate(jobs):
        try:
            if kind == "embed":
                emb = bench_embedding(n, args.batch_size, args.backbone)
            elif kind == "retrieval":
                rows = bench_retrieval(n, args.dim, args.queries, [int(v) for v in str(args.nprobe).split(",")])
                ret = sorted(
                    keep(ret, "gallery", rows[0]["gallery"]) + rows,
                    key=lambda r: (int(r["gallery"].replace(",", "")), int(r.get("nprobe", 0))),
                )
            else:
                row = bench_head(n, 1280)
                heads = sorted(
                    [*keep(heads, "embeddings", row["embeddings"]), row],
                    key=lambda r: int(r["embeddings"].replace(",", "")),
                )
        except Skipped as exc:
            print(f"skipped: {exc}", flush=True)
            if str(exc) not in skipped:
                skipped.append(str(exc))
        text = render(args, header, emb, ret, heads, [j[1] for j in jobs[i + 1 :]], skipped)
        if args.state is not None:
            from geoscout._io import atomic_write_json

            atomic_write_json(args.state, {"runs": runs, "emb": emb, "ret": ret, "heads": heads, "skipped": skipped})
        if not args.no_write:
            write_section(text)
    if not jobs:  # --parts none: render (and write) what --state holds
        text = render(args, header[:-1], emb, ret, heads, [], skipped)
        if not args.no_write:
            write_section(text)
    print("\n" + text)
    if not args.no_write:
        print(f"\nwrote the Scale section of {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
