"""Embedded backend vs. Milvus Lite on the same index, side by side in one run.

    python bench/backends.py --index-dir D [--queries Q.jsonl] [--limit N] [--rounds R]

Publishes the index's live version to a fresh Milvus Lite file (timed: chunks/s), then runs
each question through `index.search.search` on both backends with the same precomputed
query vector, alternating, and prints p50/p95 of the index work (search minus embedding),
plus how far the two agree: mean overlap of the top-10 chunk ids and the share of questions
with the same answerable flag.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import QUESTIONS, pct

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from medcite.index.cache import EmbeddingCache, embed_cached
    from medcite.index.embed import load_embedder, set_threads
    from medcite.index.lexicon import load_lexicon
    from medcite.index.milvus import MilvusBackend
    from medcite.index.search import search
    from medcite.index.store import current_version, load_index
    from medcite.service.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--queries", type=Path, help="BEIR queries.jsonl (default: a mix)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    settings = Settings(index_dir=args.index_dir)
    set_threads(1)
    questions = QUESTIONS
    if args.queries:
        lines = args.queries.read_text("utf-8").splitlines()
        questions = [json.loads(line)["text"] for line in lines if line.strip()][: args.limit]
    embedder = load_embedder(settings.model, cache_dir=settings.cache_dir)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    try:
        qvecs, _ = embed_cached(embedder, questions, kind="query", cache=cache)
    finally:
        cache.close()
    search_settings = settings.search(embedder.name)
    lexicon = load_lexicon(expand=search_settings.expand)
    embedded = load_index(args.index_dir)
    version = args.index_dir / str(current_version(args.index_dir))
    with tempfile.TemporaryDirectory() as tmp:
        backend = MilvusBackend(str(Path(tmp) / "milvus.db"))
        try:
            t0 = time.perf_counter()
            backend.publish(version)
            publish_s = time.perf_counter() - t0
            milvus = load_index(args.index_dir, backend=backend)
            times: dict[str, list[float]] = {"embedded": [], "milvus": []}
            overlap: list[float] = []
            same_answerable = 0
            for _ in range(args.rounds):
                for q, qv in zip(questions, qvecs, strict=True):
                    hits = {}
                    for name, index in (("embedded", embedded), ("milvus", milvus)):
                        t0 = time.perf_counter()
                        result = search(
                            index,
                            embedder,
                            q,
                            k=10,
                            settings=search_settings,
                            lexicon=lexicon,
                            query_vector=qv,
                        )
                        times[name].append((time.perf_counter() - t0) * 1000)
                        hits[name] = result
                    a = [h.chunk.chunk_id for h in hits["embedded"].hits]
                    b = [h.chunk.chunk_id for h in hits["milvus"].hits]
                    overlap.append(len(set(a) & set(b)) / max(len(a), len(b), 1))
                    same_answerable += hits["embedded"].answerable == hits["milvus"].answerable
        finally:
            backend.close()
    n = len(embedded.chunks)
    print(f"{n} chunks; publish to Milvus Lite {publish_s:.1f} s ({n / publish_s:.0f} chunks/s)")
    print(f"{len(overlap)} questions, index work only (query vectors precomputed)")
    print(f"{'backend':<10} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in times.items():
        print(f"{name:<10} {statistics.median(values):>8.1f} {pct(values, 95):>8.1f}")
    ratio = statistics.median(times["milvus"]) / statistics.median(times["embedded"])
    print(f"milvus / embedded p50: {ratio:.1f}x")
    print(
        f"top-10 overlap {statistics.mean(overlap):.3f}; same answerable flag "
        f"{same_answerable}/{len(overlap)}"
    )


if __name__ == "__main__":
    main()
