"""Hostile or odd input: always the error shape, never a 500.

What the app decides (validation, 413 on a declared length, 405/404, content types) goes
through ``TestClient`` on the tiny index with the fake embedder; what needs a real socket
(a chunked body without a length) through a real ``medcite serve`` with the fake embedder;
odd but valid questions through the real model in process. The real server with the real
model is tested once per backend in ``test_api.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from support import TINY_MODEL, cache_dir, serve, tiny_engine, tiny_settings

from medcite.index.errors import ControlCharacters
from medcite.index.search import validate_query
from medcite.service.app import create_app
from medcite.service.disclaimer import DISCLAIMERS
from medcite.service.settings import Settings

MAX_BODY = 64 * 1024


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x0b", "\x1f"])
def test_validate_query_refuses_control_characters(bad: str) -> None:
    with pytest.raises(ControlCharacters, match="control character"):
        validate_query(f"back {bad}pain")


def test_validate_query_keeps_tab_newline_and_carriage_return() -> None:
    assert validate_query(" back\tpain\r\nafter miscarriage\n") == "back\tpain\r\nafter miscarriage"


@pytest.fixture(scope="module")
def app(tiny_index_dir: Path) -> Iterator[TestClient]:
    """The app on the tiny index with the fake embedder and default limits."""
    settings = tiny_settings(tiny_index_dir)
    with TestClient(create_app(settings, engine=tiny_engine(tiny_index_dir))) as client:
        yield client


@pytest.fixture(scope="module")
def live(tiny_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server (uvicorn, a socket) on the tiny index with the fake embedder."""
    tmp = tmp_path_factory.mktemp("server")
    env = {
        "MEDCITE_INDEX_DIR": str(tiny_index_dir),
        "MEDCITE_CACHE_DIR": str(tmp / "cache"),
        "MEDCITE_MODEL": TINY_MODEL,
        "MEDCITE_ABSTAIN": "false",
    }
    with serve(env, tmp / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def real_model_app(seed_index_dir: Path, seed_engine: Any) -> Iterator[TestClient]:
    """The app on the bundled corpus with the real default model."""
    settings = Settings(index_dir=seed_index_dir, cache_dir=cache_dir())
    with TestClient(create_app(settings, engine=seed_engine)) as client:
        yield client


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_a_huge_body_gets_413(app: TestClient) -> None:
    query = "back pain " * 100_000  # about 1 MB
    r = app.post("/search", json={"query": query})
    assert error_of(r, 413)["code"] == "payload_too_large"
    batch = {"queries": [{"query": "back pain"}] * 5000}
    r = app.post("/search/batch", json=batch)
    assert error_of(r, 413)["code"] == "payload_too_large"


def test_a_huge_chunked_body_without_length_gets_413(live: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    r = httpx.post(
        f"{live}/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert "content-length" not in r.request.headers
    assert error_of(r, 413)["code"] == "payload_too_large"


def test_a_body_under_the_limit_still_works_chunked(live: str) -> None:
    payload = json.dumps({"query": "back pain after miscarriage", "k": 2}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 7):
            yield payload[i : i + 7]

    r = httpx.post(
        f"{live}/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["answerable"] and len(r.json()["passages"]) == 2


@pytest.mark.parametrize("bad", ["back pain\x00", "\x1b[2Jback pain", "流产\x07后腰疼", "a\x7fb"])
def test_control_characters_get_422(app: TestClient, bad: str) -> None:
    r = app.post("/search", json={"query": bad})
    assert error_of(r, 422)["code"] == "invalid_query"
    r = app.post("/search/batch", json={"queries": [{"query": bad}]})
    error = error_of(r, 422)
    assert error["code"] == "invalid_query" and "queries[0]" in error["message"]
    r = app.get("/terms", params={"q": bad})
    assert error_of(r, 422)["code"] == "invalid_query"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "lang"),
    [
        ("😀😀😀", "en"),
        ("🤰🩸🚑", "en"),
        ("?!?!...", "en"),
        ("？？？！！！。。。", "en"),
        ("———", "en"),
        ("流产 after miscarriage 腰疼 back pain", "en"),  # mixed: the detector says English
        ("Что делать при боли в спине?", "en"),
        ("腰疼 😭😭", "zh"),
        ("back\tpain\nafter\r\nmiscarriage", "en"),
    ],
)
def test_odd_but_valid_queries_get_200_with_a_disclaimer(
    real_model_app: TestClient, query: str, lang: str
) -> None:
    r = real_model_app.post("/search", json={"query": query})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == lang
    assert body["disclaimer"] == DISCLAIMERS[lang]
    assert body["answerable"] == bool(body["passages"])
    assert real_model_app.get("/terms", params={"q": query}).status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"query": "back pain"}', "text/plain"),
        (b"query=back+pain", "application/x-www-form-urlencoded"),
        (b"back pain", "application/octet-stream"),
        (b'{"query": "back pain"}', None),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'>\xff\xfe\x80{"query": 1}', "application/json"),  # not UTF-8 (was a 400)
        (b"[1, 2, 3]", "application/json"),
        (b"", "application/json"),
    ],
)
def test_wrong_content_type_or_body_gets_the_error_shape(
    app: TestClient, content: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = app.post("/search", content=content, headers=headers)
    assert r.status_code in {415, 422}, r.text
    assert error_of(r, r.status_code)["code"] in {"invalid_request", "unsupported_media_type"}


def test_wrong_method_and_unknown_path_get_the_error_shape(app: TestClient) -> None:
    r = app.get("/search")
    assert error_of(r, 405)["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    r = app.delete("/search/batch")
    assert error_of(r, 405)["code"] == "method_not_allowed"
    for path in ["/nope", "/search/nope", "/static/nope.js", "/documents/no-such-doc.txt"]:
        r = app.get(path)
        assert error_of(r, 404)["code"] == "not_found", path
