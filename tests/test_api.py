"""The API through a real ``medcite serve`` (uvicorn) on loopback, real model, seed corpus.

This is also the backend contract suite: every test that takes ``server`` runs once against
the embedded backend (FAISS + BM25 in process) and once against Milvus (Milvus Lite, a
local file), with the same expectations. Bad input is refused before any model or index
is asked, so those tests take ``app``: the app in process (``TestClient``) with the fake
embedder on the tiny index, on both backends likewise, and not slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from support import CORPUS, TINY_MODEL, cache_dir, serve, tiny_settings

from medcite.service.app import create_app
from medcite.service.disclaimer import DISCLAIMERS

MISCARRIAGE_EN = {"001_f6e1ae9f4f4596cb.txt", "004_3a0b4b9e837dc788.txt"}
MISCARRIAGE_ZH = "000_1e25916c291d4d20.txt"
PREGNANCY_EN = {"002_e80cb361c43bb8f7.txt", "003_322f64557f9a19d7.txt"}
OFF_TOPIC = [
    ("how to brew chrysanthemum tea", "en"),
    ("what is the best phone to buy", "en"),
    ("how do I change a flat tyre on my car", "en"),
    ("如何更换汽车轮胎", "zh"),
    ("今天比特币的价格是多少", "zh"),
    ("红烧肉怎么做好吃", "zh"),
]


def publish_to_milvus(index_dir: Path, uri: str) -> None:
    pytest.importorskip("milvus_lite", reason="the Milvus side needs milvus-lite")
    from medcite.index.milvus import MilvusBackend
    from medcite.index.store import current_version

    backend = MilvusBackend(uri)
    try:
        backend.publish(index_dir / str(current_version(index_dir)))
    finally:
        backend.close()  # Milvus Lite: one holder per file, and the server is another


@pytest.fixture(scope="module", params=["embedded", "milvus"])
def server(
    request: pytest.FixtureRequest, seed_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {"MEDCITE_INDEX_DIR": str(seed_index_dir), "MEDCITE_CACHE_DIR": str(cache_dir())}
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "milvus":
        uri = str(tmp / "milvus.db")
        publish_to_milvus(seed_index_dir, uri)
        env |= {"MEDCITE_INDEX_BACKEND": "milvus", "MEDCITE_MILVUS_URI": uri}
    with serve(env, tmp / "server.log") as base:
        assert httpx.get(f"{base}/readyz").json()["backend"] == request.param
        yield base


@pytest.fixture(scope="module", params=["embedded", "milvus"])
def app(
    request: pytest.FixtureRequest, tiny_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app in process on the tiny index with the fake embedder, on either backend."""
    tmp = tmp_path_factory.mktemp(f"app-{request.param}")
    backend: dict[str, Any] = {}
    if request.param == "milvus":
        uri = str(tmp / "milvus.db")
        publish_to_milvus(tiny_index_dir, uri)
        backend = {"index_backend": "milvus", "milvus_uri": uri}
    settings = tiny_settings(tiny_index_dir, cache_dir=tmp / "cache", **backend)
    assert settings.model == TINY_MODEL
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["backend"] == request.param
        yield client


