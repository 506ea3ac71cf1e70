"""``GET /healthz`` (the process is up), ``GET /readyz`` (it can answer) and ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from medcite.service.deps import MetricsDep
from medcite.service.engine import EngineDep
from medcite.service.schemas import ErrorResponse

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse}})
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


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: requests, latency, searches by outcome, index size."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
