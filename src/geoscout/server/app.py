"""REST API + web page over a :class:`~geoscout.locator.Locator`.

One router per resource (``/v1/locate``, ``/v1/models``, ``/v1/health``, ``/v1/world``);
the model loads once in the lifespan; locate calls run in a bounded thread pool with a
timeout; every error is JSON ``{"error": {"code", "message"}}`` with the right status.
Request bodies are bounded while they arrive (:mod:`.limits`: bytes, parts, bytes in flight);
uploads are read into memory within the size limit and never written to disk by us. ``/docs``
serves Swagger UI from a local copy (package ``swagger-ui-bundle-v2``, Swagger UI 5: reads OpenAPI 3.1): no CDN, works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GeoscoutError, InvalidInput
from .errors import ApiError
from .limits import BodyLimit, BodyLimitExceeded, SecurityHeaders

__all__ = ["ServerSettings", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
ALLOWED_TYPES = {
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/gif",
    "application/octet-stream",
}


@dataclass
class ServerSettings:
    """Limits and model choice of one server instance."""

    model: str = "geoscout-lite"
    max_upload_bytes: int = 20 * 1024 * 1024  # per file
    max_files: int = 8
    max_pixels: int = 40_000_000
    max_top_k: int = 50
    request_timeout_s: float = 60.0
    concurrency: int = 2  # locate calls running at once; others wait
    max_inflight_bytes: int = 512 * 1024 * 1024  # request bodies held at once (memory + spooled temp files)
    weights: str | None = None
    game: str | None = None  # dataset of the play mode (``serve --game DATASET``); None: no game
    game_rounds: int = 5
    max_games: int = 1000  # games kept in memory; the least recently used go first
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (the backbone's)
    precision: str = "auto"  # bf16/fp16 autocast on a GPU, fp32 on the CPU
    cues: str = "all"  # evidence read besides the pixels: all, text, metadata or none (see geoscout.cues)
    runtime: str = "auto"


def _error(status: int, code: str, message: str, failures: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if failures is not None:
        body["failures"] = failures
    return JSONResponse(status_code=status, content={"error": body})


def create_app(settings: ServerSettings | None = None, *, locator: Any = None) -> FastAPI:
    """Build the app. Pass ``locator`` to serve an already loaded model (tests, embedding)."""
    settings = settings or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if locator is not None:
            app.state.locator = locator
        else:
            from ..locator import load_model

            app.state.locator = await asyncio.to_thread(
                functools.partial(
                    load_model,
                    settings.model,
                    weights=settings.weights,
                    device=settings.device,
                    precision=settings.precision,
                    cues=settings.cues,
                    runtime=settings.runtime,
                )
            )
        app.state.semaphore = asyncio.Semaphore(settings.concurrency)
        app.state.started = time.time()
        app.state.served = 0
        yield

    app = FastAPI(
        title="geoscout",
        version=_version(),
        lifespan=lifespan,
        description="Tell where on Earth a photo was taken.",
        docs_url=None,  # FastAPI's own pages load Swagger UI / ReDoc from a CDN; ours are local
        redoc_url=None,
    )
    app.state.settings = settings
    body_limit = max_body_bytes(settings)
    app.add_middleware(
        BodyLimit,
        max_body_bytes=body_limit,
        max_parts=settings.max_files + _FORM_FIELDS,
        max_inflight_bytes=max(settings.max_inflight_bytes, body_limit),
    )
    app.add_middleware(SecurityHeaders)  # outermost: the middleware's own 413/503 answers get the headers too

    _add_error_handlers(app)
    app.include_router(_locate_router(settings))
    app.include_router(_meta_router(settings))
    if settings.game is not None:
        from .game import game_router

        app.include_router(game_router(settings, STATIC_DIR))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    _mount_docs(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": {"code", "message"}}`` with its status: ours, the body limit's,
    Starlette's own 404 / 405, request validation, and anything unexpected (500, details only in the log)."""

    @app.exception_handler(BodyLimitExceeded)
    async def _body_limit(_: Request, exc: BodyLimitExceeded) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content={"error": {"code": exc.code, "message": exc.message}}, headers=exc.headers
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.failures)

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 / 405, not only ours
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such page or endpoint; the API is under /v1 (see /docs)"
        resp = _error(exc.status_code, codes.get(exc.status_code, "http_error"), detail)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(Exception)
    async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"the server failed on this request ({type(exc).__name__}); see its log")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")


_FORM_FIELDS = 4  # non-file multipart fields a locate request may carry (top_k, panorama, and slack)
_MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries


def max_body_bytes(settings: ServerSettings) -> int:
    """The largest request body the server reads: every file at its limit plus the multipart framing."""
    return settings.max_upload_bytes * settings.max_files + _MULTIPART_OVERHEAD


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>geoscout API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


