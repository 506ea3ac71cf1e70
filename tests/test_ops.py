"""Operations: request ids, metrics, query privacy in logs, rate limit, concurrency bound,
CORS, admin endpoints and reload without downtime (fake embedder; real server where it counts)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send
from support import serve, tiny_engine, tiny_settings
from support import write_tiny_corpus as write_corpus

from medcite.index.build import BuildSettings, build_index
from medcite.index.embed import HashingEmbedder
from medcite.index.store import load_index
from medcite.ingest import load
from medcite.service.app import create_app
from medcite.service.errors import error_response
from medcite.service.middleware import SearchAdmission, TokenBuckets
from medcite.service.ops import Metrics, QueryLog
from medcite.service.settings import Settings

EMB = HashingEmbedder(64)
QUESTION = "back pain after miscarriage"
KEY = "test-admin-key-0123456789"


@pytest.fixture(scope="module")
def index_dir(tiny_index_dir: Path) -> Path:
    return tiny_index_dir


def client(index_dir: Path, **overrides: Any) -> TestClient:
    settings = tiny_settings(index_dir, **overrides)
    return TestClient(create_app(settings, engine=tiny_engine(index_dir, **overrides)))


def test_request_id_is_returned_kept_when_sane_and_replaced_when_not(index_dir: Path) -> None:
    with client(index_dir) as c:
        generated = c.get("/healthz").headers["x-request-id"]
        assert len(generated) == 32
        assert (
            c.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
            == "abc-123"
        )
        bad = c.get("/healthz", headers={"X-Request-ID": "x" * 65 + "\n"}).headers["x-request-id"]
        assert bad != "x" * 65 and len(bad) == 32


def test_metrics_count_requests_searches_and_index_size(index_dir: Path) -> None:
    with client(index_dir, min_relevance=1.0, abstain=True) as c:
        assert c.post("/search", json={"query": QUESTION}).json()["answerable"] is False
        c.get("/documents/..%2Fnope")
        text = c.get("/metrics").text
    assert 'medcite_requests_total{endpoint="/search",method="POST",status="200"} 1.0' in text
    # The route template, not the raw path, labels a request (bounded cardinality).
    assert 'endpoint="/documents/{doc_id:anypath}",method="GET",status="404"' in text
    assert 'medcite_searches_total{outcome="abstained"} 1.0' in text
    assert "medcite_request_seconds_bucket" in text
    assert "medcite_index_chunks 2.0" in text or "medcite_index_chunks 3.0" in text
    assert "medcite_index_documents 2.0" in text


def test_questions_are_logged_as_hmac_and_length_unless_opted_in(
    index_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for verbatim in (False, True):
        caplog.clear()
        with (
            caplog.at_level(logging.INFO, "medcite.search"),
            client(index_dir, log_queries=verbatim) as c,
        ):
            c.post("/search", json={"query": QUESTION})
        (record,) = [r for r in caplog.records if r.name == "medcite.search"]
        fields = record.fields  # type: ignore[attr-defined]
        assert fields["query_chars"] == len(QUESTION) and len(fields["query_hmac"]) == 16
        assert (fields.get("query") == QUESTION) is verbatim
        assert (QUESTION in json.dumps(fields)) is verbatim


def test_query_hmac_is_stable_per_process_and_not_a_plain_hash() -> None:
    import hashlib

    log = QueryLog(verbatim=False)
    assert log.fields("q")["query_hmac"] == log.fields("q")["query_hmac"]
    assert log.fields("q")["query_hmac"] != hashlib.sha256(b"q").hexdigest()[:16]
    assert log.fields("q")["query_hmac"] != QueryLog(verbatim=False).fields("q")["query_hmac"]


def test_rate_limit_gives_429_with_retry_after(index_dir: Path) -> None:
    with client(index_dir, rate_limit_per_minute=1, rate_limit_burst=2) as c:
        codes = [c.post("/search", json={"query": QUESTION}).status_code for _ in range(3)]
        r = c.post("/search", json={"query": QUESTION})
        assert c.get("/healthz").status_code == 200  # only searches are limited
        metrics = c.get("/metrics").text
    assert codes == [200, 200, 429]
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert 'medcite_rejected_total{reason="rate_limited"} 2.0' in metrics


def test_token_bucket_refills() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1)
    assert buckets.take("a", now=0.0) == 0
    assert buckets.take("a", now=0.5) == pytest.approx(0.5)
    assert buckets.take("a", now=1.6) == 0
    assert buckets.take("b", now=1.6) == 0  # per client


def gate(max_concurrent: int, max_wait: float, **kwargs: Any) -> tuple[Any, asyncio.Event, dict]:
    """SearchAdmission in front of an app that holds every request until ``release`` is
    set; ``entered`` counts the requests it let through, by path."""
    release = asyncio.Event()
    entered: dict[str, int] = {"/search": 0, "/search/batch": 0}

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        entered[scope["path"]] += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = SearchAdmission(
        slow_app,
        metrics=Metrics(),
        error=error_response,
        buckets=None,
        max_concurrent=max_concurrent,
        max_wait_seconds=max_wait,
        **kwargs,
    )
    return guard, release, entered


def test_concurrency_bound_refuses_with_503_instead_of_queueing_forever() -> None:
    guard, release, entered = gate(max_concurrent=1, max_wait=0.2)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/search", json={}))
            while entered["/search"] == 0:
                await asyncio.sleep(0.01)
            second = await c.post("/search", json={})  # waits 0.2 s, then is refused
            release.set()
            return [await first, second]

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
    assert second.headers["retry-after"] == "1"


def test_cors_is_closed_by_default_and_configurable(index_dir: Path) -> None:
    origin = {"Origin": "https://support.example"}
    with client(index_dir) as c:
        assert "access-control-allow-origin" not in c.get("/healthz", headers=origin).headers
    with client(index_dir, cors_origins=["https://support.example"]) as c:
        r = c.options("/search", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert r.headers["access-control-allow-origin"] == "https://support.example"
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_admin_is_disabled_without_a_key_and_needs_the_right_one(index_dir: Path) -> None:
    with client(index_dir) as c:
        r = c.post("/admin/reload")
        assert r.status_code == 403 and "MEDCITE_ADMIN_API_KEY" in r.json()["error"]["message"]
    with client(index_dir, admin_api_key=KEY) as c:
        assert c.post("/admin/reload").status_code == 401
        wrong = c.post("/admin/reload", headers={"Authorization": f"Bearer {KEY[:-1]}x"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        ok = c.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["status"] == "reloaded"


def test_a_short_admin_key_is_refused_without_echoing_it() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 16") as raised:
        Settings(admin_api_key="hunter2")
    assert "hunter2" not in str(raised.value)


def medcite(*args: str, env: dict[str, str]) -> None:
    exe = Path(sys.executable).parent / "medcite"
    subprocess.run([str(exe), *args], env=env, check=True, capture_output=True)


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    import os

    env = {
        "MEDCITE_MODEL": "hashing-64",
        "MEDCITE_ABSTAIN": "false",
        "MEDCITE_INDEX_DIR": str(tmp_path / "index"),
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_CORPUS_DIR": str(write_corpus(tmp_path / "corpus")),
        "MEDCITE_ADMIN_API_KEY": KEY,
        "MEDCITE_RATE_LIMIT_PER_MINUTE": "0",
    }
    log = tmp_path / "server.log"
    with serve(env, log) as base:
        yield base, {**os.environ, "HF_HUB_OFFLINE": "1", **env}, log


def test_reload_and_ingest_without_downtime_on_a_real_server(
    live: tuple[str, dict[str, str], Path], tmp_path: Path
) -> None:
    base, env, log = live
    auth = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(f"{base}/readyz").json()["index_version"]
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                statuses.append(c.post(f"{base}/search", json={"query": QUESTION}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # A new version written by another process, then swapped in while searches run.
        write_corpus(tmp_path / "corpus", extra="Warmth helps.")
        medcite("ingest", str(tmp_path / "corpus"), env=env)
        r = httpx.post(f"{base}/admin/reload", headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == before
        middle = r.json()["index_version"]
        assert middle != before
        # An index from another model is refused; the old one keeps serving.
        medcite("ingest", str(tmp_path / "corpus"), env={**env, "MEDCITE_MODEL": "hashing-32"})
        refused = httpx.post(f"{base}/admin/reload", headers=auth, timeout=60)
        assert refused.status_code == 409 and "still serving" in refused.json()["error"]["message"]
        assert httpx.get(f"{base}/readyz").json()["index_version"] == middle
        # Admin ingest runs in the background and swaps its result in.
        started = httpx.post(f"{base}/admin/ingest", headers=auth)
        assert started.status_code == 202 and started.json()["state"] == "running"
        deadline = time.monotonic() + 120
        while (state := httpx.get(f"{base}/admin/ingest", headers=auth).json())[
            "state"
        ] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert state["state"] == "succeeded", state
        assert httpx.get(f"{base}/readyz").json()["index_version"] == state["index_version"]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}, statuses[:20]
    # JSON log lines with request ids; questions only as an HMAC and a length.
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    searches = [x for x in lines if x["message"] == "search"]
    assert len(searches) >= len(statuses) and all(len(x["request_id"]) == 32 for x in searches)
    assert QUESTION not in log.read_text()
    assert {"query_hmac", "query_chars", "outcome", "ms"} <= searches[0].keys()
    assert any(x["message"] == "request" and x["endpoint"] == "/admin/reload" for x in lines)


def test_delete_document_publishes_a_version_without_it(tmp_path: Path) -> None:
    out = tmp_path / "index"
    corpus = load([write_corpus(tmp_path / "c")])
    build_index(corpus, EMB, index_dir=out, settings=BuildSettings(), cache=None)
    auth = {"Authorization": f"Bearer {KEY}"}
    with client(out, admin_api_key=KEY) as c:
        assert c.delete("/admin/documents/a.txt").status_code == 401
        before = c.get("/readyz").json()
        r = c.delete("/admin/documents/a.txt", headers=auth)
        assert r.status_code == 200, r.text
        after = c.get("/readyz").json()
        assert after["index_version"] == r.json()["index_version"] != before["index_version"]
        assert after["documents"] == before["documents"] - 1
        hits = c.post("/search", json={"query": QUESTION, "k": 10}).json()["passages"]
        assert hits and all(p["doc_id"] != "a.txt" for p in hits)
        assert c.get("/documents/a.txt").status_code == 404
        missing = c.delete("/admin/documents/a.txt", headers=auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        last = c.delete("/admin/documents/b.txt", headers=auth)
        assert last.status_code == 409 and "empty" in last.json()["error"]["message"]
    reloaded = load_index(out)
    assert [c.doc_id for c in reloaded.chunks] == ["b.txt"] * len(reloaded.chunks)
    assert reloaded.vectors.shape[0] == len(reloaded.chunks)
    for chunk in reloaded.chunks:
        assert reloaded.sources[chunk.source].text[chunk.start : chunk.end] == chunk.text
    assert reloaded.manifest.corpus.removed == ("a.txt",)
