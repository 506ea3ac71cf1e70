"""/search latency through a real server vs. its parts, measured side by side in one run.

    python bench/search_latency.py [--index-dir D] [--rounds N] [--versus D2]

Starts `medcite serve` on loopback, sends the question list sequentially, and prints the
p50/p95 of the HTTP round trip next to the p50/p95 of query embedding alone and of the
index work alone (search minus embedding), measured in this process with one thread.
With --versus, the index work of a second index (e.g. the same corpus built with
MEDCITE_SENTENCE_WINDOWS=false) is timed on the same questions, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import QUESTIONS, pct, served

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import httpx

    from medcite.index.embed import set_threads
    from medcite.service.engine import load_engine
    from medcite.service.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--index-dir", type=Path)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--versus", type=Path, help="a second index to time the index work of")
    args = parser.parse_args()
    settings = Settings(**({"index_dir": args.index_dir} if args.index_dir else {}))
    set_threads(1)
    engine = load_engine(settings)
    other = (
        load_engine(settings.model_copy(update={"index_dir": args.versus})) if args.versus else None
    )
    queries = QUESTIONS * args.rounds

    with (
        tempfile.TemporaryDirectory() as tmp,
        served(
            # One client sends 110 questions in a few seconds: no per-client rate limit here.
            dict(
                os.environ,
                MEDCITE_INDEX_DIR=str(settings.index_dir),
                MEDCITE_RATE_LIMIT_PER_MINUTE="0",
            ),
            Path(tmp) / "server.log",
            timeout=None,
        ) as (base, t_load),
    ):
        http: list[float] = []
        embed: list[float] = []
        index_only: list[float] = []
        versus: list[float] = []
        with httpx.Client(timeout=30) as client:
            for q in QUESTIONS:  # warm-up
                client.post(f"{base}/search", json={"query": q})
            for q in queries:
                t0 = time.perf_counter()
                r = client.post(f"{base}/search", json={"query": q})
                http.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                t0 = time.perf_counter()
                qv = engine.embedder.embed([q], kind="query")[0]
                embed.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                engine.search(q, query_vector=qv)
                index_only.append((time.perf_counter() - t0) * 1000)
                if other is not None:
                    t0 = time.perf_counter()
                    other.search(q, query_vector=qv)
                    versus.append((time.perf_counter() - t0) * 1000)
    print(f"server start to ready: {t_load:.1f} s; {len(queries)} sequential queries")
    print(f"{'':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in [
        ("POST /search (HTTP)", http),
        ("query embedding alone", embed),
        ("index work alone", index_only),
        *([(f"index work, {args.versus.name}", versus)] if versus else []),
    ]:
        print(f"{name:<28} {statistics.median(values):>8.1f} {pct(values, 95):>8.1f}")
    overhead = statistics.median(http) / (statistics.median(embed) + statistics.median(index_only))
    print(f"HTTP p50 / (embed p50 + index p50): {overhead:.2f}")


if __name__ == "__main__":
    main()