def ask(base: str, query: str, **kw: Any) -> dict[str, Any]:
    r = httpx.post(f"{base}/search", json={"query": query, **kw}, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def assert_exact_spans(body: dict[str, Any]) -> None:
    for p in body["passages"]:
        text = (CORPUS / p["source"]).read_text(encoding="utf-8")
        assert text[p["start"] : p["end"]] == p["text"]


@pytest.mark.slow
def test_health_ready_and_docs(server: str) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "intfloat/multilingual-e5-small"
    assert ready["backend"] in {"embedded", "milvus"}
    assert httpx.get(f"{server}/docs").status_code == 200
    assert "/search" in httpx.get(f"{server}/openapi.json").json()["paths"]


@pytest.mark.slow
def test_english_question_finds_english_and_chinese_miscarriage_articles(server: str) -> None:
    body = ask(server, "why does my back hurt after a miscarriage", k=6)
    assert body["answerable"] and body["language"] == "en"
    assert body["disclaimer"] == DISCLAIMERS["en"]
    sources = [p["source"] for p in body["passages"]]
    assert MISCARRIAGE_EN & set(sources[:3])
    assert MISCARRIAGE_ZH in sources  # cross-lingual
    assert_exact_spans(body)
    expected = {"rank", "score", "text", "doc_id", "title", "source", "start", "end"}
    expected |= {"section", "author", "institution", "date", "language"}
    assert expected <= set(body["passages"][0])
    assert [p["rank"] for p in body["passages"]] == list(range(1, len(sources) + 1))


@pytest.mark.slow
def test_chinese_question_finds_chinese_and_english_articles(server: str) -> None:
    # k=8, what the page asks: the relevance model ranks the English miscarriage pages 6th
    # and 7th for this question, behind the Chinese article's cards (see README: cross-
    # language answers are the weak spot).
    body = ask(server, "流产后腰疼是什么原因", k=8)
    assert body["answerable"] and body["language"] == "zh"
    assert body["disclaimer"] == DISCLAIMERS["zh"]
    sources = {p["source"] for p in body["passages"]}
    assert MISCARRIAGE_ZH in sources
    assert MISCARRIAGE_EN & sources  # cross-lingual
    assert_exact_spans(body)
    zh = next(p for p in body["passages"] if p["source"] == MISCARRIAGE_ZH)
    assert zh["institution"] and zh["date"] == "2025-10-17"


@pytest.mark.slow
def test_chinese_pregnancy_question_reaches_english_pregnancy_pages(server: str) -> None:
    body = ask(server, "怀孕三个月腰疼怎么办", k=6)
    assert PREGNANCY_EN & {p["source"] for p in body["passages"]}
    assert_exact_spans(body)


@pytest.mark.slow
@pytest.mark.parametrize(("query", "lang"), OFF_TOPIC)
def test_off_topic_questions_abstain_with_disclaimer(server: str, query: str, lang: str) -> None:
    body = ask(server, query)
    assert body["answerable"] is False
    assert body["passages"] == []
    assert body["message"]
    assert body["disclaimer"] == DISCLAIMERS[lang]


@pytest.mark.slow
def test_no_boilerplate_and_no_repeats(server: str) -> None:
    for query in ["自然流产后腰疼是因为什么原因引起的", "back pain after miscarriage treatment"]:
        body = ask(server, query, k=10)
        texts = [p["text"] for p in body["passages"]]
        for t in texts:
            assert "Recommend" not in t and "健康典吧" not in t and "@qq.com" not in t
        per_doc: dict[str, int] = {}
        for p in body["passages"]:
            per_doc[p["doc_id"]] = per_doc.get(p["doc_id"], 0) + 1
        assert max(per_doc.values()) <= 2
        assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"query": "   "}, "query"),
        ({"query": "back pain", "k": 0}, "k"),
        ({"query": "back pain", "k": 51}, "k"),
        ({"query": 5}, "query"),
        ({"query": "back pain", "colour": "red"}, "colour"),
        ({"query": "back pain", "language": "fr"}, "language"),
        ({}, "query"),
    ],
)
def test_bad_input_gets_one_error_shape(
    app: TestClient, payload: dict[str, Any], where: str
) -> None:
    r = app.post("/search", json=payload)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] in {"invalid_request", "invalid_query"}
    assert where in error["message"] or error["code"] == "invalid_query"


def test_invalid_json_is_a_clean_422(app: TestClient) -> None:
    r = app.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


@pytest.mark.slow
def test_serve_builds_an_index_from_the_corpus_when_there_is_none(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Back pain\n\nBack pain is common in pregnancy.\n", "utf-8")
    env = {
        "MEDCITE_INDEX_DIR": str(tmp_path / "idx"),
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_CORPUS_DIR": str(corpus),
        "MEDCITE_MODEL": "hashing-32",
    }
    with serve(env, tmp_path / "server.log", timeout=120) as base:
        assert httpx.get(f"{base}/readyz").json()["chunks"] == 1
    assert (tmp_path / "idx" / "CURRENT").is_file()


@pytest.mark.slow
def test_batch_has_the_same_shape_and_results_as_single_searches(server: str) -> None:
    queries = [
        "why does my back hurt after a miscarriage",
        "流产后腰疼是什么原因",
        "红烧肉怎么做好吃",
    ]
    r = httpx.post(
        f"{server}/search/batch",
        json={"queries": [{"query": q, "k": 4} for q in queries]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    for q, batch in zip(queries, results, strict=True):
        single = ask(server, q, k=4)
        assert set(batch) == set(single)
        assert [(p["chunk_id"], p["start"], p["end"]) for p in batch["passages"]] == [
            (p["chunk_id"], p["start"], p["end"]) for p in single["passages"]
        ]
        assert batch["answerable"] == single["answerable"]
        assert batch["disclaimer"] == single["disclaimer"]
    assert results[2]["answerable"] is False


def test_batch_limits_and_errors(app: TestClient) -> None:
    too_many = {"queries": [{"query": "back pain"}] * 257}
    assert app.post("/search/batch", json=too_many).status_code == 422
    r = app.post("/search/batch", json={"queries": [{"query": "back pain"}, {"query": " "}]})
    assert r.status_code == 422 and "queries[1]" in r.json()["error"]["message"]
    assert app.post("/search/batch", json={"queries": []}).status_code == 422
