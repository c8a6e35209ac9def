"""Polite HTTP: a token-bucket rate limiter, a daily quota hook and retries with backoff.

:class:`PoliteClient` wraps :class:`httpx.Client`. It retries on HTTP 429, 5xx, timeouts,
dropped connections and truncated or corrupt bodies, with exponential backoff and jitter
(``Retry-After`` is honoured), stops for good on 401/403 (:class:`AccessDenied`), and never lets
an API key reach a message: every text it produces goes through the client's redactor.
"""

from __future__ import annotations

import io
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from geoscout.errors import GeoscoutError, InvalidInput, ProviderError

from .keys import Redactor

__all__ = [
    "AccessDenied",
    "PoliteClient",
    "QuotaReached",
    "RequestFailed",
    "Retry",
    "RetryPolicy",
    "TokenBucket",
    "check_jpeg",
    "parse_rate",
]

log = logging.getLogger("geoscout.collect")
T = TypeVar("T")


class AccessDenied(ProviderError):
    """The provider refused the key (REQUEST_DENIED, HTTP 401/403): stop the whole job."""


class RequestFailed(GeoscoutError):
    """One request failed for good (retries exhausted, or a permanent 4xx); the job skips that item."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class QuotaReached(GeoscoutError):
    """The daily request quota is used up: stop now and resume on the next UTC day."""


class Retry(Exception):
    """Raised by a response validator to ask for another attempt (a transient problem)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    """How often and how patiently to retry.

    Attempt ``k`` (0-based) waits ``min(max_delay, base * 2**k) * (1 + jitter * U[0, 1))`` seconds,
    so successive waits grow by at least ``2 / (1 + jitter)``; a ``Retry-After`` header sets a floor.
    ``timeout`` is the per-request timeout in seconds.
    """

    max_retries: int = 6
    base: float = 1.0
    max_delay: float = 120.0
    jitter: float = 0.25
    timeout: float = 30.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        d = min(self.max_delay, self.base * (2.0**attempt)) * (1.0 + self.jitter * rng.random())
        if retry_after is not None:
            d = max(d, min(retry_after, self.max_delay))
        return d


def parse_rate(text: str | float | int) -> float:
    """Requests per second from ``10``, ``"10/s"``, ``"600/min"``, ``"3600/h"``."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*", str(text))
        if not m:
            raise InvalidInput(f"rate {text!r}: expected requests per time, e.g. 10/s, 600/min or 3600/h")
        value = (
            float(m.group(1))
            / {"s": 1, "sec": 1, "second": 1, None: 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[
                m.group(2)
            ]
        )
    if not value > 0:
        raise InvalidInput(f"rate {text!r}: must be more than 0 requests per second")
    return value


class TokenBucket:
    """Token-bucket limiter: at most ``rate`` requests per second on average, bursts up to ``burst``
    (default 1: requests evenly spaced by ``1 / rate`` seconds)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else 1.0)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``, sleeping as long as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= tokens - 1e-9:
                    self._tokens -= tokens
                    return waited
                need = (tokens - self._tokens) / self.rate
            self._sleep(need)
            waited += need


