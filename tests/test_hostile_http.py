"""The HTTP breaks an operator found (issue 11): lone surrogates, idle and slow sockets,
aborted bodies, batch amplification, forwarded headers, CORS refusals, static headers.

Socket-level attacks run against a real ``medcite serve`` on loopback (hashing embedder, so
it starts in a second) with short timeouts; admission logic is also driven directly through
its ASGI middleware.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send
from support import TINY_MODEL, serve
from support import write_tiny_corpus as write_corpus
from test_ops import client, gate, index_dir  # noqa: F401 (fixture)

from medcite.index.errors import LoneSurrogate
from medcite.index.search import validate_query
from medcite.service.errors import error_response
from medcite.service.middleware import RequestContext, TokenBuckets, batch_cost
from medcite.service.ops import Metrics
from medcite.service.server import EveryFewSeconds, ServerLimits, server_config

QUESTION = "back pain after miscarriage"


# -- 1. lone surrogates -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\ud800", "back \udfff pain", "\udbff"])
def test_validate_query_refuses_lone_surrogates(bad: str) -> None:
    with pytest.raises(LoneSurrogate, match="lone surrogate"):
        validate_query(bad)


def test_a_surrogate_pair_is_a_character_not_a_lone_surrogate() -> None:
    assert validate_query(json.loads('"back pain \\ud83d\\ude00"')) == "back pain \U0001f600"


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hostile")
    env = {
        "MEDCITE_MODEL": TINY_MODEL,
        "MEDCITE_ABSTAIN": "false",
        "MEDCITE_INDEX_DIR": str(root / "index"),
        "MEDCITE_CACHE_DIR": str(root / "cache"),
        "MEDCITE_CORPUS_DIR": str(write_corpus(root / "corpus")),
        "MEDCITE_HEADER_TIMEOUT": "1",
        "MEDCITE_BODY_TIMEOUT": "1.5",
        "MEDCITE_KEEP_ALIVE_TIMEOUT": "1",
        "MEDCITE_MAX_CONNECTIONS": "40",
        "MEDCITE_RATE_LIMIT_PER_MINUTE": "1",
        "MEDCITE_RATE_LIMIT_BURST": "30",
    }
    with serve(env, root / "server.log") as base:
        yield base


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "\\ud800"}',  # JSON escape
        b'{"query": "back \xed\xa0\x80 pain"}',  # raw CESU bytes of U+D800
        b'{"queries": [{"query": "ok"}, {"query": "\\udc00"}]}',
    ],
)
def test_a_lone_surrogate_is_a_422_that_keeps_the_request_id(live: str, body: bytes) -> None:
    path = "/search/batch" if b"queries" in body else "/search"
    r = httpx.post(
        f"{live}{path}",
        content=body,
        headers={"Content-Type": "application/json", "X-Request-ID": "surrogate-1"},
    )
    error = error_of(r, 422)
    assert "surrogate" in error["message"]
    assert r.headers["x-request-id"] == "surrogate-1"
    if path == "/search/batch":
        assert error["message"].startswith("queries[1]")


def test_an_unexpected_error_is_a_500_in_the_error_shape_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise TypeError("boom")

    app = RequestContext(broken, Metrics(), error=error_response)

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/search", json={}, headers={"X-Request-ID": "abc-123"})

    with caplog.at_level(logging.ERROR, logger="medcite.errors"):
        r = asyncio.run(scenario())
    assert error_of(r, 500)["code"] == "internal_error"
    assert r.headers["x-request-id"] == "abc-123"
    assert "boom" not in r.text
    [record] = [rec for rec in caplog.records if rec.name == "medcite.errors"]
    assert record.exc_info is not None


# -- 2. idle and slow sockets -------------------------------------------------------------


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """True when the server closes ``sock`` within ``seconds`` (sending ``trickle`` one byte
    every 0.2 s meanwhile)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(trickle):
                sock.send(trickle[sent : sent + 1])
                sent += 1
            data = sock.recv(4096)
            if data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 4"):
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def read_all(sock: socket.socket, timeout: float = 8) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def test_an_idle_socket_is_closed_after_the_header_timeout(live: str) -> None:
    with connect(live) as sock:
        assert closed_within(sock, 6)


