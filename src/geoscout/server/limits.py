"""Pure ASGI middlewares that guard the server before any endpoint code runs.

:class:`BodyLimit` enforces the request-body limits *while the body arrives*: a declared
``Content-Length`` over the limit is answered 413 before a byte of the body is read; a
chunked (or lying) body is counted as it streams and answered 413 as soon as it passes the
limit, without reading the rest. It also bounds the number of multipart parts and the bytes
of all bodies in flight at once (memory plus the temporary files multipart parsing spills
to), answering 503 when the server is full. :class:`SecurityHeaders` adds the usual
defensive response headers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyLimit", "BodyLimitExceeded", "SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class BodyLimitExceeded(HTTPException):
    """Raised from ``receive`` when a body passes a limit. An ``HTTPException``, so body parsing passes
    it through untouched; the app's handler (or else the middleware) answers it as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status_code=status, detail=message, headers={"Connection": "close", **_retry(status)})
        self.status, self.code, self.message = status, code, message


def _retry(status: int) -> dict[str, str]:
    return {"Retry-After": "1"} if status == 503 else {}


async def _send_error(send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is never read: the connection cannot be reused
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Budget:
    """Bytes of request bodies held by requests in progress (single event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


class BodyLimit:
    """Refuse request bodies over ``max_body_bytes`` (413), with more than ``max_parts`` multipart
    parts (413), or that would push the bodies in flight past ``max_inflight_bytes`` (503)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_parts: int, max_inflight_bytes: int) -> None:
        self.app = app
        self.max_body_bytes, self.max_parts = max_body_bytes, max_parts
        self.budget = _Budget(max_inflight_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > self.max_body_bytes:
            await _send_error(
                send,
                413,
                "too_large",
                f"request body of {declared} bytes exceeds the {self.max_body_bytes}-byte limit",
                [],
            )
            return
        reserved = declared or 0
        if not self.budget.take(reserved):
            await _send_error(send, 503, "busy", "the server is receiving too many uploads; retry shortly", _RETRY)
            return
        counter = _PartCounter(headers.get(b"content-type", b""))
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received, reserved
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                raise BodyLimitExceeded(
                    413, "too_large", f"request body passed the {self.max_body_bytes}-byte limit while arriving"
                )
            if received > reserved:  # chunked or under-declared body: reserve as it arrives
                if not self.budget.take(received - reserved):
                    raise BodyLimitExceeded(503, "busy", "the server is receiving too many uploads; retry shortly")
                reserved = received
            if counter.feed(chunk) > self.max_parts:
                raise BodyLimitExceeded(
                    413, "too_many_parts", f"the multipart body has more than {self.max_parts} parts"
                )
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyLimitExceeded as exc:
            if started:
                raise
            await _send_error(send, exc.status, exc.code, exc.message, _RETRY if exc.status == 503 else [])
        finally:
            self.budget.give(reserved)


_RETRY = [(b"retry-after", b"1")]


def _content_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if n >= 0 else None


class _PartCounter:
    """Counts multipart parts in a streamed body by their delimiter (``CRLF--boundary``)."""

    def __init__(self, content_type: bytes) -> None:
        self.delimiter: bytes | None = None
        ctype = content_type.decode("latin-1")
        if ctype.split(";")[0].strip().lower().startswith("multipart/"):
            for param in ctype.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.strip().lower() == "boundary" and value:
                    self.delimiter = b"\r\n--" + value.strip().strip('"').encode("latin-1")
        self.tail = b"\r\n"  # the first delimiter starts the body without a CRLF before it
        self.seen = 0

    def feed(self, chunk: bytes) -> int:
        """Parts opened so far (delimiters seen minus the closing one, counted generously)."""
        if self.delimiter is None or not chunk:
            return max(self.seen - 1, 0)
        data = self.tail + chunk
        self.seen += data.count(self.delimiter)
        self.tail = data[-(len(self.delimiter) - 1) :]
        return max(self.seen - 1, 0)


# The web page and the API docs load scripts, styles and images from this server only.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """Add nosniff, no framing, no referrer and a Content-Security-Policy to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                csp = PAGE_CSP if ctype.startswith(b"text/html") else API_CSP
                for key, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"content-security-policy", csp.encode()),
                ):
                    if key not in have:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)
