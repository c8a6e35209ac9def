"""Load test of ``geoscout serve``: latency, throughput, errors and the server's memory over N requests.

Starts the real server (``geoscout serve --model M --port P`` in a subprocess, 127.0.0.1 only), sends
``--requests`` POST /v1/locate requests (default 1,000) from ``--clients`` concurrent httpx clients
(default 8) with real photos from ../shared/data, then stops the server (SIGINT) and prints:

- p50/p95/p99 latency and throughput of the good requests, and the error count;
- a share (``--bad-share``, default 5 %) of bad requests - garbage bytes, a file over the upload limit,
  a non-image content type - each must be answered 4xx with a JSON ``{"error": {...}}`` body, never 5xx;
- the server's RSS at rest after the first 100 requests (a warm-up phase) and after all of them, and its
  peak (VmHWM): the memory growth after warm-up is the number to watch (goal: no errors and no growth over 1,000 requests);
- during the load, two oversized uploads from raw sockets (``--huge-mb``, default 200 MB: one chunked, one
  with its Content-Length declared): how many bytes the server let in before its 413, and the server's peak
  RSS and peak temporary-file bytes (files it holds open under its TMPDIR, deleted ones included) meanwhile.
  Goal: 413 for both, after at most the body limit (files x upload limit) plus a little, temp disk bounded by it.

Model: ``--model`` (a bundle folder or a built-in name); default ``geoscout-lite`` when this installation
ships it, else a small real model is trained first into a temp folder (EfficientNet-Lite0 + k-NN head over
country cells on the OSV-5M sample, ~70 real photos) and served from there.

    python benchmarks/serve_load.py [--requests 1000] [--clients 8] [--model M] [--bad-share 0.05]
    python benchmarks/serve_load.py --runtimes onnx,torch --requests 300   # ONNX Runtime vs torch, one run

Exits 1 when any request failed (a good request not answered 200, or a bad one not answered 4xx JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED

PHOTO_SETS = ("osv5m-sample", "streetview-world", "im2gps")
MAX_UPLOAD_MB = 2.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_photos(limit: int = 200) -> list[tuple[str, bytes]]:
    """Up to ``limit`` (name, JPEG bytes) from the shared photo sets."""
    import pandas as pd

    out: list[tuple[str, bytes]] = []
    for name in PHOTO_SETS:
        root = SHARED / "data" / name
        if not (root / "manifest.csv").is_file():
            continue
        for p in pd.read_csv(root / "manifest.csv")["path"]:
            f = root / p
            if f.is_file() and f.stat().st_size <= MAX_UPLOAD_MB * 1024 * 1024:
                out.append((f.name, f.read_bytes()))
            if len(out) >= limit:
                return out
    if not out:
        sys.exit(f"no photos found under {SHARED / 'data'}; this benchmark needs ../shared/data")
    return out


def default_model(tmp: Path) -> str:
    """``geoscout-lite`` when shipped, else a small real bundle trained into ``tmp``."""
    from geoscout.locator import _builtin_dir

    if (_builtin_dir("geoscout-lite") / "config.json").is_file():
        return "geoscout-lite"
    from geoscout.train import train_model

    data = SHARED / "data" / "osv5m-sample"
    if not (data / "manifest.csv").is_file():
        sys.exit(f"geoscout-lite is not installed and {data} is missing: pass --model BUNDLE")
    print(
        "geoscout-lite is not in this installation: training a small k-NN bundle on the OSV-5M sample ...", flush=True
    )
    t0 = time.perf_counter()
    train_model(
        [str(data)],
        backbone="effnet-lite0",
        cells="country",
        head="knn",
        out=tmp / "bundle",
        store_dir=tmp / "stores",
        val_fraction=0.1,
        progress=False,
    )
    print(f"  trained in {time.perf_counter() - t0:.0f} s -> {tmp / 'bundle'}", flush=True)
    return str(tmp / "bundle")


class RssSampler(threading.Thread):
    """Polls a process's VmRSS (MiB) every ``interval`` seconds; ``peak`` is the highest seen. With ``tmpdir``
    it also tracks ``temp_peak``: the bytes of files under ``tmpdir`` the process holds open (spooled uploads
    are unlinked at once, so only ``/proc/PID/fd`` sees them)."""

    def __init__(self, pid: int, interval: float = 0.05, tmpdir: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self.tmpdir, self.temp_peak = (str(tmpdir) if tmpdir else None), 0
        self.halt = threading.Event()

    def temp_bytes(self) -> int:
        if self.tmpdir is None:
            return 0
        total = 0
        fd_dir = f"/proc/{self.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return 0
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}").startswith(self.tmpdir):
                    total += os.stat(f"{fd_dir}/{fd}").st_size
            except OSError:
                continue
        self.temp_peak = max(self.temp_peak, total)
        return total

    def reset_peaks(self) -> None:
        self.peak, self.temp_peak = 0.0, 0

    def status(self, key: str) -> float:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return float("nan")

    def rss(self) -> float:
        v = self.status("VmRSS")
        if v == v:
            self.peak = max(self.peak, v)
        return v

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.rss()
            self.temp_bytes()


def oversized_upload(port: int, total_mb: int, *, chunked: bool) -> dict:
    """POST a ``total_mb`` MB photo to /v1/locate from a raw socket and stop sending once the server stops
    reading (or answers); returns the status, the bytes the client got out, and the seconds it took."""
    import json as _json

    boundary = "hugeboundary"
    preamble = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    total = total_mb * 1024 * 1024
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(preamble) + total}\r\n"
    head = (
        f"POST /v1/locate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n"
    ).encode()
    block = b"\xff" * 65536
    sent = 0
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            s.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble) if chunked else preamble)
            while sent < total:
                s.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                sent += len(block)
        except OSError:  # the server stopped reading (timeout), answered and closed (reset / broken pipe)
            pass
        s.settimeout(60)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                part = s.recv(65536)
                if not part:
                    break
                data += part
            head_txt, _, body = data.partition(b"\r\n\r\n")
            status = int(head_txt.split()[1]) if head_txt else 0
            want = int(
                next(
                    (ln.split(b":")[1] for ln in head_txt.split(b"\r\n") if ln.lower().startswith(b"content-length")),
                    b"0",
                )
            )
            while len(body) < want:
                part = s.recv(65536)
                if not part:
                    break
                body += part
            code = _json.loads(body)["error"]["code"] if body else ""
        except (OSError, ValueError, KeyError, IndexError):
            status, code = 0, ""
    return {"status": status, "code": code, "sent": sent, "seconds": time.perf_counter() - t0}


def plan(n: int, bad_share: float, seed: int) -> list[str]:
    """Request kinds: 'good' or one of the bad kinds, spread evenly, in a seeded order."""
    rng = random.Random(seed)
    n_bad = round(n * bad_share)
    bad_kinds = ("garbage", "too_large", "not_image")
    kinds = ["good"] * (n - n_bad) + [bad_kinds[i % 3] for i in range(n_bad)]
    rng.shuffle(kinds)
    return kinds


async def drive(
    base: str,
    kinds: list[str],
    photos: list[tuple[str, bytes]],
    clients: int,
    top_k: int,
    sampler: RssSampler,
    timeout: float,
    offset: int = 0,
) -> dict:
    import httpx

    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for i, k in enumerate(kinds, offset):
        queue.put_nowait((i, k))
    too_large = os.urandom(int(MAX_UPLOAD_MB * 1024 * 1024) + 4096)
    lat: list[float] = []
    failures: list[str] = []
    bad_status: dict[int, int] = {}
    done = 0
    rss_100: list[float] = []  # RSS under load at every 100th answer

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while True:
            try:
                i, kind = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            name, blob = photos[i % len(photos)]
            ctype = "image/jpeg"
            if kind == "garbage":
                name, blob = f"garbage-{i}.jpg", os.urandom(2048 + i)
            elif kind == "too_large":
                name, blob = f"huge-{i}.jpg", too_large
            elif kind == "not_image":
                name, blob, ctype = f"notes-{i}.txt", b"this is not a photo\n" * 10, "text/plain"
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/locate", files={"files": (name, blob, ctype)}, data={"top_k": str(top_k)})
            except httpx.HTTPError as exc:
                failures.append(f"{kind} #{i}: {type(exc).__name__}: {exc}")
            else:
                dt = time.perf_counter() - t0
                if kind == "good":
                    if r.status_code == 200 and r.json()["predictions"][0]["candidates"]:
                        lat.append(dt)
                    else:
                        failures.append(f"good #{i}: HTTP {r.status_code} {r.text[:200]}")
                else:
                    bad_status[r.status_code] = bad_status.get(r.status_code, 0) + 1
                    try:
                        body_ok = bool(r.json()["error"]["message"])
                    except Exception:
                        body_ok = False
                    if not (400 <= r.status_code < 500 and body_ok):
                        failures.append(f"{kind} #{i}: HTTP {r.status_code} {r.text[:200]}")
            done += 1
            if (done + offset) % 100 == 0:
                rss_100.append(sampler.rss())

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"latencies": lat, "failures": failures, "bad_status": bad_status, "wall": wall, "rss_trend": rss_100}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        default=None,
        help="bundle folder or built-in name (default: geoscout-lite, else a small trained bundle)",
    )
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument(
        "--bad-share", type=float, default=0.05, help="share of bad requests (garbage, too large, not an image)"
    )
    ap.add_argument("--concurrency", type=int, default=2, help="server --concurrency (locate calls at once)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--huge-mb", type=int, default=200, help="size of the oversized uploads sent during the load")
    ap.add_argument(
        "--runtimes",
        default="auto",
        help="backbone runtime(s) of the server, comma-separated (e.g. onnx,torch: one load test each, in this run, "
        "then their throughput ratio)",
    )
    args = ap.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 100_000 and 0 <= args.bad_share < 1):
        ap.error("need 1 <= clients <= 64, 1 <= requests <= 100000, 0 <= bad-share < 1")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if not runtimes or any(r not in ("auto", "onnx", "torch") for r in runtimes):
        ap.error("--runtimes: auto, onnx and/or torch, comma-separated")
    code, summaries = 0, {}
    for runtime in runtimes:
        rc, summaries[runtime] = _load_test(args, runtime)
        code = max(code, rc)
    if len(summaries) > 1:
        print()
        print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for runtime, s in summaries.items():
            print(
                f"runtime {runtime}: {s['photos_per_s']:.2f} photos/s, p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms"
            )
        first, *rest = summaries
        for other in rest:
            a, b = summaries[first], summaries[other]
            print(
                f"throughput {first} / {other}: {a['photos_per_s'] / b['photos_per_s']:.2f}x; "
                f"p50 latency {other} / {first}: {b['p50_ms'] / a['p50_ms']:.2f}x"
            )
    return code


def _load_test(args: argparse.Namespace, runtime: str) -> tuple[int, dict]:
    """One load test of a server on ``runtime``; prints its report, returns (exit code, summary)."""
    import httpx

    photos = real_photos()
    with tempfile.TemporaryDirectory(prefix="geoscout-serve-load-") as tmpdir:
        tmp = Path(tmpdir)
        model = args.model or default_model(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-c",
            "import sys; from geoscout.cli import main; sys.exit(main())",
            "serve",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-upload-mb",
            str(MAX_UPLOAD_MB),
            "--concurrency",
            str(args.concurrency),
            "--timeout",
            "300",
            "--runtime",
            runtime,
        ]
        log = open(tmp / "server.log", "w+")  # noqa: SIM115 - read back and closed in the finally below
        spool = tmp / "server-tmp"  # the server's TMPDIR: where multipart parsing spills large parts
        spool.mkdir()
        env = {**os.environ, "TMPDIR": str(spool)}
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=env)
        sampler = RssSampler(server.pid, tmpdir=spool)
        try:
            t0 = time.perf_counter()
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    sys.exit(f"server exited with {server.returncode} before answering:\n{log.read()[-3000:]}")
                try:
                    if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > 300:
                    sys.exit("server did not answer /v1/health within 300 s")
                time.sleep(0.2)
            startup = time.perf_counter() - t0
            rss_ready = sampler.rss()
            sampler.start()
            kinds = plan(args.requests, args.bad_share, args.seed)
            print(
                f"server {model} up in {startup:.1f} s (RSS {rss_ready:.0f} MiB); {len(kinds)} requests "
                f"({kinds.count('good')} good, {len(kinds) - kinds.count('good')} bad) from {args.clients} clients ...",
                flush=True,
            )
            # phase 1: the first 100 requests warm the server up; RSS is read at rest after each phase
            warm = min(100, len(kinds))
            res = asyncio.run(drive(base, kinds[:warm], photos, args.clients, args.top_k, sampler, args.timeout))
            time.sleep(1.0)
            res["rss_100"] = sampler.rss()
            huge: list[dict] = []
            hwm_before_huge = sampler.status("VmHWM")
            sampler.reset_peaks()
            hostile = threading.Thread(
                target=lambda: huge.extend(oversized_upload(port, args.huge_mb, chunked=c) for c in (True, False)),
                daemon=True,
            )
            hostile.start()  # the oversized uploads run while phase 2 loads the server
            if len(kinds) > warm:
                rest = asyncio.run(
                    drive(base, kinds[warm:], photos, args.clients, args.top_k, sampler, args.timeout, offset=warm)
                )
                for key in ("latencies", "failures", "rss_trend"):
                    res[key] += rest[key]
                for code, n in rest["bad_status"].items():
                    res["bad_status"][code] = res["bad_status"].get(code, 0) + n
                res["wall"] += rest["wall"]
            hostile.join(timeout=300)
            load_peak, temp_peak = sampler.peak, sampler.temp_peak
            time.sleep(1.0)
            rss_end = sampler.rss()
            hwm = sampler.status("VmHWM")
        finally:
            sampler.halt.set()
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()

    lat_ms = [x * 1000 for x in res["latencies"]]
    n_bad = len(kinds) - kinds.count("good")
    growth = rss_end - res["rss_100"]
    print()
    print(
        f"command: python benchmarks/serve_load.py --requests {args.requests} --clients {args.clients}"
        + (f" --model {args.model}" if args.model else "")
        + (f" --runtimes {args.runtimes}" if args.runtimes != "auto" else "")
        + f"  [this run: runtime {runtime}]"
    )
    print(
        f"requests: {len(kinds)} in {res['wall']:.1f} s -> {len(kinds) / res['wall']:.2f} req/s "
        f"({len(lat_ms) / res['wall']:.2f} photos/s located)"
    )
    print(
        f"latency of good requests (ms): p50 {pct(lat_ms, 50):.0f}  p95 {pct(lat_ms, 95):.0f}  "
        f"p99 {pct(lat_ms, 99):.0f}  max {max(lat_ms, default=float('nan')):.0f}"
    )
    print(f"bad requests: {n_bad}, answered {dict(sorted(res['bad_status'].items()))}")
    print(f"errors: {len(res['failures'])}")
    for f in res["failures"][:10]:
        print("  ", f)
    print(
        f"server RSS at rest (MiB): ready {rss_ready:.0f}, after 100 requests {res['rss_100']:.0f}, after all "
        f"{rss_end:.0f}, peak {max(hwm, sampler.peak):.0f}"
    )
    print("server RSS under load, every 100 requests (MiB): " + " ".join(f"{v:.0f}" for v in res["rss_trend"]))
    print(
        f"memory growth after warm-up (100 -> {len(kinds)} requests): {growth:+.1f} MiB "
        f"({growth / res['rss_100']:+.1%})"
    )
    limit_mb = (MAX_UPLOAD_MB * 8 * 1024 * 1024 + 65536) / 2**20  # serve's default --max-files 8
    print(
        f"oversized uploads during the load ({args.huge_mb} MB each; the body limit is {limit_mb:.1f} MiB = "
        f"8 files x {MAX_UPLOAD_MB:g} MB + framing):"
    )
    for h, how in zip(huge, ("chunked", "Content-Length declared")):
        print(
            f"  {how}: HTTP {h['status']} {h['code']} after the client sent {h['sent'] / 2**20:.1f} MiB "
            f"of {args.huge_mb} MB in {h['seconds']:.2f} s"
        )
    print(
        f"server while they ran: peak RSS {load_peak:.0f} MiB (peak before them {hwm_before_huge:.0f} MiB), "
        f"peak temp files open {temp_peak / 2**20:.1f} MiB"
    )
    huge_ok = len(huge) == 2 and all(h["status"] == 413 for h in huge)
    if not huge_ok:
        print("  an oversized upload was not answered 413")
    print(f"server exit code on SIGINT: {server.returncode}")
    summary = {"photos_per_s": len(lat_ms) / res["wall"], "p50_ms": pct(lat_ms, 50), "p95_ms": pct(lat_ms, 95)}
    return (1 if res["failures"] or not huge_ok else 0), summary


if __name__ == "__main__":
    raise SystemExit(main())
