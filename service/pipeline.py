"""Building an index from articles: the one ingest that `medcite ingest`, `medcite serve`
(first start), `medcite eval` (its evaluation index) and `POST /admin/ingest` all run.

It lives apart from the CLI so that the app and the evaluation use it without importing
the command line (which imports the app).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcite.service.settings import Settings

if TYPE_CHECKING:
    from medcite.index.build import BuildReport
    from medcite.index.embed import Embedder
    from medcite.index.retrieve import Backend
    from medcite.index.tokenize import Tokenizer
    from medcite.ingest.types import Chunk, ChunkSettings, LoadResult


def _progress_bar(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(
                total=total, desc=label, unit="passage", file=sys.stderr, disable=None
            )
        bar["bar"].n = done
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def run_ingest(
    paths: list[Path],
    settings: Settings,
    *,
    quiet: bool = False,
    loaded: LoadResult | None = None,
    embedder: Embedder | None = None,
    backend: Backend | None = None,
    chunker: Callable[[LoadResult, ChunkSettings], list[Chunk]] | None = None,
    tokenizer: Tokenizer | None = None,
) -> BuildReport:
    """Load ``paths`` (unless ``loaded`` is given) and build the index in settings.index_dir.

    With the Milvus backend, each new version is also written to Milvus before it goes live
    (through ``backend`` when given, else one opened from the settings for this run).
    ``tokenizer`` (chunk sizes, BM25 tokens) is a new one for this build when not given."""
    from medcite.index.build import build_index
    from medcite.index.cache import EmbeddingCache
    from medcite.index.embed import load_embedder, set_threads
    from medcite.ingest import load

    set_threads(settings.threads if settings.threads > 1 else os.cpu_count() or 1)
    result = (
        loaded
        if loaded is not None
        else load(paths, follow_external_symlinks=settings.follow_external_symlinks)
    )
    if embedder is None:
        embedder = load_embedder(
            settings.model,
            cache_dir=settings.cache_dir,
            batch_size=settings.embed_batch_size,
            runtime=settings.runtime,
        )
    import sqlite3

    from medcite.index.errors import IndexWriteError

    cache_path = settings.cache_dir / "embeddings.sqlite"
    try:
        cache = EmbeddingCache(cache_path)
    except (OSError, sqlite3.Error) as exc:
        raise IndexWriteError(f"cannot open the embedding cache {cache_path}: {exc}") from exc
    update, close = _progress_bar("embedding")
    publish_update, publish_close = _progress_bar("milvus insert")
    own_backend = backend is None
    if backend is None:
        backend = settings.backend(progress=None if quiet else publish_update)
    try:
        report = build_index(
            result,
            embedder,
            index_dir=settings.index_dir,
            settings=settings.build(),
            cache=cache,
            progress=None if quiet else update,
            before_publish=backend.publish if backend is not None else None,
            chunker=chunker,
            tokenizer=tokenizer,
        )
    except sqlite3.Error as exc:  # the embedding cache, e.g. "database or disk is full"
        raise IndexWriteError(
            f"cannot write the embedding cache {cache_path}: {exc}; free some space (what "
            "is cached so far is kept), then run `medcite ingest` again"
        ) from exc
    finally:
        close()
        publish_close()
        cache.close()
        if own_backend and backend is not None:
            backend.close()
    return report
