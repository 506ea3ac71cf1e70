"""``POST /search`` and ``POST /search/batch``: cited passages for questions."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter

from medcite.index.errors import InvalidQuery
from medcite.index.search import SearchResult, validate_query
from medcite.service.deps import MetricsDep, QueryLogDep
from medcite.service.engine import EngineDep
from medcite.service.ops import Metrics, QueryLog
from medcite.service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    SearchRequest,
    SearchResponse,
    to_response,
)

SEARCH_LOG = logging.getLogger("medcite.search")

LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "rate limited (Retry-After)"}
}

router = APIRouter()


def record(result: SearchResult, took_ms: float, metrics: Metrics, query_log: QueryLog) -> None:
    """Count the search by outcome and log it (the question as its HMAC unless opted in)."""
    outcome = "answered" if result.answerable else "abstained"
    metrics.searches.labels(outcome).inc()
    SEARCH_LOG.info(
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


@router.post("/search", response_model=SearchResponse, responses=LIMITED)
def search_endpoint(
    body: SearchRequest, engine: EngineDep, metrics: MetricsDep, query_log: QueryLogDep
) -> SearchResponse:
    """The most relevant passages for a question, with citations and a disclaimer."""
    t0 = time.perf_counter()
    result = engine.search(body.query, k=body.k, language=body.language)
    took_ms = (time.perf_counter() - t0) * 1000
    record(result, took_ms, metrics, query_log)
    return to_response(result, engine.index, took_ms)


@router.post("/search/batch", response_model=BatchSearchResponse, responses=LIMITED)
def search_batch(
    body: BatchSearchRequest, engine: EngineDep, metrics: MetricsDep, query_log: QueryLogDep
) -> BatchSearchResponse:
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
        result = engine.search(text, k=item.k, language=item.language, query_vector=vector)
        took_ms = (time.perf_counter() - t1) * 1000
        record(result, took_ms, metrics, query_log)
        results.append(to_response(result, engine.index, took_ms))
    took_ms = round((time.perf_counter() - t0) * 1000, 2)
    return BatchSearchResponse(results=results, took_ms=took_ms)
