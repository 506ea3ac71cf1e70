"""Hostile or odd input through a real ``medcite serve``: always the error shape, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import cache_dir, serve

from index.errors import ControlCharacters
from index.search import validate_query
from service.disclaimer import DISCLAIMERS

MAX_BODY = 64 * 1024


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x0b", "\x1f"])
def test_validate_query_refuses_control_characters(bad: str) -> None:
    with pytest.raises(ControlCharacters, match="control character"):
        validate_query(f"back {bad}pain")


def test_validate_query_keeps_tab_newline_and_carriage_return() -> None:
    assert validate_query(" back\tpain\r\nafter miscarriage\n") == "back\tpain\r\nafter miscarriage"


@pytest.fixture(scope="module")
def server(seed_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"MEDCITE_INDEX_DIR": str(seed_index_dir), "MEDCITE_CACHE_DIR": str(cache_dir())}
    with serve(env, tmp_path_factory.mktemp("server") / "server.log") as base:
        yield base


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.slow
def test_a_huge_body_gets_413(server: str) -> None:
    query = "back pain " * 100_000  # about 1 MB
    r = httpx.post(f"{server}/search", json={"query": query}, timeout=60)
    assert error_of(r, 413)["code"] == "payload_too_large"
    batch = {"queries": [{"query": "back pain"}] * 5000}
    r = httpx.post(f"{server}/search/batch", json=batch, timeout=60)
    assert error_of(r, 413)["code"] == "payload_too_large"


@pytest.mark.slow
def test_a_huge_chunked_body_without_length_gets_413(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    r = httpx.post(
        f"{server}/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert "content-length" not in r.request.headers
    assert error_of(r, 413)["code"] == "payload_too_large"


@pytest.mark.slow
def test_a_body_under_the_limit_still_works_chunked(server: str) -> None:
    payload = json.dumps({"query": "back pain after miscarriage", "k": 2}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 7):
            yield payload[i : i + 7]

    r = httpx.post(
        f"{server}/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["answerable"] and len(r.json()["passages"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["back pain\x00", "\x1b[2Jback pain", "流产\x07后腰疼", "a\x7fb"])
def test_control_characters_get_422(server: str, bad: str) -> None:
    r = httpx.post(f"{server}/search", json={"query": bad}, timeout=60)
    assert error_of(r, 422)["code"] == "invalid_query"
    r = httpx.post(f"{server}/search/batch", json={"queries": [{"query": bad}]}, timeout=60)
    error = error_of(r, 422)
    assert error["code"] == "invalid_query" and "queries[0]" in error["message"]
    r = httpx.get(f"{server}/terms", params={"q": bad}, timeout=60)
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
        ("流产 after miscarriage 腰疼 back pain", None),  # either language; it must agree
        ("Что делать при боли в спине?", "en"),
        ("腰疼 😭😭", "zh"),
        ("back\tpain\nafter\r\nmiscarriage", "en"),
    ],
)
def test_odd_but_valid_queries_get_200_with_a_disclaimer(
    server: str, query: str, lang: str | None
) -> None:
    r = httpx.post(f"{server}/search", json={"query": query}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == (lang or body["language"])
    assert body["disclaimer"] == DISCLAIMERS[body["language"]]
    assert body["answerable"] == bool(body["passages"])
    assert httpx.get(f"{server}/terms", params={"q": query}, timeout=60).status_code == 200


@pytest.mark.slow
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
    server: str, content: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(f"{server}/search", content=content, headers=headers, timeout=60)
    assert r.status_code in {415, 422}, r.text
    assert error_of(r, r.status_code)["code"] in {"invalid_request", "unsupported_media_type"}


@pytest.mark.slow
def test_wrong_method_and_unknown_path_get_the_error_shape(server: str) -> None:
    r = httpx.get(f"{server}/search", timeout=60)
    assert error_of(r, 405)["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    r = httpx.delete(f"{server}/search/batch", timeout=60)
    assert error_of(r, 405)["code"] == "method_not_allowed"
    for path in ["/nope", "/search/nope", "/static/nope.js", "/documents/no-such-doc.txt"]:
        r = httpx.get(f"{server}{path}", timeout=60)
        assert error_of(r, 404)["code"] == "not_found", path
