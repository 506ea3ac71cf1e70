"""Build an index from loaded documents: chunk, embed (cached), BM25, FAISS, write."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medcite.index.cache import EmbeddingCache, embed_cached
from medcite.index.embed import Embedder
from medcite.index.errors import NothingToIndex
from medcite.index.manifest import Corpus, Counts, Dense, Lexical, Manifest, Model
from medcite.index.store import remove_stale_temp_dirs, write_version, writer_lock
from medcite.index.tokenize import Tokenizer
from medcite.ingest.types import Chunk, ChunkSettings, Document, FileReport, LoadResult

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    hnsw_threshold: int = 200_000
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    # Extra copies of the document title in each chunk's BM25 tokens (the text already
    # holds it once): the title names the topic, which questions name too.
    bm25_title_boost: int = 3
    embed_batch_size: int = 32
    # Embed every sentence of a multi-sentence chunk too (evidence, sentence windows).
    sentence_windows: bool = True


@dataclass(frozen=True)
class BuildReport:
    path: Path
    files: int
    documents: int
    chunks: int
    sentences: int
    embedded: int  # texts embedded now (passages and sentences); the rest came from cache
    reused: int
    seconds: float
    embed_seconds: float
    reports: tuple[FileReport, ...]


def passage_text(chunk: Chunk, doc: Document) -> str:
    """What is embedded and BM25-indexed for a chunk: its document title, section, text."""
    parts = [doc.title, chunk.section or "", chunk.text]
    return "\n".join(p for p in parts if p)


def sentence_table(
    chunks: Sequence[Chunk], sources: Mapping[str, str], *, split: bool = True
) -> tuple[np.ndarray, list[int]]:
    """Every sentence of every chunk as (chunk row, start, end), in chunk order, and the
    indices of those to embed: the sentences of chunks holding more than one (a chunk of
    one sentence is its own sentence and reuses its vector). Without ``split`` every chunk
    is one "sentence" (no sentence windows, nothing more to embed)."""
    from medcite.ingest.chunk import split_sentences

    rows: list[tuple[int, int, int]] = []
    embed: list[int] = []
    for r, chunk in enumerate(chunks):
        spans = (
            split_sentences(sources[chunk.source], chunk.start, chunk.end, chunk.language)
            if split
            else []
        )
        if not spans:
            spans = [(chunk.start, chunk.end)]
        if len(spans) > 1:
            embed.extend(range(len(rows), len(rows) + len(spans)))
        rows.extend((r, a, b) for a, b in spans)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3), embed


def corpus_fingerprint(load: LoadResult) -> str:
    digest = hashlib.sha256()
    for source in sorted(load.sources, key=lambda s: s.source):
        digest.update(source.source.encode())
        digest.update(b"\x00")
        digest.update(hashlib.sha256(source.text.encode()).digest())
    return digest.hexdigest()


def lexical_corpus(
    texts: list[str], titles: list[str], title_boost: int, tokenizer: Tokenizer
) -> list[list[str]]:
    """BM25 tokens of each passage, with its title's tokens ``title_boost`` more times."""
    out = []
    title_tokens: dict[str, list[str]] = {}
    for text, title in zip(texts, titles, strict=True):
        tokens = tokenizer.tokens(text)
        if title_boost and title:
            if title not in title_tokens:
                title_tokens[title] = tokenizer.tokens(title)
            tokens += title_tokens[title] * title_boost
        out.append(tokens)
    return out


def chunks_by_language(chunks: Sequence[Chunk]) -> dict[str, int]:
    """How many chunks each language has (the manifest's ``chunks_by_language``)."""
    return dict(Counter(c.language for c in chunks))


