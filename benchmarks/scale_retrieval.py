"""How retrieval cost grows with the gallery: exact (faiss flat) vs. approximate (IVF-PQ).

For each gallery size it prints per-query latency (batch of 1, median), index memory,
and recall@10 of the approximate index against exact search, in one run:

    python benchmarks/scale_retrieval.py --sizes 10000,100000,1000000,10000000 --dim 256

Synthetic data: unit vectors around random cluster centres (image embeddings cluster by
scene type), queries = gallery entries with added noise (a new photo of a known place).
Galleries are generated and added in chunks, and exact top-10 is computed chunk by chunk,
so a 10M x 256 gallery never sits in memory as float32. Exact search above --exact-max
entries is skipped for latency/memory (it would need 4*dim bytes per entry) but still
run chunk-wise for the recall reference. Goal: 10M entries, query < 20 ms at
recall@10 >= 0.9 (true nearest neighbour within the 10 returned), index < 2 GB.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import current_rss_mb, markdown_table, peak_rss_mb
from geoscout.index import RetrievalIndex, normalize_rows, recall_at_k

CHUNK = 500_000


def make_chunk(i: int, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    return normalize_rows(x)


def run(size: int, dim: int, n_queries: int, exact_max: int, nprobes: int | list[int]) -> list[dict]:
    """One build per gallery size; one row per ``nprobe`` (lists visited per query) searched on it."""
    nprobes = [nprobes] if isinstance(nprobes, int) else list(nprobes)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10_000, dim), dtype=np.float32) / np.sqrt(dim) * 3
    n_chunks = (size + CHUNK - 1) // CHUNK
    q_src = make_chunk(0, min(size, CHUNK), dim, centers)[:n_queries]
    queries = normalize_rows(q_src + 0.25 * rng.standard_normal(q_src.shape, dtype=np.float32) / np.sqrt(dim) * 3)

    approx = RetrievalIndex(kind="ivfpq", nprobe=nprobes[0])
    exact = RetrievalIndex(kind="flat") if size <= exact_max else None
    best_s = np.full((n_queries, 10), -np.inf, dtype=np.float32)
    best_i = np.full((n_queries, 10), -1, dtype=np.int64)
    t_build = time.perf_counter()
    for c in range(n_chunks):
        n = min(CHUNK, size - c * CHUNK)
        x = make_chunk(c, n, dim, centers)
        if c == 0:
            approx.fit(x, n_total=size)
            if exact is not None:
                exact.fit(x)
        else:
            approx.add(x)
            if exact is not None:
                exact.add(x)
        s = queries @ x.T  # exact top-10, chunk by chunk
        k = min(10, n)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + c * CHUNK], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
        del x, s
    build_s = time.perf_counter() - t_build

    def latency(index: RetrievalIndex) -> float:
        index.search(queries[:5], 10)  # warm up
        ts = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q[None, :], 10)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts) * 1000)

    exact_row = {}
    if exact is not None:
        exact_row = {"exact ms/query": latency(exact), "exact MB": exact.memory_bytes() / 2**20}
    rows = []
    for nprobe in nprobes:
        approx.index_.nprobe = min(nprobe, approx.index_.nlist)
        _, a_ids = approx.search(queries, 10)
        rec = recall_at_k(a_ids, best_i, 10)
        row = {
            "gallery": f"{size:,}",
            "approx kind": approx.kind_,
            "nlist": approx.index_.nlist,
            "nprobe": approx.index_.nprobe,
            "approx ms/query": latency(approx),
            "approx MB": approx.memory_bytes() / 2**20,
            "approx bytes/entry": approx.memory_bytes() / size,
            "recall@10 (NN in top-10)": rec["nn_in_topk"],
            "top-10 overlap": rec["overlap"],
            "build s": build_s,
            **exact_row,
        }
        if exact_row:
            row["speed-up"] = row["exact ms/query"] / row["approx ms/query"]
        row["process RSS MB"] = current_rss_mb()
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-max", type=int, default=2_000_000)
    ap.add_argument("--nprobe", default="32,128,256", help="comma list: lists visited per query, each measured")
    args = ap.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        rows += run(size, args.dim, args.queries, args.exact_max, [int(v) for v in args.nprobe.split(",")])
        print(rows[-1], flush=True)
    cols = [
        "gallery",
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
        "process RSS MB",
    ]
    print(
        f"\nRetrieval, dim {args.dim}, {args.queries} queries, nprobe {args.nprobe}; peak RSS {peak_rss_mb():,.0f} MB\n"
    )
    print(markdown_table(rows, cols))


if __name__ == "__main__":
    main()
