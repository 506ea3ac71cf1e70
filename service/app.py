"""The FastAPI app: ``create_app(settings)`` wires state, middleware, error handlers and
routes; model and index load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from medcite.index.errors import MedciteError
from medcite.service import web
from medcite.service.engine import Engine, load_engine
from medcite.service.errors import install_error_handlers, public_message
from medcite.service.middleware import install_middleware
from medcite.service.ops import Metrics, QueryLog
from medcite.service.routes import admin, feedback, health, search
from medcite.service.schemas import ErrorResponse
from medcite.service.settings import Settings

LOG = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(
    app: FastAPI, *, settings: Settings, engine: Engine | None
) -> AsyncIterator[None]:
    """Serve ``engine``, or load one from ``settings`` (a failure is kept in
    ``app.state.error`` for /readyz and searches); close the stores on the way out."""
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


def index_counts(app: FastAPI) -> tuple[int, int]:
    """Chunks and documents of the served index (0, 0 while none is)."""
    current: Engine | None = getattr(app.state, "engine", None)
    if current is None:
        return 0, 0
    return len(current.index.chunks), len(current.index.documents)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="medcite",
        version="0.1.0",
        summary="Cited passages from medical articles for health questions (Chinese and English).",
        lifespan=partial(lifespan, settings=settings, engine=engine),
        docs_url=None,  # service.web serves /docs from packaged files (offline)
        redoc_url=None,  # ReDoc would load from a CDN
        responses={
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.state.query_log = QueryLog(verbatim=settings.log_queries)
    app.state.feedback = feedback.Feedback(settings)
    app.state.ingest_job = admin.IngestJob()
    metrics.track_index(partial(index_counts, app))

    install_middleware(app, settings, metrics)
    install_error_handlers(app)
    app.include_router(search.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(feedback.router)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    app.mount(web.DOCS_ASSETS, web.docs_assets(), name="docs-assets")
    return app
