"""Server limits over real HTTP (uvicorn in a thread on 127.0.0.1) and the real tiny model:
request timeout -> 504 JSON, the concurrency bound holds even when requests time out,
unexpected failures are JSON 500, and uploads write nothing outside the temp dir."""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import geoscout
from geoscout.server import ServerSettings, create_app


class Instrumented:
    """Wraps the real locator: optional delay or failure, and counts the calls running at once."""

    def __init__(self, real: Any, delay_s: float = 0.0, fail: bool = False) -> None:
        self.real, self.delay_s, self.fail = real, delay_s, fail
        self.name, self.card = real.name, getattr(real, "card", "")
        self._lock = threading.Lock()
        self.idle = threading.Condition(self._lock)  # notified whenever a call ends
        self.running = self.max_running = self.calls = self.finished = 0

    def locate(self, images: Any, **kw: Any) -> Any:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.max_running = max(self.max_running, self.running)
        try:
            time.sleep(self.delay_s)
            if self.fail:
                raise RuntimeError("simulated crash inside the model")
            return self.real.locate(images, **kw)
        finally:
            with self._lock:
                self.running -= 1
                self.finished += 1
                self.idle.notify_all()


@pytest.fixture(scope="module")
def photo(small_world_sample) -> bytes:
    return small_world_sample[0][3].read_bytes()


def _post(base: str, blob: bytes, name: str = "p.jpg", timeout: float = 120) -> httpx.Response:
    return httpx.post(
        base + "/v1/locate", files={"files": (name, blob, "image/jpeg")}, data={"top_k": "2"}, timeout=timeout
    )


def test_concurrency_bound_is_honoured(live_server, tiny_locator, photo):
    loc = Instrumented(tiny_locator, delay_s=0.2)
    with live_server(create_app(ServerSettings(concurrency=2), locator=loc)) as srv, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: _post(srv.base, photo, f"{i}.jpg"), range(6)))
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    assert loc.calls == 6 and loc.max_running == 2


def test_timeout_is_504_json_and_slots_stay_held_until_the_work_ends(live_server, tiny_locator, photo):
    loc = Instrumented(tiny_locator, delay_s=1.5)
    settings = ServerSettings(concurrency=1, request_timeout_s=0.4)
    with live_server(create_app(settings, locator=loc)) as srv:
        with ThreadPoolExecutor(4) as pool:
            t0 = time.monotonic()
            answers = list(pool.map(lambda i: _post(srv.base, photo, f"{i}.jpg"), range(4)))
            waited = time.monotonic() - t0
        for r in answers:
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "timeout" and "longer than 0.4 s" in r.json()["error"]["message"]
        # queued requests time out on the same clock (waiting for the slot counts), not 4 x 0.4 s in a row
        assert waited < 1.5, f"504s took {waited:.1f} s"
        # a timed-out call keeps its slot until its thread ends: never two model calls at once
        assert loc.max_running == 1
        with loc.idle:
            assert loc.idle.wait_for(lambda: loc.running == 0, timeout=30)
        loc.delay_s, settings.request_timeout_s = 0.0, 120.0  # the live app reads its settings per request
        r = _post(srv.base, photo)  # the server still works once the slow call has ended
        assert r.status_code == 200, r.text
        assert loc.max_running == 1
        assert httpx.get(srv.base + "/v1/health").json()["status"] == "ok"


def test_unexpected_failure_is_json_500(live_server, tiny_locator, photo):
    with live_server(create_app(ServerSettings(), locator=Instrumented(tiny_locator, fail=True))) as srv:
        r = _post(srv.base, photo)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and "RuntimeError" in err["message"]
    assert "simulated crash" not in err["message"]  # internals stay in the server log


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py":
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_uploads_write_nothing_outside_the_temp_dir(live_server, tiny_locator, photo, tmp_path, monkeypatch):
    cwd, spool = tmp_path / "cwd", tmp_path / "spool"
    cwd.mkdir()
    spool.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where large multipart parts spill
    package = Path(geoscout.__file__).parent
    before = _snapshot(package)
    big_photo = photo + b"\0" * (1_500_000 - len(photo)) if len(photo) < 1_500_000 else photo  # > the 1 MB spool
    with live_server(create_app(ServerSettings(max_upload_bytes=3 * 1024 * 1024), locator=tiny_locator)) as srv:
        assert _post(srv.base, photo).status_code == 200
        r = _post(srv.base, big_photo, "big.jpg")
        assert r.status_code == 200, r.text  # trailing bytes after the JPEG end marker are ignored by decoders
        r = _post(srv.base, b"\xff" * (4 * 1024 * 1024), "huge.jpg")
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        r = _post(srv.base, b"garbage" * 200_000, "junk.jpg")
        assert r.status_code == 400
    assert list(cwd.iterdir()) == []
    assert list(spool.iterdir()) == [], "spooled uploads were left behind"
    after = _snapshot(package)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}, "the server wrote into the package"
