"""Hybrid search: dense (FAISS) + BM25 per language partition, fused, then judged.

Cross-lingual by construction: a multilingual dense model ranks same-language passages
above other-language ones, so one global candidate list would rarely cross languages.
Candidates are therefore gathered *per* language partition (top N by dense and by BM25,
from the index's backend: FAISS + bm25s in process, or Milvus; see :mod:`index.retrieve`)
and fused together, so scores stay comparable across languages.

The decision on top of the ranking is one calibrated model (:mod:`index.relevance`): the
question gets P(answerable) and every candidate P(relevant) = P(answerable) x P(relevant |
answerable); the service abstains when P(answerable) is under the threshold, and passages of
both languages are ordered by P(relevant). A language whose best passage is more likely
relevant than not (given an answerable question) shows it no lower than third place, also
when the top k held none of that language.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medcite.index.embed import Embedder
from medcite.index.errors import ControlCharacters, EmptyQuery, LoneSurrogate, QueryTooLong
from medcite.index.fusion import FusionMethod, fuse
from medcite.index.lexicon import Lexicon
from medcite.index.relevance import (
    ProbeLevels,
    RelevanceModel,
    candidate_features,
    coverage,
    load_probes,
    probe_levels,
)
from medcite.index.retrieve import LexicalQuery
from medcite.index.store import LoadedIndex
from medcite.index.tokenize import Tokenizer
from medcite.ingest.language import detect_language
from medcite.ingest.types import Chunk, Language

if TYPE_CHECKING:
    from medcite.index.cache import EmbeddingCache

LOG = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
# C0 and C1 control characters and DEL, except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Candidates (best fused first) whose lexical coverage of the question is measured.
_COVERAGE_DEPTH = 30


@dataclass(frozen=True)
class SearchSettings:
    candidates: int = 100  # per retriever and language partition
    fusion: FusionMethod = "convex"
    dense_weight: float = 0.8
    rrf_k: int = 60
    max_per_doc: int = 2
    near_duplicate_cosine: float = 0.97
    # P(answerable) and P(relevant) (index.relevance); None: fused scores, never abstain.
    relevance: RelevanceModel | None = None
    min_relevance: float | None = None  # overrides the model's P(answerable) threshold
    abstain: bool = True
    expand: bool = True  # cross-lingual BM25 terms from CC-CEDICT (index.expand)

    @property
    def threshold(self) -> float | None:
        if self.relevance is None:
            return None
        return self.relevance.threshold if self.min_relevance is None else self.min_relevance


@dataclass(frozen=True)
class Hit:
    row: int
    chunk: Chunk
    score: float  # P(relevant) when the settings have a relevance model, else fused
    dense: float  # cosine similarity
    lexical: float  # BM25 score
    # (start, end) into the source of the sentence(s) that answer best
    evidence: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SearchResult:
    query: str
    language: Language
    answerable: bool
    hits: tuple[Hit, ...]
    p_answerable: float | None  # P(the corpus answers the question); None without a model


def validate_query(query: str) -> str:
    bad = _CONTROL.search(query)
    if bad:
        raise ControlCharacters(
            f"the query contains a control character (U+{ord(bad.group()):04X})"
        )
    lone = _SURROGATE.search(query)  # JSON "\ud800", or raw bytes ED A0 80 (surrogatepass)
    if lone:
        raise LoneSurrogate(
            f"the query contains a lone surrogate (U+{ord(lone.group()):04X}), "
            "which is not a character: send valid UTF-8"
        )
    text = query.strip()
    if not text:
        raise EmptyQuery("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryTooLong(f"the query is longer than {MAX_QUERY_CHARS} characters")
    return text


def lexical_query(text: str, settings: SearchSettings, lexicon: Lexicon) -> LexicalQuery:
    """BM25 tokens of a query, plus its other-language terms when ``settings.expand``; and
    the same as text for a backend that tokenizes on the server."""
    tokenizer = lexicon.tokenizer
    tokens = tokenizer.tokens(text)
    if not settings.expand:
        return LexicalQuery(tokens=tokens, text=text, own=len(tokens))
    expander = lexicon.expander
    if expander is None:
        raise ValueError("query expansion is on (settings.expand) but the lexicon has no expander")
    words = tokenizer.tokens(text, bigrams=False)  # dictionary words, not bigrams
    extra = expander.english_for(words) + expander.chinese_for(text)
    joined = " ".join(extra)
    return LexicalQuery(
        tokens=tokens + tokenizer.tokens(joined),
        text=f"{text} {joined}".strip(),
        own=len(tokens),
    )


def query_tokens(text: str, settings: SearchSettings, lexicon: Lexicon) -> list[str]:
    """BM25 tokens of a query, plus its other-language terms when ``settings.expand``."""
    return list(lexical_query(text, settings, lexicon).tokens)


_PROBE_LOCK = threading.Lock()


def ensure_probe_levels(
    index: LoadedIndex, embedder: Embedder, cache: EmbeddingCache | None = None
) -> ProbeLevels:
    """This index's off-topic probe levels, measured once per loaded index (the engine does
    it at load; a search on an index without them measures them first)."""
    if index.probes is not None:
        return index.probes
    with _PROBE_LOCK:
        if index.probes is None:
            from medcite.index.cache import embed_cached

            probes = load_probes()
            texts = [p.text for p in probes]
            vectors, _ = embed_cached(embedder, texts, kind="query", cache=cache)
            index.probes = probe_levels(
                index.vectors,
                {lang: p.rows for lang, p in index.partitions.items()},
                vectors,
                [p.language for p in probes],
            )
        return index.probes


@dataclass(frozen=True)
class Scored:
    """One question's candidates, best first: by P(relevant) with a model, else by fused."""

    rows: np.ndarray
    fused: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    relevance: np.ndarray | None  # P(relevant | answerable)
    features: np.ndarray | None
    p_answerable: float | None = None


