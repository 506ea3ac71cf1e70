"""Hybrid search: dense (FAISS) + BM25 per language partition, gated, fused, de-duplicated.

Cross-lingual by construction: a multilingual dense model ranks same-language passages
above other-language ones, so one global candidate list would rarely cross languages.
Candidates are therefore gathered *per* language partition (top N by dense and by BM25,
from the index's backend: FAISS + bm25s in process, or Milvus; see :mod:`index.retrieve`),
each partition is admitted only when its best dense score clears the calibrated threshold
for (query language -> passage language), and the admitted partitions' candidates are then
fused together, so scores stay comparable across languages. Abstention is the case where no
partition is admitted. An admitted language missing from the top k gets its best passage
in the last place.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from index.embed import Embedder
from index.errors import ControlCharacters, EmptyQuery, QueryTooLong
from index.expand import Expander, default_expander
from index.fusion import FusionMethod, fuse
from index.retrieve import LexicalQuery
from index.store import LoadedIndex
from index.tokenize import lexical_tokens
from ingest.language import detect_language
from ingest.types import Chunk, Language

LOG = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
# C0 and C1 control characters and DEL, except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class SearchSettings:
    candidates: int = 100  # per retriever and language partition
    fusion: FusionMethod = "convex"
    dense_weight: float = 0.8
    rrf_k: int = 60
    max_per_doc: int = 2
    near_duplicate_cosine: float = 0.97
    # Minimum best dense score for a partition to be admitted, keyed "en->zh" etc.
    thresholds: Mapping[str, float] = field(default_factory=dict)
    abstain: bool = True
    expand: bool = True  # cross-lingual BM25 terms from CC-CEDICT (index.expand)


@dataclass(frozen=True)
class Hit:
    row: int
    chunk: Chunk
    score: float  # fused score
    dense: float  # cosine similarity
    lexical: float  # BM25 score


@dataclass(frozen=True)
class SearchResult:
    query: str
    language: Language
    answerable: bool
    hits: tuple[Hit, ...]
    best_dense: Mapping[str, float]  # best dense score per passage language


def validate_query(query: str) -> str:
    bad = _CONTROL.search(query)
    if bad:
        raise ControlCharacters(
            f"the query contains a control character (U+{ord(bad.group()):04X})"
        )
    text = query.strip()
    if not text:
        raise EmptyQuery("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryTooLong(f"the query is longer than {MAX_QUERY_CHARS} characters")
    return text


def lexical_query(
    text: str, settings: SearchSettings, expander: Expander | None = None
) -> LexicalQuery:
    """BM25 tokens of a query, plus its other-language terms when ``settings.expand``; and
    the same as text for a backend that tokenizes on the server."""
    tokens = lexical_tokens(text)
    if not settings.expand:
        return LexicalQuery(tokens=tokens, text=text)
    if expander is None:
        expander = default_expander()
    words = lexical_tokens(text, bigrams=False)  # dictionary words, not bigrams
    extra = expander.english_for(words) + expander.chinese_for(text)
    joined = " ".join(extra)
    return LexicalQuery(tokens=tokens + lexical_tokens(joined), text=f"{text} {joined}".strip())


def query_tokens(
    text: str, settings: SearchSettings, expander: Expander | None = None
) -> list[str]:
    """BM25 tokens of a query, plus its other-language terms when ``settings.expand``."""
    return list(lexical_query(text, settings, expander).tokens)


@dataclass(frozen=True)
class _Scored:
    rows: np.ndarray
    fused: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    query_language_first: np.ndarray  # 0 for the query's language, 1 otherwise


def _score(
    index: LoadedIndex,
    qv: np.ndarray,
    query: LexicalQuery,
    qlang: str,
    *,
    language: str | None,
    settings: SearchSettings,
    candidates: int,
) -> tuple[_Scored, dict[str, float]]:
    admitted: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    best: dict[str, float] = {}
    languages = [lang for lang in sorted(index.partitions) if language in (None, lang)]
    found = index.retriever.candidates(qv, query, languages, candidates)
    for lang, cand in sorted(found.items()):
        rows = cand.rows
        if rows.size == 0:
            continue
        dense_part = np.asarray(index.vectors[rows] @ qv, dtype=np.float32)
        best[lang] = float(dense_part.max())
        threshold = settings.thresholds.get(f"{qlang}->{lang}")
        # Without abstention (evaluation) the query's own language is always admitted,
        # another language still only above its bar, as in the service.
        gated = settings.abstain or lang != qlang
        if gated and threshold is not None and best[lang] < threshold:
            continue
        admitted.append((rows, dense_part, cand.lexical))
    if not admitted:
        empty = np.zeros(0, dtype=np.float32)
        return _Scored(np.zeros(0, dtype=np.int64), empty, empty, empty, empty), best
    # One fusion over the admitted partitions' candidates together: scores stay comparable
    # across languages, so a handful of stray other-language chunks cannot take the top
    # places the way a per-partition normalisation (best of each partition = 1) let them.
    rows = np.concatenate([a[0] for a in admitted])
    dense = np.concatenate([a[1] for a in admitted])
    lexical = np.concatenate([a[2] for a in admitted])
    fused = fuse(
        dense,
        lexical,
        method=settings.fusion,
        dense_weight=settings.dense_weight,
        rrf_k=settings.rrf_k,
    )
    other = np.array([index.chunks[r].language != qlang for r in rows.tolist()], dtype=np.int64)
    order = np.lexsort((other, -fused))
    return _Scored(rows[order], fused[order], dense[order], lexical[order], other[order]), best


def search(
    index: LoadedIndex,
    embedder: Embedder,
    query: str,
    *,
    k: int = 5,
    language: str | None = None,
    settings: SearchSettings,
    query_vector: np.ndarray | None = None,
) -> SearchResult:
    """The top ``k`` passages for ``query``, at most ``max_per_doc`` per document and
    no two near-identical; empty (not answerable) when no partition clears its threshold."""
    text = validate_query(query)
    qlang = detect_language(text)
    qv = query_vector if query_vector is not None else embedder.embed([text], kind="query")[0]
    scored, best = _score(
        index,
        qv,
        lexical_query(text, settings),
        qlang,
        language=language,
        settings=settings,
        candidates=settings.candidates,
    )
    hits: list[Hit] = []
    # Every admitted language shows up: when the top k hold none of a language whose
    # partition cleared its calibrated bar, its best passage takes the last place.
    reserve: dict[str, Hit] = {}
    missing = set(index.chunks[r].language for r in scored.rows.tolist()) if k >= 3 else set()
    per_group: dict[str, int] = {}
    chosen: list[np.ndarray] = []
    for i, row in enumerate(scored.rows.tolist()):
        chunk = index.chunks[row]
        if len(hits) == k and chunk.language not in missing:
            continue
        doc = index.documents[chunk.doc_id]
        group = doc.near_duplicate_of or doc.doc_id
        if per_group.get(group, 0) >= settings.max_per_doc:
            continue
        vec = np.asarray(index.vectors[row])
        if chosen and float(np.max(np.stack(chosen) @ vec)) >= settings.near_duplicate_cosine:
            continue
        per_group[group] = per_group.get(group, 0) + 1
        chosen.append(vec)
        hit = Hit(
            row=row,
            chunk=chunk,
            score=float(scored.fused[i]),
            dense=float(scored.dense[i]),
            lexical=float(scored.lexical[i]),
        )
        missing.discard(chunk.language)
        if len(hits) < k:
            hits.append(hit)
        else:
            reserve[chunk.language] = hit
        if len(hits) == k and not missing:
            break
    for hit in sorted(reserve.values(), key=lambda h: -h.score):
        # Replace the lowest hit of a language that has more than one.
        for j in range(len(hits) - 1, -1, -1):
            if sum(h.chunk.language == hits[j].chunk.language for h in hits) > 1:
                del hits[j]
                hits.append(hit)
                break
    return SearchResult(
        query=text, language=qlang, answerable=bool(hits), hits=tuple(hits), best_dense=best
    )


def rank_documents(
    index: LoadedIndex,
    qv: np.ndarray,
    query: str,
    *,
    k: int = 100,
    settings: SearchSettings,
    candidates: int = 300,
    unit: Callable[[str], str] | None = None,
) -> list[tuple[str, float]]:
    """Document ranking for evaluation: chunk scores grouped by ``doc_id`` (max), no gate.

    ``unit`` maps a doc id to the unit judged (e.g. its source file) when that is not the
    document itself."""
    text = query.strip()
    scored, _ = _score(
        index,
        qv,
        lexical_query(text, settings),
        detect_language(text) if text else "en",
        language=None,
        settings=dataclasses.replace(settings, abstain=False),
        candidates=candidates,
    )
    seen: dict[str, float] = {}
    for row, score in zip(scored.rows.tolist(), scored.fused.tolist(), strict=True):
        doc_id = index.chunks[row].doc_id
        if unit is not None:
            doc_id = unit(doc_id)
        if doc_id not in seen:
            seen[doc_id] = score
            if len(seen) == k:
                break
    return list(seen.items())
