"""Shared fixtures: real parts on tiny real data.

The default model is built once per machine into the user cache (as the product does);
set MEDCITE_TEST_CACHE to use another folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support import CORPUS, build_tiny_index, cache_dir, shared_lexicon


@pytest.fixture(scope="session")
def lexicon():  # type: ignore[no-untyped-def]
    """The tokenizer and CC-CEDICT expander the tests' engines and searches share."""
    return shared_lexicon()


@pytest.fixture(scope="session")
def tokenizer(lexicon):  # type: ignore[no-untyped-def]
    return lexicon.tokenizer


@pytest.fixture(scope="session")
def seed_corpus() -> Path:
    return CORPUS


@pytest.fixture(scope="session")
def tiny_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny index (two short articles, the fake ``HashingEmbedder(64)``): see
    ``support.build_tiny_index``. Shared by the whole session: read it, do not change it."""
    return build_tiny_index(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def default_embedder():  # type: ignore[no-untyped-def]
    from medcite.index.embed import load_embedder, set_threads

    set_threads(1)
    return load_embedder("default", cache_dir=cache_dir())


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory: pytest.TempPathFactory, default_embedder) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """The bundled corpus indexed with the real default model (embeddings cached)."""
    from medcite.index.build import build_index
    from medcite.index.cache import EmbeddingCache
    from medcite.ingest import load
    from medcite.service.settings import Settings

    out = tmp_path_factory.mktemp("seed-index")
    cache = EmbeddingCache(cache_dir() / "embeddings.sqlite")
    try:
        build_index(
            load([CORPUS]),
            default_embedder,
            index_dir=out,
            settings=Settings(index_dir=out).build(),
            cache=cache,
        )
    finally:
        cache.close()
    yield out


@pytest.fixture(scope="session")
def seed_engine(seed_index_dir: Path, default_embedder):  # type: ignore[no-untyped-def]
    from medcite.index.store import load_index
    from medcite.service.engine import Engine
    from medcite.service.settings import Settings

    settings = Settings(index_dir=seed_index_dir, cache_dir=cache_dir())
    lexicon = shared_lexicon()
    return Engine(
        index=load_index(seed_index_dir),
        embedder=default_embedder,
        settings=settings.search(default_embedder.name),
        tokenizer=lexicon.tokenizer,
        expander=lexicon.expander,
    )
