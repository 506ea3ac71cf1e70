"""ONNX Runtime vs torch for the default model, side by side in one run.

    python bench/runtime.py [--rounds 10] [--corpus PATH]

1. ``/search`` through two real servers on the same index, one per runtime
   (MEDCITE_RUNTIME=onnx / torch), questions sent to them alternately: p50/p95 and the ratio.
2. Ingest of ``--corpus`` (default: the bundled corpus/) with no embedding cache, once per
   runtime in a fresh process with the same threads: passages per CPU-second, wall seconds,
   and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import QUESTIONS, pct, served

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent

INGEST = """
import json, os, resource, sys, time
from pathlib import Path
from medcite.index.build import build_index
from medcite.index.embed import load_embedder, set_threads
from medcite.ingest import load
from medcite.service.settings import Settings
set_threads(int(sys.argv[4]))
settings = Settings(index_dir=Path(sys.argv[2]), runtime=sys.argv[3])
embedder = load_embedder(settings.model, cache_dir=settings.cache_dir, runtime=settings.runtime)
loaded = load([Path(sys.argv[1])])
c0, t0 = time.process_time(), time.perf_counter()
report = build_index(loaded, embedder, index_dir=settings.index_dir, settings=settings.build(),
                     cache=None)
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"passages": report.chunks, "sentences": report.sentences, "cpu": cpu,
                  "wall": wall, "maxrss_mb": peak}))
"""


def ingest(corpus: Path, runtime: str, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", INGEST, str(corpus), tmp, runtime, str(threads)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            cwd=REPO,
        )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base_env = {
            **os.environ,
            "MEDCITE_INDEX_DIR": str(Path(tmp) / "index"),
            "MEDCITE_CORPUS_DIR": str(REPO / "corpus"),
            "MEDCITE_RATE_LIMIT_PER_MINUTE": "0",
        }
        # The first server builds the index; the second serves the same one.
        with (
            served({**base_env, "MEDCITE_RUNTIME": "onnx"}, Path(tmp) / "onnx.log") as (
                onnx_url,
                onnx_ready,
            ),
            served({**base_env, "MEDCITE_RUNTIME": "torch"}, Path(tmp) / "torch.log") as (
                torch_url,
                torch_ready,
            ),
        ):
            ms: dict[str, list[float]] = {"onnx": [], "torch": []}
            with httpx.Client(timeout=60) as c:
                for url in (onnx_url, torch_url):  # warm up
                    for q in QUESTIONS[:3]:
                        c.post(f"{url}/search", json={"query": q}).raise_for_status()
                for _ in range(args.rounds):
                    for q in QUESTIONS:
                        for name, url in (("onnx", onnx_url), ("torch", torch_url)):
                            t0 = time.perf_counter()
                            c.post(f"{url}/search", json={"query": q}).raise_for_status()
                            ms[name].append((time.perf_counter() - t0) * 1000)
    p50 = {k: statistics.median(v) for k, v in ms.items()}
    for name in ("torch", "onnx"):
        print(
            f"/search {name:>5}: p50 {p50[name]:.1f} ms, p95 {pct(ms[name], 95):.1f} ms "
            f"({len(ms[name])} requests)"
        )
    print(f"/search p50 onnx / torch: {p50['onnx'] / p50['torch']:.2f}")
    print(f"server start to ready: onnx {onnx_ready:.1f} s, torch {torch_ready:.1f} s")

    runs = {name: ingest(args.corpus, name, args.threads) for name in ("torch", "onnx")}
    for name, r in runs.items():
        print(
            f"ingest {name:>5}: {r['passages']} passages + {r['sentences']} sentences, "
            f"{r['passages'] / r['cpu']:.2f} passages/CPU-s, {r['wall']:.1f} s wall, "
            f"peak RSS {r['maxrss_mb']:.0f} MB"
        )
    speed = {k: r["passages"] / r["cpu"] for k, r in runs.items()}
    print(f"ingest passages per CPU-second onnx / torch: {speed['onnx'] / speed['torch']:.2f}")


if __name__ == "__main__":
    main()
