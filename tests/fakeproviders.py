"""A fake Google Street View Static API + Mapillary Graph API v4 on 127.0.0.1, with injectable faults.

It follows the providers' documented request and response formats:

* ``GET /maps/api/streetview/metadata?location=LAT,LNG&radius=M&source=outdoor&key=K`` ->
  ``{"status": "OK", "pano_id", "location": {"lat", "lng"}, "date": "YYYY-MM", "copyright": "© Google"}``
  or ``{"status": "ZERO_RESULTS"}``; a wrong key gives ``REQUEST_DENIED`` with an ``error_message``.
* ``GET /maps/api/streetview?pano=ID&size=WxH&heading=H&fov=F&pitch=P&key=K[&return_error_code=true]`` -> JPEG
  (403 for a wrong key, 404 for an unknown pano).
* ``GET /mapillary/images?fields=...&bbox=minLon,minLat,maxLon,maxLat&limit=N`` with ``Authorization: OAuth TOKEN``
  (or ``access_token=``) -> ``{"data": [{"id", "geometry": {"type": "Point", "coordinates": [lon, lat]}, ...}]}``;
  a wrong token gives HTTP 401 with a Graph API ``OAuthException`` body. ``GET /mapillary/<id>?fields=...``
  -> one image's fields. Thumbnails are served from ``/thumbs/<id>/<size>.jpg``.

Panoramas sit on a deterministic lattice (every ``lattice_deg``), present where a hash says so
(``hit_pct`` percent; ``user_pct`` of those are user uploads). JPEGs are real photos (../shared) or
Pillow-made images, each made unique by a JPEG comment naming the pano and heading.

Faults are queued per endpoint (``metadata``, ``image``, ``graph``, ``thumb`` or ``any``):
``fs.fault("image", "429", count=3)``; kinds: ``429``, ``500``, ``503``, ``slow`` (``delay`` seconds),
``truncate`` (Content-Length larger than the body), ``corrupt`` (invalid JPEG, full length),
``zero`` (ZERO_RESULTS), ``over_query_limit``, ``deny``. ``fs.reset(fail_pct=97)`` makes that share of
all requests (chosen by a hash of the request's number, so runs repeat) answer 500.

``fs.hold("image", after=N)`` lets N requests to an endpoint through and then holds every further one
(no answer) until ``fs.release()``; ``fs.held`` is set when the first is held, so a test can act at
a point it controls (e.g. kill a client while it waits) instead of after a sleep.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

GOOGLE_KEY = "AIzaSyFAKE-test-key-0123456789abcdefXYZ"
MAPILLARY_TOKEN = "MLY|4242424242|fake0123456789abcdef0123456789ab"


def load_source_jpegs(shared: Path | None, n: int = 12) -> list[bytes]:
    """``n`` real JPEGs from ../shared/data/streetview-croatia, or Pillow-made JPEGs when it is absent."""
    if shared is not None:
        folder = shared / "data" / "streetview-croatia" / "images"
        if folder.is_dir():
            files = sorted(folder.rglob("*.jpg"))[:n]
            if len(files) == n:
                return [f.read_bytes() for f in files]
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        im = Image.new("RGB", (640, 640), (40 + 17 * i % 200, 90 + 31 * i % 150, 160 - 7 * i % 120))
        d = ImageDraw.Draw(im)
        for k in range(12):
            d.rectangle([k * 50, 300 - 10 * ((i + k) % 7), k * 50 + 40, 640], fill=((i * 40 + k * 20) % 255, 120, 80))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def with_comment(jpeg: bytes, text: str) -> bytes:
    """Insert a JPEG COM segment after SOI, making the bytes unique without touching the image data."""
    payload = text.encode("utf-8")[:60000]
    seg = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + seg + jpeg[2:]


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass
class Req:
    t: float
    endpoint: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: str
    status: int = 0
    fault: str | None = None


@dataclass
class _Fault:
    endpoint: str
    kind: str
    count: int
    delay: float = 0.0


@dataclass
class FakeState:
    images: list[bytes]
    key: str = GOOGLE_KEY
    token: str = MAPILLARY_TOKEN
    hit_pct: int = 70
    user_pct: int = 10
    lattice_deg: float = 0.0004
    mly_pano_pct: int = 20
    fail_pct: int = 0  # this share of all requests (picked by a hash of the request's number) answers 500
    faults: list[_Fault] = field(default_factory=list)
    log: list[Req] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold_endpoint: str | None = None
    hold_after: int = 0
    hold_seen: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class FakeProviders:
    """The server; use as a context manager. ``.streetview_url``, ``.mapillary_url``, ``.log``, ``.fault()``."""

    def __init__(self, images: list[bytes], **opts: Any) -> None:
        self.state = FakeState(images=images, **opts)
        state = self.state

        class Handler(_Handler):
            st = state

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.streetview_url = f"{self.url}/maps/api/streetview"
        self.mapillary_url = f"{self.url}/mapillary"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeProviders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def log(self) -> list[Req]:
        return self.state.log

    def requests(self, endpoint: str | None = None) -> list[Req]:
        with self.state.lock:
            return [r for r in self.state.log if endpoint is None or r.endpoint == endpoint]

    def fault(self, endpoint: str, kind: str, count: int = 1, *, delay: float = 0.0) -> None:
        with self.state.lock:
            self.state.faults.append(_Fault(endpoint, kind, count, delay))

    def hold(self, endpoint: str, *, after: int) -> None:
        """Answer ``after`` more requests to ``endpoint``, then hold each further one until :meth:`release`."""
        with self.state.lock:
            self.state.hold_endpoint, self.state.hold_after, self.state.hold_seen = endpoint, after, 0
            self.state.held.clear()
            self.state.released.clear()

    @property
    def held(self) -> threading.Event:
        """Set when the first request is held (see :meth:`hold`)."""
        return self.state.held

    def release(self) -> None:
        """Stop holding: held requests are closed unanswered, later ones are served."""
        with self.state.lock:
            self.state.hold_endpoint = None
        self.state.released.set()

    def reset(self, **opts: Any) -> None:
        self.release()
        with self.state.lock:
            self.state.faults.clear()
            self.state.log.clear()
            for k, v in {
                "hit_pct": 70,
                "user_pct": 10,
                "fail_pct": 0,
                "key": GOOGLE_KEY,
                "token": MAPILLARY_TOKEN,
                **opts,
            }.items():
                setattr(self.state, k, v)

    # -- the synthetic world ------------------------------------------------------------------------
    def pano_near(self, lat: float, lon: float, radius_m: float) -> dict[str, Any] | None:
        return _pano_near(self.state, lat, lon, radius_m)


def _node(st: FakeState, lat: float, lon: float) -> tuple[int, int]:
    return round(lat / st.lattice_deg), round(lon / st.lattice_deg)


def _pano_near(st: FakeState, lat: float, lon: float, radius_m: float) -> dict[str, Any] | None:
    i, j = _node(st, lat, lon)
    nlat, nlon = i * st.lattice_deg, j * st.lattice_deg
    d = _dist_m(lat, lon, nlat, nlon)
    roll = _h("pano", i, j) % 100
    if d > radius_m or roll >= st.hit_pct:
        return None
    user = roll < st.user_pct
    pano = hashlib.sha256(f"pano|{i}|{j}".encode()).hexdigest()[:22]
    pano = "CAoS" + pano if not user else "AF1Qip" + pano
    return {
        "pano_id": pano,
        "lat": nlat,
        "lng": nlon,
        "date": f"{2010 + _h('y', i, j) % 14}-{1 + _h('m', i, j) % 12:02d}",
        "copyright": "© Some Person" if user else "© Google",
    }


def _dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371000.0 * math.asin(min(1.0, math.sqrt(a)))


class _Handler(BaseHTTPRequestHandler):
    st: FakeState
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:  # silence stderr
        pass

    # -- plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, req: Req, *, declared: int | None = None) -> None:
        req.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        if declared is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, obj: Any, req: Req) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=UTF-8", req)

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self.st.lock:
            for f in self.st.faults:
                if f.count > 0 and f.endpoint in (endpoint, "any"):
                    f.count -= 1
                    return f
        return None

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/maps/api/streetview/metadata":
            endpoint = "metadata"
        elif path == "/maps/api/streetview":
            endpoint = "image"
        elif path.startswith("/mapillary/"):
            endpoint = "graph"
        elif path.startswith("/thumbs/"):
            endpoint = "thumb"
        else:
            endpoint = "other"
        req = Req(time.monotonic(), endpoint, path, q, dict(self.headers.items()), self.requestline)
        with self.st.lock:
            self.st.log.append(req)
            hold = self.st.hold_endpoint == endpoint and self.st.hold_seen >= self.st.hold_after
            self.st.hold_seen += self.st.hold_endpoint == endpoint
        if hold:
            req.fault = "hold"
            self.st.held.set()
            self.st.released.wait()
            self.close_connection = True
            return None
        with self.st.lock:
            flaky = self.st.fail_pct and _h("fail", len(self.st.log)) % 100 < self.st.fail_pct
        if flaky:
            req.fault = "500"
            return self._json(500, {"error_message": "flaky provider"}, req)
        f = self._take_fault(endpoint)
        if f is not None:
            req.fault = f.kind
            if f.kind == "slow":
                time.sleep(f.delay)
            elif f.kind in ("429", "500", "503"):
                return self._json(int(f.kind), {"error_message": f"fault {f.kind}"}, req)
            elif f.kind == "zero" and endpoint == "metadata":
                return self._json(200, {"status": "ZERO_RESULTS"}, req)
            elif f.kind == "over_query_limit" and endpoint == "metadata":
                return self._json(
                    200, {"status": "OVER_QUERY_LIMIT", "error_message": "You have exceeded your rate-limit."}, req
                )
            elif f.kind == "deny":
                return self._deny(endpoint, req)
        if endpoint == "metadata":
            return self._metadata(q, req)
        if endpoint == "image":
            return self._image(q, req, f)
        if endpoint == "graph":
            return self._graph(path, q, req)
        if endpoint == "thumb":
            return self._thumb(path, req, f)
        return self._json(404, {"error": "not found"}, req)

    def _deny(self, endpoint: str, req: Req) -> None:
        if endpoint == "metadata":
            return self._json(
                200, {"status": "REQUEST_DENIED", "error_message": "The provided API key is invalid."}, req
            )
        if endpoint == "graph":
            return self._json(
                401,
                {
                    "error": {
                        "message": "Invalid OAuth access token - Cannot parse access token",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
                req,
            )
        return self._send(403, b"The provided API key is invalid.", "text/plain", req)

    def _jpeg(self, seed_text: str, req: Req, f: _Fault | None) -> None:
        base = self.st.images[_h(seed_text) % len(self.st.images)]
        body = with_comment(base, seed_text)
        if f is not None and f.kind == "truncate":
            return self._send(200, body[: len(body) // 2], "image/jpeg", req, declared=len(body))
        if f is not None and f.kind == "corrupt":
            body = body[: len(body) // 2] + b"\x00" * (len(body) - len(body) // 2)
        return self._send(200, body, "image/jpeg", req)

    # -- Street View -------------------------------------------------------------------------------
    def _metadata(self, q: dict[str, str], req: Req) -> None:
        if q.get("key") != self.st.key:
            return self._deny("metadata", req)
        try:
            lat, lon = (float(v) for v in q["location"].split(","))
            radius = float(q.get("radius", 50))
        except (KeyError, ValueError):
            return self._json(200, {"status": "INVALID_REQUEST"}, req)
        p = _pano_near(self.st, lat, lon, radius)
        if p is None:
            return self._json(200, {"status": "ZERO_RESULTS"}, req)
        return self._json(
            200,
            {
                "copyright": p["copyright"],
                "date": p["date"],
                "location": {"lat": p["lat"], "lng": p["lng"]},
                "pano_id": p["pano_id"],
                "status": "OK",
            },
            req,
        )

    def _image(self, q: dict[str, str], req: Req, f: _Fault | None) -> None:
        if q.get("key") != self.st.key:
            return self._deny("image", req)
        pano, size = q.get("pano"), q.get("size", "")
        if not pano or "x" not in size:
            return self._send(400, b"Invalid request. Missing the 'size' or 'pano' parameter.", "text/plain", req)
        return self._jpeg(f"{pano}|{q.get('heading')}|{q.get('fov')}|{q.get('pitch')}|{size}", req, f)

    # -- Mapillary ---------------------------------------------------------------------------------
    def _token_ok(self, q: dict[str, str]) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[6:] if auth.startswith("OAuth ") else q.get("access_token", "")
        return token == self.st.token

    def _mly_image(self, i: int, j: int, fields: list[str]) -> dict[str, Any] | None:
        if _h("mly", i, j) % 100 >= self.st.hit_pct:
            return None
        img_id = str(10**14 + _h("mlyid", i, j) % 10**14)
        lat, lon = i * self.st.lattice_deg, j * self.st.lattice_deg
        full = {
            "id": img_id,
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "captured_at": 1_400_000_000_000 + _h("t", i, j) % 300_000_000_000,
            "compass_angle": float(_h("c", i, j) % 36000) / 100.0,
            "creator": {"username": f"mapper{_h('u', i, j) % 1000}", "id": str(_h("uid", i, j) % 10**9)},
            "is_pano": _h("p", i, j) % 100 < self.st.mly_pano_pct,
        }
        for size in ("256", "1024", "2048", "original"):
            full[f"thumb_{size}_url"] = (
                f"http://127.0.0.1:{self.server.server_address[1]}/thumbs/{img_id}/{size}.jpg"
                f"?stp=fake&_nc_oc=signed{_h('sig', img_id) % 10**6}"
            )
        return {k: v for k, v in full.items() if k in fields or k == "id"}

    def _graph(self, path: str, q: dict[str, str], req: Req) -> None:
        if not self._token_ok(q):
            return self._deny("graph", req)
        fields = [f.strip() for f in q.get("fields", "id").split(",")]
        if path == "/mapillary/images":
            try:
                w, s, e, n = (float(v) for v in q["bbox"].split(","))
            except (KeyError, ValueError):
                return self._json(
                    400, {"error": {"message": "Invalid bbox", "type": "GraphMethodException", "code": 100}}, req
                )
            if (e - w) * (n - s) > 0.01:
                return self._json(
                    400, {"error": {"message": "Bbox too large", "type": "GraphMethodException", "code": 100}}, req
                )
            ld = self.st.lattice_deg
            data = []
            for i in range(math.ceil(s / ld), math.floor(n / ld) + 1):
                for j in range(math.ceil(w / ld), math.floor(e / ld) + 1):
                    img = self._mly_image(i, j, fields)
                    if img is not None:
                        data.append(img)
            return self._json(200, {"data": data[: int(q.get("limit", 2000))]}, req)
        img_id = path.rsplit("/", 1)[-1]
        out: dict[str, Any] = {"id": img_id}
        for size in ("256", "1024", "2048", "original"):
            if f"thumb_{size}_url" in fields:
                out[f"thumb_{size}_url"] = (
                    f"http://127.0.0.1:{self.server.server_address[1]}/thumbs/{img_id}/{size}.jpg?stp=fresh"
                )
        return self._json(200, out, req)

    def _thumb(self, path: str, req: Req, f: _Fault | None) -> None:
        _, _, img_id, name = path.split("/", 3)
        if f is not None and f.kind == "expired":
            return self._send(403, b"URL signature expired", "text/plain", req)
        return self._jpeg(f"mly|{img_id}|{name}", req, f)