def test_headers_sent_a_byte_at_a_time_do_not_extend_the_deadline(live: str) -> None:
    slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with connect(live) as sock:
        assert closed_within(sock, 6, trickle=slow)  # 40 s to send it all


POST = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    "request_start",
    [
        POST + b'Content-Length: 100\r\n\r\n{"query": ',  # a body that never completes
        POST + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFF\r\n{",  # a huge chunk, trickled
    ],
    ids=["slow-body", "huge-chunk"],
)
def test_a_body_that_does_not_arrive_in_time_gets_a_408(live: str, request_start: bytes) -> None:
    with connect(live) as sock:
        sock.sendall(request_start)
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"request_timeout" in reply and b"x-request-id" in reply.lower()


def test_idle_sockets_beyond_the_limit_do_not_starve_real_clients(live: str) -> None:
    idle = [connect(live) for _ in range(120)]  # three times MEDCITE_MAX_CONNECTIONS
    try:
        for _ in range(5):
            assert httpx.get(f"{live}/healthz", timeout=5).status_code == 200
        closed = 0
        for sock in idle:
            sock.settimeout(0.01)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 120 - 40  # the oldest idle ones were closed to make room
    finally:
        for sock in idle:
            sock.close()


# -- 3. an aborted body is the client's doing, not a 500 -------------------------------------


