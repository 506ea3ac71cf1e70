"""What requests share: the loaded index, the embedder and search settings, as a dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request

from medcite.index.embed import Embedder, load_embedder, set_threads
from medcite.index.expand import Expander, load_expander
from medcite.index.lexicon import Lexicon
from medcite.index.retrieve import Backend
from medcite.index.search import SearchResult, SearchSettings, ensure_probe_levels, search
from medcite.index.store import LoadedIndex, check_compatible, load_index
from medcite.index.tokenize import Tokenizer
from medcite.service.settings import Settings


@dataclass
class Engine:
    """What a request needs: the loaded index, the embedder, the search settings, and the
    tokenizer and CC-CEDICT expander of queries and passages (loaded once, shared by requests)."""

    index: LoadedIndex
    embedder: Embedder
    settings: SearchSettings
    tokenizer: Tokenizer = field(repr=False)
    expander: Expander | None = field(default=None, repr=False)  # needed when settings.expand
    backend: Backend | None = None  # None: the embedded FAISS + BM25 backend

    def __post_init__(self) -> None:
        if self.settings.expand and self.expander is None:
            raise ValueError("query expansion is on (settings.expand) but there is no expander")

    @property
    def lexicon(self) -> Lexicon:
        """The tokenizer and expander, as search takes them."""
        return Lexicon(self.tokenizer, self.expander)

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        language: str | None = None,
        query_vector: np.ndarray | None = None,
    ) -> SearchResult:
        """:func:`index.search.search` over this engine's index, model, settings and lexicon."""
        return search(
            self.index,
            self.embedder,
            query,
            k=k,
            language=language,
            settings=self.settings,
            lexicon=self.lexicon,
            query_vector=query_vector,
        )


def load_engine(settings: Settings) -> Engine:
    """Load model and index and check they belong together; raises MedciteError."""
    set_threads(settings.threads)
    embedder = load_embedder(
        settings.model,
        cache_dir=settings.cache_dir,
        batch_size=settings.embed_batch_size,
        runtime=settings.runtime,
    )
    backend = settings.backend()
    # Starting: a damaged live version gives way to the newest intact one (logged loudly).
    index = load_index(settings.index_dir, backend=backend, fallback=True)
    check_compatible(index.manifest, model_name=embedder.name, dim=embedder.dim)
    _measure_probes(index, embedder, settings)
    # jieba's dictionary and CC-CEDICT (about 3 s), now rather than on the first request.
    # The expander is loaded even with query expansion off: /terms still shows the page the
    # other-language words of a question.
    tokenizer = Tokenizer()
    return Engine(
        index=index,
        embedder=embedder,
        settings=settings.search(embedder.name),
        tokenizer=tokenizer,
        expander=load_expander(tokenizer),
        backend=backend,
    )


def _measure_probes(index: LoadedIndex, embedder: Embedder, settings: Settings) -> None:
    """The index's off-topic probe levels (index.relevance), before the first request."""
    from medcite.index.cache import EmbeddingCache

    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    try:
        ensure_probe_levels(index, embedder, cache)
    finally:
        cache.close()


def reload_engine(settings: Settings, current: Engine | None) -> Engine:
    """The engine over the index's live version, keeping the loaded model when there is one.

    Raises MedciteError (missing, corrupt or mismatched index); ``current`` is untouched.
    No fallback here: a damaged live version is refused and the old one keeps serving.
    """
    if current is None:
        return load_engine(settings)
    index = load_index(settings.index_dir, backend=current.backend)
    check_compatible(index.manifest, model_name=current.embedder.name, dim=current.embedder.dim)
    _measure_probes(index, current.embedder, settings)
    return Engine(
        index=index,
        embedder=current.embedder,
        settings=current.settings,
        tokenizer=current.tokenizer,
        expander=current.expander,
        backend=current.backend,
    )


def get_engine(request: Request) -> Engine:
    """The loaded engine, or 503 while loading / when loading failed."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        error = getattr(request.app.state, "error", None)
        raise HTTPException(503, error or "the index is still loading")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
