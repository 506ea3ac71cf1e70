"""Load: N concurrent clients for D seconds against a real `medcite serve` on loopback.

    python bench/load.py [--clients 50] [--duration 60] [--url http://127.0.0.1:8000]

Without --url it indexes the bundled corpus/ into a temporary folder and starts a server
with the default model and settings, except the per-client rate limit, which is turned off
(every client here shares 127.0.0.1: with it on, nearly all requests would be 429s). The
search concurrency bound stays at its default, so overload shows as 503 + Retry-After.
Each client sends questions one after another (a mix of Chinese, English and off-topic);
the report gives requests, statuses, transport errors, p50/p99 latency and throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import QUESTIONS, pct, served

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


async def client(
    base: str, stop_at: float, n: int, latencies: list[float], statuses: Counter[str]
) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=30) as c:
        i = n
        while time.monotonic() < stop_at:
            q = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = await c.post(f"{base}/search", json={"query": q, "k": 5})
                statuses[str(r.status_code)] += 1
                if r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)


async def run(base: str, clients: int, duration: float) -> None:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    stop_at = time.monotonic() + duration
    t0 = time.perf_counter()
    await asyncio.gather(*(client(base, stop_at, n, latencies, statuses) for n in range(clients)))
    took = time.perf_counter() - t0
    total = sum(statuses.values())
    errors = total - statuses["200"] - statuses["503"] - statuses["429"]
    print(f"{clients} clients for {took:.0f} s: {total} requests, {total / took:.1f}/s")
    print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print(f"errors (not 200/429/503): {errors}; 503 overloaded: {statuses['503']}")
    if latencies:
        print(
            f"latency of answered requests: p50 {statistics.median(latencies):.0f} ms, "
            f"p99 {pct(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
        )


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args.url, args.clients, args.duration))
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(
            os.environ,
            MEDCITE_INDEX_DIR=str(Path(tmp) / "index"),
            MEDCITE_CORPUS_DIR=str(REPO / "corpus"),
            MEDCITE_RATE_LIMIT_PER_MINUTE="0",
        )
        log = Path(tmp) / "server.log"
        with served(env, log, timeout=None) as (base, _):
            asyncio.run(run(base, args.clients, args.duration))
            text = httpx.get(f"{base}/metrics").text
        rejected = [x for x in text.splitlines() if x.startswith("medcite_rejected_total")]
        print("server counters: " + ("; ".join(rejected) or "no rejections"))
        print(f"tracebacks in the server log: {log.read_text().count('Traceback')}")


if __name__ == "__main__":
    main()