def check_jpeg(data: bytes, what: str = "image") -> None:
    """Raise :class:`Retry` unless ``data`` is a complete, decodable JPEG."""
    from PIL import Image

    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise Retry(f"{what}: not a JPEG ({len(data)} bytes)")
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise Retry(f"{what}: truncated JPEG ({len(data)} bytes, no end marker)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # PIL raises OSError / SyntaxError / ValueError for broken files
        raise Retry(f"{what}: corrupt JPEG ({type(exc).__name__}: {exc})") from None


class PoliteClient:
    """An httpx client with rate limiting, a quota hook, retries and key redaction.

    ``before_request(kind)`` is called before every attempt (including retries) and may raise
    :class:`QuotaReached`; ``kind`` names the request type (``"metadata"``, ``"image"``...).
    """

    def __init__(
        self,
        *,
        rate: float = 10.0,
        retry: RetryPolicy | None = None,
        redactor: Redactor | None = None,
        before_request: Callable[[str], None] | None = None,
        client: httpx.Client | None = None,
        seed: int | None = None,
        user_agent: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from geoscout import __version__

        self.retry = retry or RetryPolicy()
        self.bucket = TokenBucket(rate)
        self.redact = redactor or Redactor()
        self.before_request = before_request
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._own = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(self.retry.timeout),
            follow_redirects=True,
            headers={"User-Agent": user_agent or f"geoscout/{__version__} python-httpx/{httpx.__version__}"},
        )
        self.attempts = 0
        self.retries = 0

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        kind: str = "request",
        what: str = "request",
        validate: Callable[[httpx.Response], T],
        deny_statuses: tuple[int, ...] = (401, 403),
    ) -> T:
        """GET ``url`` until ``validate(response)`` returns (its value is returned).

        ``validate`` sees only 2xx/3xx-free final responses with status < 400 other than 429;
        it may raise :class:`Retry` (try again), :class:`AccessDenied` or :class:`RequestFailed`.
        Statuses in ``deny_statuses`` raise :class:`AccessDenied`; other 4xx raise :class:`RequestFailed`.
        """
        last = "no attempt"
        for attempt in range(self.retry.max_retries + 1):
            if self.before_request is not None:
                self.before_request(kind)
            self.bucket.acquire()
            self.attempts += 1
            retry_after: float | None = None
            try:
                resp = self.client.get(url, params=params, headers=headers)
                status = resp.status_code
                if status in deny_statuses:
                    raise AccessDenied(
                        self.redact(
                            f"{what}: the provider refused access (HTTP {status}{_error_text(resp)}). "
                            "Check that the API key/token is valid, the API is enabled for it and billing is set up."
                        )
                    )
                if status == 429 or status >= 500:
                    retry_after = _retry_after(resp)
                    raise Retry(f"HTTP {status}", retry_after)
                if status >= 400:
                    raise RequestFailed(self.redact(f"{what}: HTTP {status}{_error_text(resp)}"), status=status)
                return validate(resp)
            except Retry as exc:
                last = exc.reason
                retry_after = exc.retry_after if exc.retry_after is not None else retry_after
            except httpx.TimeoutException as exc:
                last = f"timeout ({type(exc).__name__})"
            except (httpx.TransportError, httpx.DecodingError) as exc:  # dropped/truncated connections, resets
                if isinstance(exc, httpx.UnsupportedProtocol):
                    raise ProviderError(self.redact(f"{what}: {exc}")) from None
                last = f"{type(exc).__name__}: {self.redact(exc)}"
            except httpx.HTTPError as exc:  # anything else httpx raises: never let its URL (with the key) escape
                raise ProviderError(self.redact(f"{what}: {type(exc).__name__}: {exc}")) from None
            if attempt == self.retry.max_retries:
                break
            wait = self.retry.delay(attempt, self._rng, retry_after)
            self.retries += 1
            log.info(self.redact(f"{what}: {last}; retry {attempt + 1}/{self.retry.max_retries} in {wait:.2f} s"))
            self._sleep(wait)
        raise RequestFailed(self.redact(f"{what}: gave up after {self.retry.max_retries + 1} attempts (last: {last})"))


def _retry_after(resp: httpx.Response) -> float | None:
    v = resp.headers.get("Retry-After")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


def _error_text(resp: httpx.Response) -> str:
    """A short provider error message from a JSON error body (Google ``error_message``, Graph API ``error.message``)."""
    try:
        body = resp.json()
    except Exception:
        return ""
    msg = None
    if isinstance(body, dict):
        msg = body.get("error_message")
        err = body.get("error")
        if msg is None and isinstance(err, dict):
            msg = err.get("message")
        elif msg is None and isinstance(err, str):
            msg = err
    return f": {str(msg)[:200]}" if msg else ""
