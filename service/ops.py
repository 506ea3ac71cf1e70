"""Operations: request ids in logs, JSON logs, what is logged about a question, and the
Prometheus metrics.

``create_app`` builds a :class:`Metrics` and a :class:`QueryLog` per app (its own registry
and HMAC key), so several apps in one process do not share them; the middleware that
records into them is in :mod:`service.middleware`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")

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
