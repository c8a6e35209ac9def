"""`geoscout serve` and `geoscout watch` as real subprocesses over a small real bundle.

The bundle is trained with `geoscout train` (EfficientNet-Lite0 + k-NN head over country cells) on 20 real
photos of the OSV-5M sample; the server answers real HTTP on a free 127.0.0.1 port; both commands are
stopped with SIGINT (Ctrl-C) and must exit cleanly.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Ctrl-C as a terminal delivers it: a suite started as a background job of a non-interactive shell (`pytest &`)
# runs with SIGINT ignored, and its children would inherit that; the CLI keeps whatever it is given
CLI = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from geoscout.cli import main; sys.exit(main())",
]
STARTUP_S = 180  # model load under a heavily shared CPU


@pytest.fixture(scope="module")
def bundle(shared_data, tmp_path_factory) -> Path:
    """A bundle written by `geoscout train` on 20 real photos (its embedding store in tmp)."""
    import pandas as pd
    from typer.testing import CliRunner

    from geoscout.cli import app

    root = shared_data("osv5m-sample")
    tmp = tmp_path_factory.mktemp("serve-bundle")
    df = pd.read_csv(root / "manifest.csv").head(20)
    df = df.assign(path=[str(root / p) for p in df["path"]])
    df[["path", "lat", "lon"]].to_csv(tmp / "manifest.csv", index=False)
    out = tmp / "bundle"
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(tmp / "manifest.csv"),
            "-o",
            str(out),
            "--backbone",
            "effnet-lite0",
            "--cells",
            "country",
            "--head",
            "knn",
            "--val-fraction",
            "0.2",
            "--store-dir",
            str(tmp / "stores"),
            "-q",
        ],
    )
    if res.exit_code != 0:
        pytest.skip(f"`geoscout train` could not build a small bundle here: {res.output or res.exception!r}")
    assert (out / "config.json").is_file()
    return out


@pytest.fixture(scope="module")
def photo(shared_data) -> Path:
    import pandas as pd

    root = shared_data("osv5m-sample")
    return root / pd.read_csv(root / "manifest.csv")["path"].iloc[40]  # not among the 20 training photos


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A CLI subprocess whose merged stdout/stderr lines are collected by a reader thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", COLUMNS="400", NO_COLOR="1", TERM="dumb")
        self.p = subprocess.Popen(
            CLI + args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._q.put(line)

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._q.get_nowait())
            except queue.Empty:
                return

    @property
    def text(self) -> str:
        self._drain()
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text:
                return
            if self.p.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                if needle in self.text:
                    return
                pytest.fail(f"exited {self.p.returncode} before printing {needle!r}:\n{self.text[-3000:]}")
            time.sleep(0.05)
        pytest.fail(f"no {needle!r} within {timeout:.0f} s:\n{self.text[-3000:]}")

    def interrupt(self, timeout: float = 30) -> int:
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGABRT makes the faulthandler print every thread's stack: the failure says where it hung
            self.p.send_signal(signal.SIGABRT)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            self._reader.join(timeout=10)
            pytest.fail(f"did not stop within {timeout} s of SIGINT:\n{self.text[-8000:]}")
        time.sleep(0.2)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def test_serve_answers_real_http_and_stops_on_ctrl_c(bundle, photo, tmp_path):
    import httpx

    port = _free_port()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = Proc(["serve", "--model", str(bundle), "--port", str(port), "--max-upload-mb", "2"], cwd)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + STARTUP_S
        health = None
        while time.monotonic() < end and proc.p.poll() is None:
            try:
                health = httpx.get(base + "/v1/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, f"server never answered (rc={proc.p.poll()}):\n{proc.text[-3000:]}"
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["model"] == str(bundle)
        r = httpx.post(
            base + "/v1/locate",
            files={"files": (photo.name, photo.read_bytes(), "image/jpeg")},
            data={"top_k": "3"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        (pred,) = r.json()["predictions"]
        assert pred["image_id"] == photo.name and len(pred["candidates"]) == 3
        c = pred["candidates"][0]
        assert -90 <= c["lat"] <= 90 and -180 <= c["lon"] <= 180 and 0 < c["probability"] <= 1
        bad = httpx.post(
            base + "/v1/locate", files={"files": ("x.jpg", os.urandom(3 * 1024 * 1024), "image/jpeg")}, timeout=60
        )
        assert bad.status_code == 413 and bad.json()["error"]["code"] == "too_large"
        rc = proc.interrupt()
    finally:
        proc.kill()
    assert rc == 0, proc.text[-3000:]
    assert "Traceback" not in proc.text and "Finished server process" in proc.text
    assert list(cwd.iterdir()) == [], "the server wrote into its working directory"
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/v1/health", timeout=2)


def test_watch_prints_guesses_and_stops_on_ctrl_c(bundle, photo, tmp_path):
    from PIL import Image

    shots = tmp_path / "shots"
    shots.mkdir()
    map_path = tmp_path / "map.html"
    proc = Proc(
        ["watch", str(shots), "--model", str(bundle), "--interval", "0.1", "--top-k", "3", "--map", str(map_path)],
        tmp_path,
    )
    try:
        proc.wait_for("watching", STARTUP_S)
        # a 16:9 screenshot: the real photo between game-interface bars (the default crop keeps the middle band)
        shot = Image.new("RGB", (1280, 720), (30, 30, 30))
        shot.paste(Image.open(photo).convert("RGB").resize((1280, 504)), (0, 58))
        shot.save(tmp_path / "shot.png")
        shutil.move(str(tmp_path / "shot.png"), shots / "round1.png")  # appears whole, like a saved screenshot
        (shots / "broken.jpg").write_bytes(b"not a screenshot")
        proc.wait_for("round1.png ->", 120)
        proc.wait_for("broken.jpg:", 30)
        rc = proc.interrupt()
    finally:
        proc.kill()
    out = proc.text
    assert rc == 0, out[-3000:]
    assert "stopped" in out.splitlines()[-1] and "Traceback" not in out
    guess_line = next(line for line in out.splitlines() if "round1.png ->" in line)
    assert "#1 " in guess_line and "#3 " in guess_line and "km" in guess_line
    assert map_path.is_file() and "<svg" in map_path.read_text()