def score_candidates(
    index: LoadedIndex,
    embedder: Embedder,
    qv: np.ndarray,
    text: str,
    qlang: str,
    *,
    language: str | None,
    settings: SearchSettings,
    lexicon: Lexicon,
    candidates: int,
    ranking_only: bool = False,
) -> Scored:
    """Candidates of every partition (or only ``language``), fused, with their features and
    P(relevant) unless ``ranking_only`` or the settings have no relevance model."""
    query = lexical_query(text, settings, lexicon)
    judged = settings.relevance is not None and not ranking_only
    # With a relevance model every partition is searched even when one language is asked
    # for: whether the corpus answers the question does not depend on the display filter.
    languages = [lang for lang in sorted(index.partitions) if judged or language in (None, lang)]
    found = index.retriever.candidates(qv, query, languages, candidates)
    parts = [cand for _, cand in sorted(found.items()) if cand.rows.size]
    if not parts:
        empty = np.zeros(0, dtype=np.float32)
        return Scored(np.zeros(0, dtype=np.int64), empty, empty, empty, None, None)
    rows = np.concatenate([c.rows for c in parts])
    lexical = np.concatenate([c.lexical for c in parts]).astype(np.float32)
    dense = np.asarray(index.vectors[rows] @ qv, dtype=np.float32)
    fused = fuse(
        dense,
        lexical,
        method=settings.fusion,
        dense_weight=settings.dense_weight,
        rrf_k=settings.rrf_k,
    )
    chunk_langs = [index.chunks[r].language for r in rows.tolist()]
    if not judged or settings.relevance is None:
        other = np.array([lang != qlang for lang in chunk_langs], dtype=np.int64)
        order = np.lexsort((other, -fused))
        return Scored(rows[order], fused[order], dense[order], lexical[order], None, None)
    probes = ensure_probe_levels(index, embedder)
    own, extra = query.tokens[: query.own], query.tokens[query.own :]
    cover = np.zeros(rows.size, dtype=np.float64)
    for i in np.argsort(-fused, kind="stable")[:_COVERAGE_DEPTH].tolist():
        chunk = index.chunks[int(rows[i])]
        passage = passage_tokens(index, int(rows[i]), lexicon.tokenizer)
        same = chunk.language == qlang or not extra
        cover[i] = coverage(own if same else extra, passage)
    sentence_best, window_best = sentence_scores(index, rows, qv)
    x = candidate_features(
        dense=dense,
        lexical=lexical,
        fused=fused,
        languages=chunk_langs,
        query_language=qlang,
        coverage=cover,
        query_tokens=query.own,
        probes=probes,
        window_best=window_best,
        sentence_best=sentence_best,
    )
    p = settings.relevance.probability(x)
    p_answerable = settings.relevance.answerable(x, fused)
    order = np.lexsort((-fused, -p))
    if language is not None:
        order = order[np.asarray(chunk_langs)[order] == language]
    return Scored(
        rows[order], fused[order], dense[order], lexical[order], p[order], x[order], p_answerable
    )


