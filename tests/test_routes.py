"""The routers on their own: each mounted on a bare FastAPI app with only the state it reads
(a tiny index, the deterministic hashing embedder), no middleware and no error handlers."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from support import tiny_engine

from medcite.service import web
from medcite.service.engine import Engine
from medcite.service.ops import Metrics, QueryLog
from medcite.service.routes import health, search


@pytest.fixture(scope="module")
def engine(tiny_index_dir: Path) -> Engine:
    return tiny_engine(tiny_index_dir)  # type: ignore[no-any-return]


def bare_app(engine: Engine | None, *routers: object) -> FastAPI:
    app = FastAPI()
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.state.query_log = QueryLog(verbatim=False)
    for router in routers:
        app.include_router(router)  # type: ignore[arg-type]
    return app


def test_search_route_alone_answers_counts_and_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = bare_app(engine, search.router)
    with caplog.at_level(logging.INFO, "medcite.search"), TestClient(app) as client:
        r = client.post("/search", json={"query": "teeth brushing", "k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["passages"][0]["doc_id"] == "b.txt"
    assert body["disclaimer"]
    metrics: Metrics = app.state.metrics
    assert metrics.searches.labels("answered")._value.get() == 1
    (record,) = [rec for rec in caplog.records if rec.name == "medcite.search"]
    fields = record.fields  # type: ignore[attr-defined]
    assert "query" not in fields and fields["query_chars"] == len("teeth brushing")


def test_batch_route_alone_gives_one_result_per_query(engine: Engine) -> None:
    app = bare_app(engine, search.router)
    with TestClient(app) as client:
        r = client.post("/search/batch", json={"queries": [{"query": "teeth"}, {"query": "pain"}]})
    assert r.status_code == 200
    assert [res["query"] for res in r.json()["results"]] == ["teeth", "pain"]
    assert app.state.metrics.searches.labels("answered")._value.get() == 2


def test_search_route_without_an_engine_is_503(engine: Engine) -> None:
    app = bare_app(None, search.router)
    app.state.error = "the index is still loading"
    with TestClient(app) as client:
        r = client.post("/search", json={"query": "teeth"})
    assert r.status_code == 503  # the bare app has no error shape: FastAPI's own body
    assert r.json() == {"detail": "the index is still loading"}


def test_health_routes_alone(engine: Engine) -> None:
    app = bare_app(engine, health.router)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["model"] == "hashing-64"
        assert ready["chunks"] == 2 and ready["documents"] == 2
        assert "medcite_searches_total" in client.get("/metrics").text


@pytest.mark.parametrize(("gloss", "found"), [("teeth", "b.txt"), ("uterus", "a.txt")])
def test_search_and_terms_expand_with_the_engines_own_expander(
    engine: Engine, gloss: str, found: str
) -> None:
    """An engine with a hand-made one-entry dictionary: the Chinese question reaches the
    English passage of its gloss through BM25 alone, and ``/terms`` lights that gloss up."""
    from medcite.index.expand import Dictionary, Expander

    dictionary = Dictionary(zh_to_en={"流产": (gloss,)}, en_to_zh={gloss: ("流产",)})
    own = dataclasses.replace(
        engine,
        settings=dataclasses.replace(engine.settings, fusion="bm25", relevance=None),
        expander=Expander(dictionary, engine.tokenizer),
    )
    app = bare_app(own, search.router, web.router)
    with TestClient(app) as client:
        r = client.post("/search", json={"query": "流产", "k": 1, "language": "en"})
        terms = client.post("/terms", json={"query": "流产"})
    assert r.status_code == 200, r.text
    assert [p["doc_id"] for p in r.json()["passages"]] == [found]
    assert terms.json()["expansions"] == [gloss]