def test_a_client_that_aborts_its_body_is_counted_as_499_not_500(live: str) -> None:
    head = (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    for _ in range(3):
        with connect(live) as sock:
            sock.sendall(head + b'{"query": "back')
            time.sleep(0.1)
    time.sleep(0.3)
    metrics = httpx.get(f"{live}/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("medcite_requests_total")]
    assert not [line for line in lines if 'status="500"' in line], lines
    assert any('status="499"' in line for line in lines), lines


# -- 4. batch amplification ---------------------------------------------------------------


def test_a_batch_costs_its_queries_and_k() -> None:
    body = json.dumps({"queries": [{"query": "q", "k": 50}] * 252 + [{"query": "q"}] * 4})
    assert batch_cost(body.encode()) == 252 * 5 + 4
    assert batch_cost(b"not json") == 1
    assert batch_cost(b'{"queries": [{"k": true}, {"k": "9"}, 3]}') == 3
    assert batch_cost(b"[" * 100_000) == 1
    assert batch_cost(json.dumps({"queries": [{"k": 50}] * 257}).encode()) == 1  # a 422


def test_a_large_batch_leaves_the_bucket_in_debt() -> None:
    buckets = TokenBuckets(per_minute=60, burst=10)
    assert buckets.take("a", now=0.0, cost=100) == 0  # admitted on a full bucket...
    assert buckets.take("a", now=1.0) == pytest.approx(90)  # ...then paid for: 90 s to wait
    assert buckets.take("b", now=1.0) == 0


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 is loopback),
    so it has a rate-limit bucket of its own."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_a_batch_is_charged_by_its_queries_on_a_real_server(live: str) -> None:
    batch = {"queries": [{"query": f"{QUESTION} {i}", "k": 1} for i in range(40)]}
    with from_address("127.0.0.2") as c:
        r = c.post(f"{live}/search/batch", json=batch)
        assert r.status_code == 200, r.text  # the burst of 30 admits it and goes into debt
        follow = c.post(f"{live}/search", json={"query": QUESTION})
    assert error_of(follow, 429)["code"] == "rate_limited"
    assert int(follow.headers["retry-after"]) >= 60  # 11 tokens short at 1 per minute


def test_batches_cannot_take_every_slot_from_single_searches() -> None:
    guard, release, entered = gate(max_concurrent=4, max_wait=0.3, max_batch_slots=3)

    async def scenario() -> tuple[list[int], int]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            batch = {"queries": [{"query": "q", "k": 50}] * 256}
            batches = [asyncio.create_task(c.post("/search/batch", json=batch)) for _ in range(4)]
            while entered["/search/batch"] < 3:
                await asyncio.sleep(0.01)
            single = asyncio.create_task(c.post("/search", json={"query": "q"}))
            while entered["/search"] < 1:
                await asyncio.sleep(0.01)  # admitted while three batches run
            await asyncio.sleep(0.4)  # the fourth batch has waited its 0.3 s
            release.set()
            return [(await b).status_code for b in batches], (await single).status_code

    batch_codes, single_code = asyncio.run(scenario())
    assert single_code == 200
    assert sorted(batch_codes) == [200, 200, 200, 503]


def test_requests_over_the_queue_length_are_shed_at_once() -> None:
    guard, release, entered = gate(max_concurrent=1, max_wait=60, max_queue=1)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/search", json={}))
            while entered["/search"] == 0:
                await asyncio.sleep(0.01)
            queued = asyncio.create_task(c.post("/search", json={}))  # waits (queue: 1)
            await asyncio.sleep(0.05)
            shed = await asyncio.wait_for(c.post("/search", json={}), timeout=10)
            release.set()
            return [await first, await queued, shed]

    first, queued, shed = asyncio.run(scenario())
    assert first.status_code == 200 and queued.status_code == 200
    assert error_of(shed, 503)["code"] == "overloaded" and shed.headers["retry-after"] == "1"


# -- 11. forwarded headers ----------------------------------------------------------------


def test_x_forwarded_for_from_loopback_does_not_bypass_the_rate_limit(live: str) -> None:
    with from_address("127.0.0.3") as c:
        codes = [
            c.post(
                f"{live}/search",
                json={"query": QUESTION, "k": 1},
                headers={"X-Forwarded-For": f"10.0.{i // 250}.{i % 250}"},
            ).status_code
            for i in range(45)
        ]
    assert 429 in codes  # one bucket for the one peer, whatever it claims to forward for


def test_forwarded_headers_are_trusted_only_from_configured_proxies() -> None:
    closed = server_config(object(), host="127.0.0.1", port=1, limits=ServerLimits())
    assert closed.proxy_headers is False
    trusted = server_config(
        object(),
        host="127.0.0.1",
        port=1,
        limits=ServerLimits(forwarded_allow_ips=("10.1.2.3",)),
    )
    assert trusted.proxy_headers is True and trusted.forwarded_allow_ips == ["10.1.2.3"]


def test_serve_exposes_the_forwarded_allow_ips_option() -> None:
    from click.testing import CliRunner

    from medcite.service.cli import main

    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--forwarded-allow-ips" in help_text


def test_accept_errors_are_logged_once_per_interval_with_a_count() -> None:
    noisy = logging.getLogger("test.accept")
    noisy.addFilter(EveryFewSeconds(seconds=60))
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    noisy.addHandler(Keep())
    noisy.propagate = False
    for _ in range(1000):
        noisy.error("socket.accept() out of system resource")
    assert len(records) == 1


# -- 12. CORS refusals and static headers -------------------------------------------------


def test_a_refused_preflight_gets_the_error_shape_and_a_request_id(index_dir: Path) -> None:  # noqa: F811
    with client(index_dir, cors_origins=["https://support.example"]) as c:
        r = c.options(
            "/search",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert error_of(r, 400)["code"] == "cors_refused"
    assert r.headers["x-request-id"]
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("path", ["/", "/static/index.html", "/static/app.js"])
def test_the_page_and_its_files_carry_the_csp_and_nosniff(index_dir: Path, path: str) -> None:  # noqa: F811
    with client(index_dir) as c:
        r = c.get(path)
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_api_responses_carry_nosniff(index_dir: Path) -> None:  # noqa: F811
    with client(index_dir) as c:
        r = c.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_not_ready_message_names_no_absolute_path(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medcite.service.app import create_app
    from medcite.service.settings import Settings

    settings = Settings(index_dir=tmp_path / "empty", cache_dir=tmp_path, model="hashing-32")
    with TestClient(create_app(settings)) as c:
        r = c.post("/search", json={"query": QUESTION})
    assert error_of(r, 503)["code"] == "not_ready"
    assert str(tmp_path) not in r.text and "$MEDCITE_INDEX_DIR" in r.text
