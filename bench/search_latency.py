"""/search latency through a real server vs. its parts, measured side by side in one run.

    python bench/search_latency.py [--index-dir D] [--rounds N]

Starts `medcite serve` on loopback, sends the question list sequentially, and prints the
p50/p95 of the HTTP round trip next to the p50/p95 of query embedding alone and of the
index work alone (search minus embedding), measured in this process with one thread.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "why does my back hurt after a miscarriage",
    "流产后腰疼是什么原因",
    "back pain in pregnancy",
    "怀孕三个月腰疼怎么办",
    "how long does bleeding last after a miscarriage",
    "流产后腰酸肚子疼",
    "is relaxin the cause of joint pain",
    "how to brew chrysanthemum tea",
    "药物流产后腰疼",
    "what to do about lower back pain after an abortion",
]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    import httpx

    from index.embed import set_threads
    from index.search import search
    from service.engine import load_engine
    from service.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--index-dir", type=Path)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    settings = Settings(**({"index_dir": args.index_dir} if args.index_dir else {}))
    set_threads(1)
    engine = load_engine(settings)
    queries = QUESTIONS * args.rounds

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "medcite"
    env = dict(os.environ, MEDCITE_INDEX_DIR=str(settings.index_dir))
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        t_load = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        t_load = time.perf_counter() - t_load
        http: list[float] = []
        embed: list[float] = []
        index_only: list[float] = []
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
                search(engine.index, engine.embedder, q, settings=engine.settings, query_vector=qv)
                index_only.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait()
    print(f"server start to ready: {t_load:.1f} s; {len(queries)} sequential queries")
    print(f"{'':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in [
        ("POST /search (HTTP)", http),
        ("query embedding alone", embed),
        ("index work alone", index_only),
    ]:
        print(f"{name:<28} {statistics.median(values):>8.1f} {pct(values, 95):>8.1f}")
    overhead = statistics.median(http) / (statistics.median(embed) + statistics.median(index_only))
    print(f"HTTP p50 / (embed p50 + index p50): {overhead:.2f}")


if __name__ == "__main__":
    main()
