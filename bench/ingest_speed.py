"""Ingest throughput vs. the raw embedder, side by side in one run (no embedding cache).

    python bench/ingest_speed.py [PATH ...]   (default: the bundled corpus/)

Prints passages/s of (a) the embedder alone on the chunk texts, (b) the whole ingest
(read, clean, chunk, embed passages and sentences, BM25, FAISS, atomic write), (c) the whole
ingest without sentence windows (MEDCITE_SENTENCE_WINDOWS=false), and their ratios.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from medcite.index.build import build_index, passage_text
    from medcite.index.embed import load_embedder, set_threads
    from medcite.ingest import chunk_documents, load
    from medcite.service.settings import Settings

    paths = [Path(p) for p in sys.argv[1:]] or [REPO / "corpus"]
    settings = Settings()
    set_threads(os.cpu_count() or 1)
    embedder = load_embedder(settings.model, cache_dir=settings.cache_dir)
    t0 = time.perf_counter()
    loaded = load(paths)
    chunks = chunk_documents(loaded, settings.chunking())
    t_chunk = time.perf_counter() - t0
    docs = {d.doc_id: d for d in loaded.documents}
    texts = [passage_text(c, docs[c.doc_id]) for c in chunks]
    embedder.embed(texts[:4], kind="passage")  # warm-up
    t0 = time.perf_counter()
    embedder.embed(texts, kind="passage")
    t_raw = time.perf_counter() - t0
    seconds = {}
    for windows in (True, False):
        build = dataclasses.replace(settings.build(), sentence_windows=windows)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = build_index(loaded, embedder, index_dir=Path(tmp), settings=build, cache=None)
            seconds[windows] = time.perf_counter() - t0 + t_chunk  # build re-chunks
            if windows:
                sentences = report.sentences
    n = len(texts)
    print(f"passages: {n} from {len(loaded.documents)} documents ({report.files} files)")
    print(f"sentences: {sentences} ({report.embedded} texts embedded without windows)")
    print(f"load + clean + chunk: {t_chunk:.2f} s ({n / t_chunk:.0f} passages/s)")
    print(f"raw embedder:         {n / t_raw:.1f} passages/s")
    print(f"whole ingest, sentence windows:    {n / seconds[True]:.1f} passages/s")
    print(f"whole ingest, no sentence windows: {n / seconds[False]:.1f} passages/s")
    ratio = (t_raw / seconds[True], t_raw / seconds[False])
    print(f"ingest / raw: {ratio[0]:.2f} with windows, {ratio[1]:.2f} without")
    print(f"time with windows / without: {seconds[True] / seconds[False]:.2f}")


if __name__ == "__main__":
    main()