def _mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` from the local ``swagger-ui-bundle-v2`` files (no CDN)."""
    from fastapi.responses import HTMLResponse

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # the server extra installs it; without it, say where the schema is
        page = '<!doctype html><title>geoscout API</title><p>The API schema is at <a href="/openapi.json">/openapi.json</a> (install <code>swagger-ui-bundle-v2</code> for an interactive page).</p>'
    else:
        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
        page = _DOCS_PAGE

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)


def _version() -> str:
    from .. import __version__

    return __version__


def _locate_router(settings: ServerSettings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["locate"])

    @router.post("/locate", summary="Locate one or more photos, or the views of one panorama")
    async def locate(
        request: Request,
        files: list[UploadFile] = File(..., description="One or more photos (JPEG, PNG, WebP...)."),
        top_k: int = Form(5, ge=1, description="Candidates per photo."),
        panorama: bool = Form(False, description="All files are views of one place: fuse them."),
    ) -> dict[str, Any]:
        if not files:
            raise ApiError(400, "no_files", "send at least one photo in the 'files' field")
        if len(files) > settings.max_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; at most {settings.max_files} per request")
        if top_k > settings.max_top_k:
            raise ApiError(422, "invalid_request", f"top_k must be <= {settings.max_top_k}, got {top_k}")
        blobs: list[bytes] = []
        names: list[str] = []
        for f in files:
            ctype = (f.content_type or "application/octet-stream").split(";")[0].strip().lower()
            if ctype not in ALLOWED_TYPES:
                raise ApiError(415, "unsupported_type", f"{f.filename}: content type {ctype!r} is not an image type")
            data = await f.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise ApiError(413, "too_large", f"{f.filename}: larger than {settings.max_upload_bytes} bytes")
            blobs.append(data)
            names.append(f.filename or f"upload-{len(names)}")
        state = request.app.state
        deadline = time.monotonic() + settings.request_timeout_s
        try:
            # The timeout covers the wait for a slot and the locate call. A thread cannot be
            # cancelled, so a timed-out call keeps its slot until it really ends: at most
            # ``concurrency`` locate calls ever run at once, even when clients give up.
            await asyncio.wait_for(state.semaphore.acquire(), timeout=max(deadline - time.monotonic(), 0.001))
            job = asyncio.ensure_future(
                asyncio.to_thread(_run_locate, state.locator, blobs, names, top_k, panorama, settings.max_pixels)
            )
            job.add_done_callback(functools.partial(_release_slot, state.semaphore))
            preds = await asyncio.wait_for(asyncio.shield(job), timeout=max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise ApiError(504, "timeout", f"locating took longer than {settings.request_timeout_s:g} s") from None
        except InvalidInput as exc:
            raise ApiError(400, "invalid_input", str(exc)) from None
        except GeoscoutError as exc:
            raise ApiError(500, "model_error", str(exc)) from None
        state.served += len(blobs)
        failures = [p.error for p in preds if p.error is not None]
        if len(failures) == len(preds):
            raise ApiError(
                400,
                "unreadable_images",
                "; ".join(f.message for f in failures),
                failures=[{"image_id": f.image_id, "kind": f.kind, "message": f.message} for f in failures],
            )
        return {"model": state.locator.name, "predictions": [p.to_dict() for p in preds]}

    return router


def _release_slot(semaphore: asyncio.Semaphore, job: asyncio.Future[Any]) -> None:
    semaphore.release()
    if not job.cancelled():
        job.exception()  # retrieved: a timed-out job's error was already answered as 504


def _run_locate(
    locator: Any, blobs: list[bytes], names: list[str], top_k: int, panorama: bool, max_pixels: int
) -> list[Any]:
    """Locate uploads. Headers are checked first (size, pixel count) and the bytes themselves go to the
    locator, so served photos are decoded exactly as the training photos were (JPEG draft scaling)."""
    from ..errors import PhotoFailure, failure_of
    from ..imageio import probe_image
    from ..types import Prediction

    errors: dict[int, PhotoFailure] = {}
    for i, (b, n) in enumerate(zip(blobs, names)):
        try:
            probe_image(b, name=n, max_pixels=max_pixels)
        except InvalidInput as exc:
            errors[i] = failure_of(exc, source=n, image_id=n)
    good = [i for i in range(len(blobs)) if i not in errors]
    if not good:
        return [Prediction(image_id=names[i], error=errors[i]) for i in range(len(names))]
    # the locator names a failed upload by its id (the file name), so errors read "cut.jpg: ..."
    preds = locator.locate([blobs[i] for i in good], top_k=top_k, panorama=panorama, ids=[names[i] for i in good])
    if panorama:
        if errors:
            preds[0].source = (preds[0].source or "") + f" skipped: {'; '.join(f.message for f in errors.values())}"
        return preds
    by_index = dict(zip(good, preds))
    return [by_index.get(i) or Prediction(image_id=names[i], error=errors[i]) for i in range(len(names))]


def _meta_router(settings: ServerSettings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["meta"])

    @router.get("/health", summary="Liveness and model status")
    async def health(request: Request) -> dict[str, Any]:
        st = request.app.state
        return {
            "status": "ok",
            "model": getattr(st.locator, "name", None),
            "uptime_s": round(time.time() - st.started, 1),
            "images_served": st.served,
            "version": _version(),
        }

    @router.get("/models", summary="The loaded model and the ones this server knows")
    async def models(request: Request) -> dict[str, Any]:
        from ..locator import list_models

        loc = request.app.state.locator
        return {
            "loaded": {"name": loc.name, "card": getattr(loc, "card", "")},
            "available": list_models(),
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_files": settings.max_files,
                "max_pixels": settings.max_pixels,
                "max_top_k": settings.max_top_k,
            },
        }

    @router.get("/world", summary="Simplified country outlines (GeoJSON) for drawing maps offline")
    async def world() -> JSONResponse:
        return JSONResponse(_world_geojson(), headers={"Cache-Control": "public, max-age=86400"})

    return router


@functools.lru_cache(maxsize=1)
def _world_geojson() -> dict[str, Any]:
    from shapely.geometry import mapping

    from ..places import world_outlines

    feats = []
    for iso, geom in world_outlines(0.1):
        m = mapping(geom)
        feats.append({"type": "Feature", "properties": {"iso": iso}, "geometry": _round_coords(m)})
    return {"type": "FeatureCollection", "features": feats}


def _round_coords(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _round_coords(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(x), 2) for x in obj]
        return [_round_coords(x) for x in obj]
    return obj
