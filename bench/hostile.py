"""Hostile load against a real `medcite serve` on loopback (issue 11's figures).

    python bench/hostile.py [--idle 5000] [--slow 300] [--batches 4]

Indexes the bundled corpus/ with the default model into a temporary folder, starts a server
with default settings (but no per-client rate limit: every client is loopback) and reports,
in one run:

1. hostile requests: lone surrogates, broken JSON, huge and aborted bodies, control
   characters, odd methods and paths, refused CORS preflights: statuses, and the 5xx count
   (responses and the server's own /metrics);
2. idle sockets: ``--idle`` connections that send nothing; /healthz p50/p99 meanwhile and how
   many the server still holds;
3. slow headers (slowloris): ``--slow`` connections sending a header byte each second;
4. batch vs single fairness: single-search p50/p99 alone, then while ``--batches`` batches of
   256 x 200-character questions at k=50 run, each batch from its own loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common import QUESTIONS, pct, served

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def hostile_requests(base: str) -> Counter[str]:
    import httpx

    statuses: Counter[str] = Counter()
    json_h = {"Content-Type": "application/json"}
    bodies = [
        b'{"query": "\\ud800"}',
        b'{"query": "back \xed\xa0\x80 pain"}',
        b'{"query": "\xff\xfe"}',
        b'{"query": "back\\u0000pain"}',
        b'{"query": ""}',
        b'{"query": 5}',
        b'{"query": "x", "k": 0}',
        b'{"query": "x", "k": 51}',
        b'{"query": "x", "language": "fr"}',
        b'{"query": "x", "extra": 1}',
        b"{" * 5000,
        b"[" * 5000 + b"]" * 5000,
        b"null",
        b"not json",
        b'{"query": "' + b"a" * 70_000 + b'"}',
        b'{"queries": [{"query": "ok"}, {"query": "\\udc00"}]}',
        b'{"queries": []}',
    ]
    with httpx.Client(timeout=30) as c:
        for _ in range(5):
            for body in bodies:
                for path in ("/search", "/search/batch"):
                    r = c.post(f"{base}{path}", content=body, headers=json_h)
                    statuses[str(r.status_code)] += 1
            for method, path in [
                ("GET", "/search"),
                ("PUT", "/search"),
                ("GET", "/documents/..%2f..%2fetc%2fpasswd"),
                ("GET", "/documents/a%0Ab"),
                ("GET", "/terms?q=%ED%A0%80"),
                ("GET", "/static/../service/app.py"),
                ("GET", "/admin/reload"),
                ("DELETE", "/admin/documents/x"),
            ]:
                statuses[str(c.request(method, f"{base}{path}").status_code)] += 1
            r = c.options(
                f"{base}/search",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
            )
            statuses[str(r.status_code)] += 1
    host, port = base.removeprefix("http://").split(":")
    for _ in range(10):  # aborted bodies
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
    return statuses


def server_5xx(base: str) -> int:
    import httpx

    total = 0
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("medcite_requests_total") and 'status="5' in line:
            if 'status="503"' in line:  # overload refusals are by design
                continue
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def healthz_latencies(base: str, n: int = 200) -> tuple[list[float], int]:
    import httpx

    ms: list[float] = []
    failed = 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            httpx.get(f"{base}/healthz", timeout=5).raise_for_status()
            ms.append((time.perf_counter() - t0) * 1000)
        except httpx.HTTPError:
            failed += 1
    return ms, failed


def still_open(socks: list[socket.socket]) -> int:
    alive = 0
    for s in socks:
        s.settimeout(0.001)
        try:
            alive += s.recv(1) != b""
        except TimeoutError:
            alive += 1
        except OSError:
            pass
    return alive


def idle_sockets(base: str, n: int) -> None:
    host, port = base.removeprefix("http://").split(":")
    socks = []
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            break
    opened = time.perf_counter() - t0
    ms, failed = healthz_latencies(base)
    print(
        f"idle sockets: {len(socks)} opened in {opened:.1f}s; /healthz p50 "
        f"{statistics.median(ms) if ms else float('nan'):.1f} ms p99 "
        f"{pct(ms, 99) if ms else float('nan'):.1f} ms, {failed} failed; "
        f"still open after that: {still_open(socks)}"
    )
    time.sleep(12)
    print(f"   after 12 more seconds: {still_open(socks)} still open")
    for s in socks:
        s.close()


def slow_headers(base: str, n: int) -> None:
    host, port = base.removeprefix("http://").split(":")
    socks = [socket.create_connection((host, int(port))) for _ in range(n)]
    line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    stop = threading.Event()

    def trickle() -> None:
        i = 0
        while not stop.is_set() and i < len(line):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.send(line[i : i + 1])
            i += 1
            stop.wait(1.0)

    t = threading.Thread(target=trickle)
    t.start()
    ms, failed = healthz_latencies(base)
    time.sleep(max(0.0, 13 - len(ms) * 0.005))
    alive = still_open(socks)
    stop.set()
    t.join()
    print(
        f"slow headers: {n} sockets, a byte per second; /healthz p50 "
        f"{statistics.median(ms):.1f} ms p99 {pct(ms, 99):.1f} ms, {failed} failed; "
        f"still open after 13 s: {alive}"
    )
    for s in socks:
        s.close()


async def fairness(base: str, batches: int) -> None:
    import httpx

    english = [q for q in QUESTIONS if q.isascii()]  # 256 x 200 bytes fits the 64 KiB body
    long_q = [(q + " ") * (200 // len(q) + 1) for q in english]
    batch = {"queries": [{"query": long_q[i % len(long_q)][:200], "k": 50} for i in range(256)]}

    async def singles(seconds: float) -> tuple[list[float], Counter[str]]:
        ms: list[float] = []
        codes: Counter[str] = Counter()
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.50")
        async with httpx.AsyncClient(transport=transport, timeout=60) as c:
            stop_at = time.monotonic() + seconds
            i = 0
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = await c.post(f"{base}/search", json={"query": QUESTIONS[i % 10], "k": 5})
                codes[str(r.status_code)] += 1
                if r.status_code == 200:
                    ms.append((time.perf_counter() - t0) * 1000)
                i += 1
                await asyncio.sleep(0.2)
        return ms, codes

    async def one_batch(n: int) -> tuple[int, float]:
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{60 + n}")
        async with httpx.AsyncClient(transport=transport, timeout=600) as c:
            t0 = time.perf_counter()
            r = await c.post(f"{base}/search/batch", json=batch)
            return r.status_code, time.perf_counter() - t0

    alone, codes = await singles(15)
    print(
        f"single search alone: p50 {statistics.median(alone):.1f} ms p99 {pct(alone, 99):.1f} ms"
        f" {dict(codes)}"
    )
    tasks = [asyncio.create_task(one_batch(n)) for n in range(batches)]
    await asyncio.sleep(0.5)
    during, codes = await singles(30)
    done = [await t for t in tasks]
    print(
        f"single search during {batches} batches (256 x 200 chars, k=50): p50 "
        f"{statistics.median(during):.1f} ms p99 {pct(during, 99):.1f} ms {dict(codes)}; "
        "batches: " + ", ".join(f"{code} in {sec:.1f}s" for code, sec in done)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "MEDCITE_INDEX_DIR": str(Path(tmp) / "index"),
            "MEDCITE_CORPUS_DIR": str(REPO / "corpus"),
            # Every client here is loopback: with the per-client limit on, most hostile
            # requests would be 429s before they reach validation.
            "MEDCITE_RATE_LIMIT_PER_MINUTE": "0",
        }
        with served(env, Path(tmp) / "server.log", timeout=None) as (base, ready):
            print(f"server ready in {ready:.1f}s at {base}")
            statuses = hostile_requests(base)
            sent = sum(statuses.values())
            fives = sum(v for k, v in statuses.items() if k.startswith("5"))
            print(
                f"hostile requests: {sent} sent (+10 aborted bodies), statuses "
                f"{dict(sorted(statuses.items()))}; 5xx responses {fives}, 5xx in /metrics "
                f"(503 overload excluded) {server_5xx(base)}"
            )
            idle_sockets(base, args.idle)
            slow_headers(base, args.slow)
            asyncio.run(fairness(base, args.batches))


if __name__ == "__main__":
    main()
