"""The FastAPI app: ``create_app(settings)``; model and index load in the lifespan."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from index.errors import BackendUnavailable, InvalidQuery, MedciteError
from index.search import SearchResult, search, validate_query
from service import web
from service.admin import admin_router, public_message
from service.engine import Engine, EngineDep, load_engine
from service.feedback_routes import install as install_feedback
from service.ops import (
    Metrics,
    QueryLog,
    RequestContext,
    SearchAdmission,
    TokenBuckets,
    replaying,
)
from service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    SearchRequest,
    SearchResponse,
    to_response,
)
from service.settings import Settings
from service.web import SecurityHeaders

LOG = logging.getLogger(__name__)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


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
    return _error(status, code, message, {"Connection": "close"})


class _TooLarge(Exception):
    pass


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
        return _error(400, "cors_refused", f"preflight refused: {reason}", keep)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine
        app.state.error = None
        if engine is None:
            try:
                app.state.engine = load_engine(settings)
            except MedciteError as exc:
                app.state.error = public_message(str(exc), settings)  # clients see it
                LOG.error("not ready: %s", exc)
        yield
        app.state.feedback.close()
        loaded: Engine | None = app.state.engine
        if loaded is not None and loaded.backend is not None:
            loaded.backend.close()  # Milvus Lite: frees the file for the next process

    app = FastAPI(
        title="medcite",
        version="0.1.0",
        summary="Cited passages from medical articles for health questions (Chinese and English).",
        lifespan=lifespan,
        docs_url=None,  # service.web serves /docs from packaged files (offline)
        redoc_url=None,  # ReDoc would load from a CDN
        responses={
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    metrics = Metrics()
    query_log = QueryLog(verbatim=settings.log_queries)
    search_log = logging.getLogger("medcite.search")

    def index_counts() -> tuple[int, int]:
        current: Engine | None = getattr(app.state, "engine", None)
        if current is None:
            return 0, 0
        return len(current.index.chunks), len(current.index.documents)

    metrics.track_index(index_counts)
    # Outermost last: request ids and metrics (so every response, a refused preflight
    # included, carries the id and is counted), then CORS, the body limit, then admission
    # to the search endpoints.
    app.add_middleware(
        SearchAdmission,
        metrics=metrics,
        error=_error,
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
    app.add_middleware(RequestContext, metrics=metrics, error=_error)

    def record(result: SearchResult, took_ms: float) -> None:
        outcome = "answered" if result.answerable else "abstained"
        metrics.searches.labels(outcome).inc()
        search_log.info(
            "search",
            extra={
                "fields": query_log.fields(result.query)
                | {
                    "language": result.language,
                    "outcome": outcome,
                    "p_answerable": None
                    if result.p_answerable is None
                    else round(result.p_answerable, 4),
                    "ms": round(took_ms, 2),
                }
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI cannot decode (e.g. not UTF-8): bad input
            return _error(422, "invalid_request", f"the request body is invalid: {exc.detail}")
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            413: "payload_too_large",
            415: "unsupported_media_type",
            503: "not_ready",
        }.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})  # e.g. Allow on a 405
        if exc.status_code == 503:
            headers["Retry-After"] = "5"
        return _error(exc.status_code, code, str(exc.detail), headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg"))
        )
        return _error(422, "invalid_request", message)

    @app.exception_handler(InvalidQuery)
    async def invalid_query(request: Request, exc: InvalidQuery) -> JSONResponse:
        return _error(422, "invalid_query", str(exc))

    @app.exception_handler(BackendUnavailable)
    async def backend_unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
        LOG.error("index backend unavailable on %s: %s", request.url.path, exc)
        return _error(
            503,
            "backend_unavailable",
            "the index backend is unavailable; try again later",
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal_error", "internal error")

    limited: dict[int | str, dict[str, Any]] = {
        429: {"model": ErrorResponse, "description": "rate limited (Retry-After)"}
    }

    @app.post("/search", response_model=SearchResponse, responses=limited)
    def search_endpoint(body: SearchRequest, engine: EngineDep) -> SearchResponse:
        """The most relevant passages for a question, with citations and a disclaimer."""
        t0 = time.perf_counter()
        result = search(
            engine.index,
            engine.embedder,
            body.query,
            k=body.k,
            language=body.language,
            settings=engine.settings,
        )
        took_ms = (time.perf_counter() - t0) * 1000
        record(result, took_ms)
        return to_response(result, engine.index, took_ms)

    @app.post("/search/batch", response_model=BatchSearchResponse, responses=limited)
    def search_batch(body: BatchSearchRequest, engine: EngineDep) -> BatchSearchResponse:
        """Up to 256 searches in one call (for evaluation scripts); same shape per query."""
        t0 = time.perf_counter()
        texts = []
        for i, item in enumerate(body.queries):
            try:
                texts.append(validate_query(item.query))
            except InvalidQuery as exc:
                raise InvalidQuery(f"queries[{i}]: {exc}") from exc
        vectors = engine.embedder.embed(texts, kind="query")
        results = []
        for item, text, vector in zip(body.queries, texts, vectors, strict=True):
            t1 = time.perf_counter()
            result = search(
                engine.index,
                engine.embedder,
                text,
                k=item.k,
                language=item.language,
                settings=engine.settings,
                query_vector=vector,
            )
            took_ms = (time.perf_counter() - t1) * 1000
            record(result, took_ms)
            results.append(to_response(result, engine.index, took_ms))
        took_ms = round((time.perf_counter() - t0) * 1000, 2)
        return BatchSearchResponse(results=results, took_ms=took_ms)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    def readyz(engine: EngineDep) -> dict[str, Any]:
        """The index and model are loaded and the service can answer."""
        counts = engine.index.manifest.counts
        return {
            "status": "ready",
            "model": engine.index.model_name,
            "chunks": counts.chunks,
            "documents": counts.documents,
            "index_version": engine.index.path.name,
            "backend": engine.index.retriever.name,
            "min_relevance": engine.settings.threshold,
        }

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, searches by outcome, index size."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(admin_router(settings))
    app.state.feedback = install_feedback(app, settings, metrics, _error)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    app.mount(web.DOCS_ASSETS, web.docs_assets(), name="docs-assets")
    return app
