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
CLIENT_CLOSED = 499  # nginx's status for "the client closed the request before a response"

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
        self.feedback = Counter(
            "medcite_feedback",
            "Staff judgements stored, by label (helpful, not_helpful, none)",
            ["label"],
            registry=self.registry,
        )
        for label in ("helpful", "not_helpful", "none"):
            self.feedback.labels(label)  # shown at 0 before the first judgement
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
MAX_BATCH_QUERIES = 256
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
