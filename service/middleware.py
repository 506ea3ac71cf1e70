"""The ASGI middleware around the app, outermost first: request ids, access log and metrics
(:class:`RequestContext`); CORS with refusals in the error shape (:class:`JsonCORS`);
security headers (:class:`SecurityHeaders`); the request body's size and time limit
(:class:`BodySizeLimit`); admission to the search endpoints, a per-client rate limit and a
bound on searches in flight (:class:`SearchAdmission`). :func:`install_middleware` adds them
in that order from settings; each holds per-app state, so several apps in one process do
not share it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcite.service.errors import error_response
from medcite.service.ops import REQUEST_ID, Metrics
from medcite.service.schemas import MAX_BATCH_QUERIES
from medcite.service.settings import Settings

_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SEARCH_PATHS = ("/search", "/search/batch")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the request before a response"


def install_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Add the middleware to ``app``. Starlette runs the last added outermost: request ids
    and metrics (so every response, a refused preflight included, carries the id and is
    counted), then CORS, security headers, the body limit, then admission to search."""
    app.add_middleware(
        SearchAdmission,
        metrics=metrics,
        error=error_response,
        buckets=TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst)
        if settings.rate_limit_per_minute > 0
        else None,
        max_concurrent=settings.max_concurrent_searches,
        max_wait_seconds=settings.search_queue_seconds,
        max_queue=settings.search_queue_length,
        max_batch_slots=settings.max_concurrent_batches,
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, max_seconds=settings.body_timeout
    )
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext, metrics=metrics, error=error_response)


# -- request context: id, access log, metrics ----------------------------------------------


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContext:
    """Pure ASGI middleware: request id (kept from X-Request-ID when sane), its response
    header, the request's metrics and one JSON access-log line.

    It is the outermost layer, so every response carries the id: a refused CORS preflight,
    and an unexpected error, which it answers itself (a 500 in the error shape, logged with
    the id and its traceback) instead of leaving it to Starlette's outer error handler. A
    client that goes away before any response is counted as 499 (client closed request),
    not as a server error.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, error: Callable[..., Any] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.error = error
        self.log = logging.getLogger("medcite.access")
        self.errors = logging.getLogger("medcite.errors")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _GOOD_ID.match(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status: int | None = None
        disconnected = False
        t0 = time.perf_counter()

        async def receive_watching() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive_watching, send_with_id)
        except Exception:
            if status is not None or self.error is None:
                status = status or 500
                raise
            self.errors.exception("unexpected error on %s", scope.get("path", "?"))
            response = self.error(500, "internal_error", "internal error")
            await response(scope, receive, send_with_id)
        finally:
            if status is None:
                status = CLIENT_CLOSED if disconnected else 500
            seconds = time.perf_counter() - t0
            endpoint = _route(scope)
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            self.log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "endpoint": endpoint,
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                    }
                },
            )
            REQUEST_ID.reset(token)


# -- CORS and security headers -----------------------------------------------------------


class JsonCORS(CORSMiddleware):
    """Starlette's CORS middleware, but a refused preflight gets the error shape (400)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        keep = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        reason = bytes(response.body).decode("utf-8", "replace")
        return error_response(400, "cors_refused", f"preflight refused: {reason}", keep)


# The page loads only its own files; corpus text can never become script even if it were
# ever rendered as markup by mistake.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# Every response: no content sniffing, no referrer. The page and its files: also the CSP.
BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class SecurityHeaders:
    """Pure ASGI middleware: ``PAGE_HEADERS`` on the page and everything under ``/static``
    (whichever way it is reached), ``BASE_HEADERS`` on every other response. A header the
    route set itself is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.page = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
        self.base = [(k.lower().encode(), v.encode()) for k, v in BASE_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        extra = self.page if path == "/" or path.startswith("/static/") else self.base

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- request body: size and time limit ---------------------------------------------------


class BodySizeLimit:
    """Pure ASGI middleware: a request body over ``max_bytes`` gets a 413 in the error shape,
    one not received within ``max_seconds`` a 408 (a slow-body client cannot hold a
    connection and a worker for ever).

    A declared Content-Length is checked before anything is read; otherwise (chunked) the
    body is read and counted up front, at most ``max_bytes`` of it is buffered, and it is
    replayed to the app in one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_seconds: float = 20.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False  # the server rejects a malformed length itself
                if too_large:
                    await self._reject(scope, receive, send)
                    return
        try:
            async with asyncio.timeout(self.max_seconds):
                chunks = await self._read(receive)
        except TimeoutError:
            why = f"the request body was not received within {self.max_seconds:g} s"
            await _closing_error(408, "request_timeout", why)(scope, receive, send)
            return
        except _TooLarge:
            await self._reject(scope, receive, send)
            return
        if chunks is None:  # the client went away
            return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, replaying(receive, body), send)

    async def _read(self, receive: Receive) -> list[bytes] | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(body)
            if not message.get("more_body", False):
                return chunks

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        why = f"the request body is larger than {self.max_bytes} bytes"
        await _closing_error(413, "payload_too_large", why)(scope, receive, send)


