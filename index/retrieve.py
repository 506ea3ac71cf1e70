"""Candidate retrieval, the part of search an index backend provides.

A backend answers one question per search: for each language partition, which chunk rows
are candidates (the top ``n`` by dense similarity and the top ``n`` by BM25), and what BM25
score each of them has. Everything after that (exact cosines, the relevance model,
fusion, de-duplication, citations) is backend-independent and lives in :mod:`index.search`.

Two backends exist: :class:`EmbeddedRetriever` (FAISS + bm25s in this process, the default)
and :class:`index.milvus.MilvusRetriever` (a Milvus server or Milvus Lite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Candidates:
    rows: np.ndarray  # int64 chunk rows, unique, of one language partition
    lexical: np.ndarray  # float32 BM25 score of each row; 0 where it did not match


@dataclass(frozen=True)
class LexicalQuery:
    """The lexical side of a query: our own BM25 tokens (embedded backend) and the text a
    server-side analyzer tokenizes (Milvus): the question plus its expansion terms."""

    tokens: Sequence[str]
    text: str
    own: int = 0  # tokens[:own] are the question's own, the rest its expansion terms


class Retriever(Protocol):
    name: str

    def candidates(
        self, qv: np.ndarray, query: LexicalQuery, languages: Sequence[str], n: int
    ) -> dict[str, Candidates]:
        """Candidates of each partition in ``languages`` (missing when it has none)."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    """An index backend other than the embedded one: it receives each finished version
    before it goes live, and serves candidate retrieval for a loaded version."""

    name: str

    def publish(self, version_dir: Path) -> None:
        """Copy the finished (not yet live) version into the backend; raises MedciteError."""
        ...

    def open(self, version_dir: Path, rows_by_language: Mapping[str, np.ndarray]) -> Retriever:
        """The retriever for a published version; raises IndexNotFound when it is missing."""
        ...

    def close(self) -> None: ...


# Nodes an HNSW search visits (efSearch), at least the candidates it returns. Measured on
# the development indexes' e5 vectors (35k Chinese, 6k English; 600 and 500 real questions),
# recall@100 against exact search was 0.953 / 0.949 at 128 (FAISS's setting before),
# 0.983 / 0.985 at 256 and 0.994 / 0.996 at 512, for 0.15 -> 0.49 ms per query on one
# thread; recall falls as a partition grows, so the margin is kept.
HNSW_EF_SEARCH = 512


def dense_search(faiss_index: Any, qv: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` nearest rows of one partition's FAISS index to ``qv`` (scores, ids); an
    HNSW index searches with efSearch >= max(HNSW_EF_SEARCH, m), per call (thread-safe)."""
    import faiss

    x = np.ascontiguousarray(qv[None, :], dtype=np.float32)
    if isinstance(faiss_index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, m))  # type: ignore[attr-defined]
        scores, ids = faiss_index.search(x, m, params=params)
    else:
        scores, ids = faiss_index.search(x, m)
    return scores, ids


@dataclass(frozen=True)
class EmbeddedPartition:
    rows: np.ndarray  # int64 chunk rows of this language
    faiss_index: Any


class EmbeddedRetriever:
    """FAISS inner-product search per language partition plus one bm25s index over all
    chunks, both held in this process."""

    name = "embedded"

    def __init__(
        self, partitions: Mapping[str, EmbeddedPartition], bm25: Any, n_chunks: int
    ) -> None:
        self.partitions = partitions
        self.bm25 = bm25
        self.n_chunks = n_chunks

    def candidates(
        self, qv: np.ndarray, query: LexicalQuery, languages: Sequence[str], n: int
    ) -> dict[str, Candidates]:
        tokens = list(query.tokens)
        lexical_all = (
            np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)
            if tokens
            else np.zeros(self.n_chunks, dtype=np.float32)
        )
        out: dict[str, Candidates] = {}
        for lang in languages:
            part = self.partitions.get(lang)
            if part is None:
                continue
            m = min(n, int(part.rows.size))
            if m == 0:
                continue
            _, ids = dense_search(part.faiss_index, qv, m)
            dense_rows = part.rows[ids[0][ids[0] >= 0]]
            lex_part = lexical_all[part.rows]
            top = (
                np.argpartition(-lex_part, m - 1)[:m]
                if m < lex_part.size
                else np.arange(lex_part.size)
            )
            lex_rows = part.rows[top[lex_part[top] > 0]]
            rows = np.unique(np.concatenate([dense_rows, lex_rows]))
            out[lang] = Candidates(rows=rows, lexical=lexical_all[rows])
        return out

    def close(self) -> None:
        pass
