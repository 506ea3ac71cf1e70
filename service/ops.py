"""Operations: request ids, metrics, JSON logs, rate limiting and a bound on searches.

Everything here is built by ``create_app`` from settings and holds per-app state (its own
Prometheus registry, buckets and semaphore), so several apps in one process do not share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SEARCH_PATHS = ("/search", "/search/batch")

# -- logs ---------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:  # logs may hold tracebacks; responses never do
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(*, json_logs: bool, level: int = logging.INFO) -> None:
    """Called once by ``medcite serve``: JSON lines on stderr (or plain text)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our access log replaces uvicorn's (which would log paths without request ids).
    logging.getLogger("uvicorn.access").disabled = True


class QueryLog:
    """What is logged about a question: by default an HMAC of it and its length.

    Questions are health data. The HMAC key is random per process, so a logged digest
    cannot be reversed by hashing guessed questions, yet repeats of one question within a
    process's lifetime share a digest. ``verbatim`` (MEDCITE_LOG_QUERIES) logs the text.
    """

    def __init__(self, verbatim: bool) -> None:
        self.verbatim = verbatim
        self._key = secrets.token_bytes(32)

    def fields(self, query: str) -> dict[str, Any]:
        digest = hmac.new(self._key, query.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        out: dict[str, Any] = {"query_hmac": digest, "query_chars": len(query)}
        if self.verbatim:
            out["query"] = query
        return out


# -- metrics ------------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "medcite_requests",
            "HTTP requests by route template, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "medcite_request_seconds",
            "HTTP request latency by route template",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.searches = Counter(
            "medcite_searches",
            "Searches by outcome (answered or abstained)",
            ["outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "medcite_rejected",
            "Searches refused before running, by reason (rate_limited, overloaded)",
            ["reason"],
            registry=self.registry,
        )
        self.index_chunks = Gauge(
            "medcite_index_chunks", "Chunks in the loaded index", registry=self.registry
        )
        self.index_documents = Gauge(
            "medcite_index_documents", "Documents in the loaded index", registry=self.registry
        )

    def track_index(self, counts: Callable[[], tuple[int, int]]) -> None:
        self.index_chunks.set_function(lambda: float(counts()[0]))
        self.index_documents.set_function(lambda: float(counts()[1]))


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContext:
    """Pure ASGI middleware: request id (kept from X-Request-ID when sane), its response
    header, the request's metrics and one JSON access-log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("medcite.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _GOOD_ID.match(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
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


# -- admission: rate limit and concurrency bound --------------------------------------------


class TokenBuckets:
    """Per-client token buckets (``per_minute`` refill, ``burst`` capacity), LRU-bounded."""

    def __init__(self, per_minute: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


class SearchAdmission:
    """Pure ASGI middleware in front of the search endpoints: a per-client rate limit
    (429) and a bound on searches in flight with a short wait (503), both with Retry-After,
    so overload is refused quickly instead of queueing without end."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        error: Callable[[int, str, str, dict[str, str]], Any],
        buckets: TokenBuckets | None,
        max_concurrent: int,
        max_wait_seconds: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.error = error
        self.buckets = buckets
        self.max_wait = max_wait_seconds
        self.max_concurrent = max_concurrent
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SEARCH_PATHS:
            await self.app(scope, receive, send)
            return
        if self.buckets is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.buckets.take(str(client))
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
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.max_wait)
        except TimeoutError:
            self.metrics.rejected.labels("overloaded").inc()
            response = self.error(
                503,
                "overloaded",
                "the service is busy; retry shortly",
                {"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