def _sentence_cosines(
    index: LoadedIndex, rows: np.ndarray, qv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine of every sentence of the chunks ``rows``; the window score of each (the mean
    cosine of the sentence and its neighbours in the chunk); and where each chunk's run of
    sentences starts in those arrays."""
    off = index.sentence_offsets
    first, last = off[rows], off[rows + 1]
    counts = last - first
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    idx = np.repeat(first - starts, counts) + np.arange(int(counts.sum()))
    own = np.asarray(index.sentence_vectors[idx] @ qv, dtype=np.float64)
    segment = np.repeat(np.arange(rows.size), counts)
    left = np.zeros_like(own)
    right = np.zeros_like(own)
    has_left = np.zeros(own.size, dtype=bool)
    has_right = np.zeros(own.size, dtype=bool)
    if own.size > 1:
        has_left[1:] = segment[1:] == segment[:-1]
        has_right[:-1] = segment[:-1] == segment[1:]
        left[1:] = np.where(has_left[1:], own[:-1], 0.0)
        right[:-1] = np.where(has_right[:-1], own[1:], 0.0)
    window = (own + left + right) / (1 + has_left + has_right)
    return own, window, starts


def sentence_scores(
    index: LoadedIndex, rows: np.ndarray, qv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk in ``rows``: its best sentence's cosine and its best window's (MaxP over
    sentence windows, small-to-big: a sentence with its neighbours, inside the chunk)."""
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty
    own, window, starts = _sentence_cosines(index, rows, qv)
    return np.maximum.reduceat(own, starts), np.maximum.reduceat(window, starts)


def evidence(index: LoadedIndex, row: int, qv: np.ndarray) -> tuple[int, int]:
    """The span of the chunk's sentence that answers best: the best by its own cosine plus
    its window's (a sentence that matches and sits among sentences that match)."""
    own, window, _ = _sentence_cosines(index, np.array([row], dtype=np.int64), qv)
    best = int(np.argmax(own + window))
    sentence = index.sentences[int(index.sentence_offsets[row]) + best]
    return int(sentence[1]), int(sentence[2])


def passage_tokens(index: LoadedIndex, row: int, tokenizer: Tokenizer) -> frozenset[str]:
    """The lexical tokens of a chunk's title, section and text (memoised per index)."""
    memo = index.token_memo
    found = memo.get(row)
    if found is None:
        chunk = index.chunks[row]
        doc = index.documents[chunk.doc_id]
        text = f"{doc.title}\n{chunk.section or ''}\n{chunk.text}"
        found = frozenset(tokenizer.tokens(text))
        if len(memo) > 200_000:
            memo.clear()
        memo[row] = found
    return found


def search(
    index: LoadedIndex,
    embedder: Embedder,
    query: str,
    *,
    k: int = 5,
    language: str | None = None,
    settings: SearchSettings,
    lexicon: Lexicon,
    query_vector: np.ndarray | None = None,
) -> SearchResult:
    """The top ``k`` passages for ``query``, at most ``max_per_doc`` per document and
    no two near-identical; empty (not answerable) when P(answerable) is under the threshold."""
    text = validate_query(query)
    qlang = detect_language(text)
    qv = query_vector if query_vector is not None else embedder.embed([text], kind="query")[0]
    scored = score_candidates(
        index,
        embedder,
        qv,
        text,
        qlang,
        language=language,
        settings=settings,
        lexicon=lexicon,
        candidates=settings.candidates,
    )
    threshold = settings.threshold
    relevance = scored.relevance
    p_answerable = scored.p_answerable
    if (
        threshold is not None
        and settings.abstain
        and (p_answerable is None or p_answerable < threshold)
    ):
        return SearchResult(
            query=text, language=qlang, answerable=False, hits=(), p_answerable=p_answerable
        )
    hits = _select_hits(index, scored, qv, k, settings)
    if relevance is not None:
        likely = {int(r) for r, p in zip(scored.rows, relevance, strict=True) if p >= 0.5}
        _lift_languages(hits, likely)
    return SearchResult(
        query=text,
        language=qlang,
        answerable=bool(hits),
        hits=tuple(hits),
        p_answerable=p_answerable,
    )


def _select_hits(
    index: LoadedIndex, scored: Scored, qv: np.ndarray, k: int, settings: SearchSettings
) -> list[Hit]:
    """The top ``k`` of the scored candidates, in their order: at most ``max_per_doc`` per
    document (near-duplicate documents count as one), no passage near-identical to one
    already taken, and a language missing from the top ``k`` whose best passage is more
    likely relevant than not (for an answerable question) gets that passage in the last
    place."""
    relevance = scored.relevance
    p_answerable = scored.p_answerable

    def score(i: int) -> float:
        if relevance is None or p_answerable is None:
            return float(scored.fused[i])
        return p_answerable * float(relevance[i])

    hits: list[Hit] = []
    reserve: dict[str, Hit] = {}
    n = scored.rows.size
    missing = (
        {
            index.chunks[int(scored.rows[i])].language
            for i in range(n)
            if relevance is None or float(relevance[i]) >= 0.5
        }
        if k >= 3
        else set()
    )
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
            score=score(i),
            dense=float(scored.dense[i]),
            lexical=float(scored.lexical[i]),
            evidence=(evidence(index, row, qv),),
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
    return hits


LIFT_TO = 3  # a language's best likely-relevant passage shows no lower than this place


def _lift_languages(hits: list[Hit], likely: set[int]) -> None:
    """Move the best passage of a language that is more likely relevant than not, but sits
    below place LIFT_TO behind passages of another language, up to that place: an answer in
    the other language stays on the first screen (the order is otherwise by score)."""
    for language in sorted({h.chunk.language for h in hits}):
        first = next(i for i, h in enumerate(hits) if h.chunk.language == language)
        if first >= LIFT_TO and hits[first].row in likely:
            hits.insert(LIFT_TO - 1, hits.pop(first))


def rank_documents(
    index: LoadedIndex,
    embedder: Embedder,
    qv: np.ndarray,
    query: str,
    *,
    k: int = 100,
    settings: SearchSettings,
    lexicon: Lexicon,
    candidates: int = 300,
    unit: Callable[[str], str] | None = None,
) -> list[tuple[str, float]]:
    """Document ranking without the gate (``medcite eval --no-gate``): fused chunk scores of
    every partition grouped by ``doc_id`` (max).

    ``unit`` maps a doc id to the unit judged (e.g. its source file) when that is not the
    document itself."""
    text = query.strip()
    scored = score_candidates(
        index,
        embedder,
        qv,
        text,
        detect_language(text) if text else "en",
        language=None,
        settings=settings,
        lexicon=lexicon,
        candidates=candidates,
        ranking_only=True,
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