def _now() -> str:
    """The manifest's ``created``: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_bm25(tokens: list[list[str]], *, k1: float, b: float) -> Any:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build at DEBUG
    bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
    bm25.index(tokens, show_progress=False)
    return bm25


def build_index(
    load: LoadResult,
    embedder: Embedder,
    *,
    index_dir: Path,
    settings: BuildSettings,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None = None,
    before_publish: Callable[[Path], None] | None = None,
    chunker: Callable[[LoadResult, ChunkSettings], list[Chunk]] | None = None,
    tokenizer: Tokenizer | None = None,
) -> BuildReport:
    """Chunk, embed and index ``load`` into a new live version of ``index_dir``.

    ``progress(done, total)`` is called as passages are embedded; ``chunker`` replaces
    :func:`ingest.chunk_documents` (the Ray engine chunks on its cluster); ``tokenizer``
    (chunk sizes, BM25 tokens) is a new one for this build when not given.
    """
    started = time.perf_counter()
    # Space held by the temp folder of a killed ingest is freed before embedding fills the
    # cache (write_version removes any left, under the lock, before writing).
    remove_stale_temp_dirs(index_dir)
    tokenizer = tokenizer or Tokenizer()
    chunks = _chunks(load, settings.chunking, chunker, tokenizer)
    docs = {d.doc_id: d for d in load.documents}
    texts = [passage_text(c, docs[c.doc_id]) for c in chunks]
    embedded = _embed(load, chunks, texts, embedder, settings, cache, progress)
    bm25 = build_bm25(
        lexical_corpus(
            texts,
            [docs[c.doc_id].title for c in chunks],
            settings.bm25_title_boost,
            tokenizer,
        ),
        k1=settings.bm25_k1,
        b=settings.bm25_b,
    )
    with writer_lock(index_dir):
        path = write_version(
            index_dir,
            manifest=_manifest(load, chunks, embedded.sentences, embedder, settings, tokenizer),
            sources=load.sources,
            documents=load.documents,
            chunks=chunks,
            vectors=embedded.vectors,
            sentences=embedded.sentences,
            sentence_vectors=embedded.sentence_vectors,
            bm25=bm25,
            hnsw_threshold=settings.hnsw_threshold,
            reports=load.reports,
            before_publish=before_publish,
        )
    return BuildReport(
        path=path,
        files=len(load.reports),
        documents=len(load.documents),
        chunks=len(chunks),
        sentences=len(embedded.sentences),
        embedded=embedded.embedded,
        reused=embedded.texts - embedded.embedded,
        seconds=time.perf_counter() - started,
        embed_seconds=embedded.seconds,
        reports=load.reports,
    )


def _chunks(
    load: LoadResult,
    settings: ChunkSettings,
    chunker: Callable[[LoadResult, ChunkSettings], list[Chunk]] | None,
    tokenizer: Tokenizer,
) -> list[Chunk]:
    """The chunks of ``load``; NothingToIndex, with why each file failed, when there are none."""
    from medcite.ingest import chunk_documents

    if chunker is not None:
        chunks = chunker(load, settings)
    else:
        chunks = chunk_documents(load, settings, tokenizer)
    if not chunks:
        failed = [
            f"{r.path}: {r.status} ({r.reason})" for r in load.reports if r.status != "ingested"
        ]
        raise NothingToIndex(
            "nothing to index: no readable article with text was found"
            + (" — " + "; ".join(failed[:10]) if failed else "")
        )
    return chunks


@dataclass(frozen=True)
class _Embedded:
    vectors: np.ndarray  # one per chunk
    sentences: np.ndarray  # the sentence table (chunk row, start, end)
    sentence_vectors: np.ndarray  # one per sentence window
    texts: int  # passages and sentence windows to embed
    embedded: int  # of which the model embedded (the others came from the cache)
    seconds: float


def _embed(
    load: LoadResult,
    chunks: list[Chunk],
    texts: list[str],
    embedder: Embedder,
    settings: BuildSettings,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None,
) -> _Embedded:
    """Vectors of the chunks and of their sentence windows (a chunk of one window reuses
    its own vector); ValueError when the model returns a non-finite one."""
    source_text = {s.source: s.text for s in load.sources}
    sentences, to_embed = sentence_table(chunks, source_text, split=settings.sentence_windows)
    sentence_texts = [
        source_text[chunks[int(r)].source][int(a) : int(b)] for r, a, b in sentences[to_embed]
    ]
    done = 0
    total = len(texts) + len(sentence_texts)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    t0 = time.perf_counter()
    # Passages and sentences in one go: batched together by length, one cache look-up.
    all_vectors, embedded = embed_cached(
        embedder,
        texts + sentence_texts,
        kind="passage",
        cache=cache,
        batch_size=settings.embed_batch_size,
        progress=advance,
    )
    vectors = all_vectors[: len(texts)]
    sentence_vectors = vectors[sentences[:, 0]] if len(sentences) else vectors[:0]
    sentence_vectors[to_embed] = all_vectors[len(texts) :]
    seconds = time.perf_counter() - t0
    if vectors.shape[0] and not (
        np.all(np.isfinite(vectors)) and np.all(np.isfinite(sentence_vectors))
    ):
        raise ValueError("the embedding model returned non-finite vectors")
    return _Embedded(vectors, sentences, sentence_vectors, total, embedded, seconds)


def _manifest(
    load: LoadResult,
    chunks: list[Chunk],
    sentences: np.ndarray,
    embedder: Embedder,
    settings: BuildSettings,
    tokenizer: Tokenizer,
) -> Manifest:
    return Manifest(
        created=_now(),
        model=Model(name=embedder.name, dim=embedder.dim, normalized=True),
        chunker=settings.chunking,
        lexical=Lexical(
            tokenizer=tokenizer.version,
            k1=settings.bm25_k1,
            b=settings.bm25_b,
            title_boost=settings.bm25_title_boost,
        ),
        dense=Dense(metric="inner_product", hnsw_threshold=settings.hnsw_threshold),
        corpus=Corpus(fingerprint=corpus_fingerprint(load)),
        counts=Counts(
            files=len(load.reports),
            sources=len(load.sources),
            documents=len(load.documents),
            chunks=len(chunks),
            chunks_by_language=chunks_by_language(chunks),
            sentences=len(sentences),
        ),
        sentence_windows=settings.sentence_windows,
    )


def remove_documents(
    index_dir: Path,
    doc_ids: set[str],
    *,
    hnsw_threshold: int,
    before_publish: Callable[[Path], None] | None = None,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Publish a new version of ``index_dir`` without ``doc_ids`` (vectors reused, BM25
    rebuilt with the index's own parameters and ``tokenizer``, a new one when not given);
    raises DocumentNotFound for an unknown id.

    The corpus is not touched: an ingest of a corpus still holding the file adds it back.
    """
    from medcite.index.errors import DocumentNotFound
    from medcite.index.store import load_index

    with writer_lock(index_dir):
        current = load_index(index_dir)
        unknown = sorted(doc_ids - current.documents.keys())
        if unknown:
            raise DocumentNotFound(f"no document {unknown[0]!r} in the index")
        keep = [i for i, c in enumerate(current.chunks) if c.doc_id not in doc_ids]
        if not keep:
            raise NothingToIndex("removing these documents would leave the index empty")
        chunks = [current.chunks[i] for i in keep]
        new_row = np.full(len(current.chunks), -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep))
        sentence_keep = np.flatnonzero(new_row[current.sentences[:, 0]] >= 0)
        sentences = current.sentences[sentence_keep].copy()
        sentences[:, 0] = new_row[sentences[:, 0]]
        documents = [d for d in current.documents.values() if d.doc_id not in doc_ids]
        used = {d.source for d in documents}
        was = current.manifest
        bm25 = build_bm25(
            lexical_corpus(
                [passage_text(c, current.documents[c.doc_id]) for c in chunks],
                [current.documents[c.doc_id].title for c in chunks],
                was.lexical.title_boost,
                tokenizer or Tokenizer(),
            ),
            k1=float(was.lexical.k1),
            b=float(was.lexical.b),
        )
        manifest = replace(
            was,
            created=_now(),
            # No longer the corpus on disk: an evaluation or ingest will rebuild it.
            corpus=Corpus(
                fingerprint=was.corpus.fingerprint + "-removed",
                removed=tuple(sorted(set(was.corpus.removed or ()) | doc_ids)),
            ),
            counts=replace(
                was.counts,
                documents=len(documents),
                chunks=len(chunks),
                chunks_by_language=chunks_by_language(chunks),
            ),
        )
        return write_version(
            index_dir,
            manifest=manifest,
            sources=[s for s in current.sources.values() if s.source in used],
            documents=documents,
            chunks=chunks,
            vectors=np.asarray(current.vectors)[keep],
            sentences=sentences,
            sentence_vectors=np.asarray(current.sentence_vectors)[sentence_keep],
            bm25=bm25,
            hnsw_threshold=hnsw_threshold,
            reports=current.reports,
            before_publish=before_publish,
        )