def _closing_error(status: int, code: str, message: str) -> JSONResponse:
    """An error that closes the connection: the rest of the body is never read."""
    return error_response(status, code, message, {"Connection": "close"})


class _TooLarge(Exception):
    pass


# -- admission: rate limit and concurrency bound --------------------------------------------


class TokenBuckets:
    """Per-client token buckets (``per_minute`` refill, ``burst`` capacity), LRU-bounded.

    A request may cost more than one token (a batch costs its queries). It is admitted when
    the bucket holds ``min(cost, burst)`` tokens and then pays the whole cost, so a batch
    larger than the burst leaves the bucket in debt: the client waits for the refill.
    """

    def __init__(self, per_minute: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None, cost: float = 1.0) -> float:
        """0 when allowed (and ``cost`` is paid), else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        need = min(cost, self.burst)
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= need:
                tokens -= cost
            else:
                wait = (need - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


BATCH_PATH = "/search/batch"
DEFAULT_K = 5


def batch_cost(body: bytes) -> float:
    """What a ``/search/batch`` body costs in single searches: each query 1, or k/10 when it
    asks for more than 10 passages (k=50 costs 5). A body the app will refuse with a 422
    (unreadable, or over MAX_BATCH_QUERIES queries) costs 1: it runs no search."""
    try:
        queries = json.loads(body).get("queries")
        if not isinstance(queries, list) or len(queries) > MAX_BATCH_QUERIES:
            return 1.0
        cost = 0.0
        for item in queries:
            k = item.get("k", DEFAULT_K) if isinstance(item, dict) else DEFAULT_K
            k = k if isinstance(k, int) and not isinstance(k, bool) else DEFAULT_K
            cost += max(1.0, k / 10)
        return max(1.0, cost)
    except (ValueError, AttributeError, RecursionError):
        return 1.0


class SearchAdmission:
    """Pure ASGI middleware in front of the search endpoints, so overload is refused quickly
    instead of queueing without end:

    - a per-client rate limit (429 with Retry-After); a batch is charged what it costs
      (:func:`batch_cost`), not one token;
    - a bound on searches in flight (``max_concurrent``) with a short wait (503 with
      Retry-After after ``max_wait_seconds``), and no wait at all when ``max_queue``
      requests already wait;
    - batches run in their own lane of ``max_batch_slots`` (fewer than ``max_concurrent``),
      so large batches can never hold every slot and single searches are always served.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        error: Callable[[int, str, str, dict[str, str]], Any],
        buckets: TokenBuckets | None,
        max_concurrent: int,
        max_wait_seconds: float,
        max_queue: int = 16,
        max_batch_slots: int = 1,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.error = error
        self.buckets = buckets
        self.max_wait = max_wait_seconds
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        # Single searches keep at least one slot of their own.
        self.max_batch_slots = max(1, min(max_batch_slots, max_concurrent - 1))
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None
        self._batch_slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SEARCH_PATHS:
            await self.app(scope, receive, send)
            return
        cost = 1.0
        if scope["path"] == BATCH_PATH and scope["method"] == "POST":
            receive, body = await _buffered(receive)
            cost = batch_cost(body)
        if self.buckets is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.buckets.take(str(client), cost=cost)
            if wait > 0:
                self.metrics.rejected.labels("rate_limited").inc()
                response = self.error(
                    429,
                    "rate_limited",
                    "too many searches from this client; retry later",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                await response(scope, receive, send)
                return
        if self._slots is None:  # created on the server's event loop
            self._slots = asyncio.Semaphore(self.max_concurrent)
            self._batch_slots = asyncio.Semaphore(self.max_batch_slots)
        assert self._batch_slots is not None
        lanes = [self._batch_slots, self._slots] if scope["path"] == BATCH_PATH else [self._slots]
        held: list[asyncio.Semaphore] = []
        try:
            for lane in lanes:
                if not await self._acquire(lane):
                    self.metrics.rejected.labels("overloaded").inc()
                    response = self.error(
                        503,
                        "overloaded",
                        "the service is busy; retry shortly",
                        {"Retry-After": "1"},
                    )
                    await response(scope, receive, send)
                    return
                held.append(lane)
            await self.app(scope, receive, send)
        finally:
            for lane in held:
                lane.release()

    async def _acquire(self, lane: asyncio.Semaphore) -> bool:
        """A slot of ``lane``: at once, or after a wait of at most max_wait seconds when
        fewer than max_queue requests wait already."""
        if not lane.locked():
            await lane.acquire()
            return True
        if self.waiting >= self.max_queue:
            return False  # shed at once: the queue is long
        self.waiting += 1
        try:
            await asyncio.wait_for(lane.acquire(), timeout=self.max_wait)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1


async def _buffered(receive: Receive) -> tuple[Receive, bytes]:
    """Read the whole request body (already bounded by BodySizeLimit) and a ``receive``
    that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return replaying(receive, message), b""  # a disconnect: replay it
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return replaying(receive, {"type": "http.request", "body": body, "more_body": False}), body


def replaying(receive: Receive, first: Message) -> Receive:
    """A ``receive`` that gives ``first`` once, then what ``receive`` gives."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return first

    return replay
