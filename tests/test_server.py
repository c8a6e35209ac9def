"""The REST API over a real model, via FastAPI's TestClient (real HTTP semantics, in process)."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from geoscout.server import ServerSettings, create_app


@pytest.fixture(scope="module")
def client(tiny_locator):
    settings = ServerSettings(max_upload_bytes=2 * 1024 * 1024, max_files=4, max_pixels=5_000_000)
    with TestClient(create_app(settings, locator=tiny_locator)) as c:
        yield c


@pytest.fixture(scope="module")
def photo_bytes(small_world_sample):
    return small_world_sample[0][0].read_bytes()


def test_health_models_world_and_page(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny-knn"
    m = client.get("/v1/models").json()
    assert m["loaded"]["name"] == "tiny-knn" and "geoscout-lite" in m["available"]
    w = client.get("/v1/world").json()
    assert w["type"] == "FeatureCollection" and len(w["features"]) > 150
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/v1/locate"]


def test_locate_one_and_many(client, photo_bytes, small_world_sample):
    r = client.post("/v1/locate", files={"files": ("a.jpg", photo_bytes, "image/jpeg")}, data={"top_k": "3"})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 1 and len(preds[0]["candidates"]) == 3 and preds[0]["image_id"] == "a.jpg"
    two = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in small_world_sample[0][1:3]]
    r = client.post("/v1/locate", files=two)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    r = client.post("/v1/locate", files=two, data={"panorama": "true"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_one_bad_file_among_good_ones(client, photo_bytes):
    files = [("files", ("good.jpg", photo_bytes, "image/jpeg")), ("files", ("bad.jpg", b"garbage", "image/jpeg"))]
    r = client.post("/v1/locate", files=files)
    assert r.status_code == 200
    good, bad = r.json()["predictions"]
    assert good["candidates"] and not bad["candidates"] and "bad.jpg" in bad["error"]


def test_truncated_upload_is_named_and_served_like_a_local_file(client, photo_bytes, small_world_sample, tiny_locator):
    """The header passes the pixel check, the pixels do not decode: the error names the upload, not '<N bytes>'.
    A good upload is decoded like the same file on disk (JPEG draft scaling), so the answers agree."""
    cut = photo_bytes[: len(photo_bytes) // 3]
    files = [("files", ("whole.jpg", photo_bytes, "image/jpeg")), ("files", ("cut.jpg", cut, "image/jpeg"))]
    r = client.post("/v1/locate", files=files, data={"top_k": "3"})
    assert r.status_code == 200, r.text
    whole, broken = r.json()["predictions"]
    assert broken["error"].startswith("cut.jpg: ") and "bytes>" not in broken["error"]
    local = tiny_locator.locate([small_world_sample[0][0]], top_k=3)[0]
    assert [c["lat"] for c in whole["candidates"]] == pytest.approx([c.lat for c in local.candidates], abs=1e-6)


@pytest.mark.parametrize(
    "files,data,status,code",
    [
        ([("files", ("x.txt", b"hello", "text/plain"))], {}, 415, "unsupported_type"),
        ([("files", ("x.jpg", b"not an image", "image/jpeg"))], {}, 400, "unreadable_images"),
        ([("files", ("x.jpg", b"\xff" * (2 * 1024 * 1024 + 10), "image/jpeg"))], {}, 413, "too_large"),
        ([("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(5)], {}, 413, "too_many_files"),
        (None, {}, 422, "invalid_request"),
    ],
)
def test_errors_are_json_with_the_right_status(client, files, data, status, code):
    r = client.post("/v1/locate", files=files, data=data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_top_k_limits_and_pixel_bomb(client, photo_bytes):
    r = client.post("/v1/locate", files={"files": ("a.jpg", photo_bytes, "image/jpeg")}, data={"top_k": "999"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, format="PNG")  # 6 Mpx > the 5 Mpx limit, tiny file
    r = client.post("/v1/locate", files={"files": ("big.png", big.getvalue(), "image/png")})
    assert r.status_code == 400 and "exceeds the limit" in r.json()["error"]["message"]


def test_unknown_paths_and_methods_answer_in_the_error_shape():
    """The router's own 404 / 405 use the same JSON shape as every other error."""
    from fastapi.testclient import TestClient

    from geoscout.server import ServerSettings, create_app

    client = TestClient(create_app(ServerSettings(), locator=object()))
    r = client.get("/v1/no-such-endpoint")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and "/docs" in r.json()["error"]["message"]
    assert set(r.json()) == {"error"}
    r = client.post("/v1/health")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed" and r.headers["allow"] == "GET"
