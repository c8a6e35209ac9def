"""Request-body limits enforced while the body arrives, security headers and the offline /docs page,
over real HTTP: uvicorn in a thread on 127.0.0.1, raw sockets for huge, chunked and many-part bodies."""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import Any

import httpx
import pytest

from geoscout.server import ServerSettings, create_app
from geoscout.server.app import max_body_bytes

pytest.importorskip("uvicorn")


class Counting:
    """Outermost ASGI wrapper: counts the body bytes the server really took off the connection."""

    def __init__(self, app: Any) -> None:
        self.app, self.delivered = app, 0
        self.first_bytes = threading.Event()
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            msg = await receive()
            if msg["type"] == "http.request" and msg.get("body"):
                self.delivered += len(msg["body"])
                self.first_bytes.set()
            return msg

        await self.app(scope, counted, send)


SETTINGS: dict[str, Any] = {"max_upload_bytes": 256 * 1024, "max_files": 4}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(65536)
        assert part, f"connection closed before a response: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        part = s.recv(65536)
        if not part:
            break
        body += part
    return status, headers, body


def _multipart_head(port: int, boundary: str, extra: str) -> bytes:
    return (
        f"POST /v1/locate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{extra}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def live(tiny_locator, live_server):
    with live_server(Counting(create_app(ServerSettings(**SETTINGS), locator=tiny_locator))) as srv:
        yield srv


def test_declared_oversized_body_is_refused_before_any_byte_is_read(live):
    before = live.app.delivered
    with _connect(live.port) as s:
        s.sendall(_multipart_head(live.port, "xyz", f"Content-Length: {200 * 1024 * 1024}\r\n"))
        status, headers, body = _read_response(s)  # answered with no body byte sent at all
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert headers["connection"] == "close" and headers["x-content-type-options"] == "nosniff"
    assert live.app.delivered == before


def test_chunked_body_is_cut_off_at_the_limit_without_reading_the_rest(live):
    """A 200 MB chunked upload: the server answers 413 once the limit passes, and takes no more bytes."""
    limit = max_body_bytes(ServerSettings(**SETTINGS))
    before = live.app.delivered
    chunk = b"\xff" * 65536
    preamble = b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="huge.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    sent, total = 0, 200 * 1024 * 1024
    with _connect(live.port) as s:
        s.sendall(_multipart_head(live.port, "b0undary", "Transfer-Encoding: chunked\r\n"))
        s.settimeout(5)  # once the server stops reading, the kernel buffers fill and sendall blocks: stop there
        try:
            s.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
            while sent < total:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(30)
        status, _, body = _read_response(s)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "too_large"
    assert sent < total / 4, f"the client pushed {sent} bytes: the server kept reading"
    taken = live.app.delivered - before
    # the server stops at the first message past the limit (uvicorn hands over what it has buffered, < 1 MiB)
    assert limit < taken <= limit + 1024 * 1024, (taken, limit)


def test_too_many_parts_is_refused(live):
    boundary = "p4rts"
    parts = (
        b"".join(b'--p4rts\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n3\r\n' for _ in range(100))
        + b"--p4rts--\r\n"
    )
    r = httpx.post(
        live.base + "/v1/locate",
        content=parts,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_parts", r.text


def test_bodies_in_flight_are_bounded(tiny_locator, live_server):
    """While one upload of the full size is arriving, a second one waits for room: 503, not more memory."""
    settings = ServerSettings(**SETTINGS, max_inflight_bytes=1)  # room for exactly one body at the limit
    limit = max_body_bytes(settings)
    with live_server(Counting(create_app(settings, locator=tiny_locator))) as srv, _connect(srv.port) as first:
        first.sendall(_multipart_head(srv.port, "b", f"Content-Length: {limit}\r\n") + b"--b\r\n")
        assert srv.app.first_bytes.wait(30)  # the first request holds its reservation
        r = httpx.post(srv.base + "/v1/locate", files={"files": ("a.jpg", b"\xff\xd8", "image/jpeg")})
        assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
        assert r.headers["retry-after"] == "1"
        first.close()
        # once the first connection ends, its reservation is returned
        for _ in range(200):
            r = httpx.post(srv.base + "/v1/locate", files={"files": ("a.jpg", b"garbage", "image/jpeg")})
            if r.status_code != 503:
                break
            srv.app.first_bytes.wait(0.05)
        assert r.status_code == 400, r.text  # read and judged: not an image


def test_normal_uploads_still_work_and_carry_security_headers(live, small_world_sample):
    photo = small_world_sample[0][0].read_bytes()
    assert len(photo) < SETTINGS["max_upload_bytes"]
    r = httpx.post(live.base + "/v1/locate", files={"files": ("a.jpg", photo, "image/jpeg")}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    page = httpx.get(live.base + "/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"


def test_docs_page_loads_swagger_ui_from_this_server(live):
    pytest.importorskip("swagger_ui_bundle")
    page = httpx.get(live.base + "/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(u.startswith("/") for u in urls), urls  # nothing from a CDN
    for u in urls:
        asset = httpx.get(live.base + u)
        assert asset.status_code == 200 and len(asset.content) > 50, u
    assert "SwaggerUIBundle" in httpx.get(live.base + "/docs-assets/swagger-ui-bundle.js").text
    assert httpx.get(live.base + "/redoc").status_code == 404  # FastAPI's CDN page is off
