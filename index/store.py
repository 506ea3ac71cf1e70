"""The index on disk: plain files plus a manifest, replaced atomically.

Layout of an index directory ``D``::

    D/CURRENT              name of the live version (replaced with os.replace)
    D/v-<time>-<rand>/     one complete version
        manifest.json      format version, model, chunker, lexical and dense settings,
                           corpus fingerprint, counts, and the size of every file below
        sources.jsonl      the decoded source texts (offsets point into these)
        documents.jsonl    documents with their metadata and kept segments
        chunks.jsonl       chunks, row-aligned with vectors.npy
        vectors.npy        float32 [n_chunks, dim], L2-normalised
        sentences.npy      int64 [n_sentences, 3]: chunk row, start, end of every sentence
                           of every chunk, in chunk order (where each chunk's run starts is
                           derived at load)
        sentence-vectors.npy  float32 [n_sentences, dim]: each sentence embedded alone (a
                           chunk of one sentence reuses the chunk's vector)
        dense-<lang>.faiss FAISS inner-product index per language partition
        rows-<lang>.npy    chunk rows of that partition
        bm25/              bm25s index over all chunks
        report.json        what became of every input file

A version is written under ``D/.tmp-*`` and renamed into place before CURRENT points at
it, so a crash at any moment leaves the previous version live and loadable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from index.retrieve import Backend, EmbeddedPartition, EmbeddedRetriever, Retriever
from ingest.types import Chunk, ChunkSettings, Document, FileReport, Segment, SourceText

if TYPE_CHECKING:
    from index.relevance import ProbeLevels

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: sentence vectors (evidence, sentence windows)
CURRENT = "CURRENT"


@dataclass
class Partition:
    language: str
    rows: np.ndarray  # int64 chunk rows
    faiss_index: Any  # None when another backend serves the index


@dataclass
class LoadedIndex:
    path: Path  # the version directory
    manifest: dict[str, Any]
    sources: dict[str, SourceText]
    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: np.ndarray
    sentences: np.ndarray  # int64 [n, 3]: chunk row, start, end
    sentence_offsets: np.ndarray  # int64 [n_chunks + 1]
    sentence_vectors: np.ndarray
    partitions: dict[str, Partition]
    bm25: Any  # None when another backend serves the index
    reports: list[FileReport]
    retriever: Retriever  # candidate retrieval: FAISS + bm25s here, or a Milvus collection
    # Off-topic probe levels (index.relevance), measured once by the first search or the
    # engine's load; and the lexical tokens of chunks already scored for coverage.
    probes: ProbeLevels | None = None
    token_memo: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_documents(version: Path) -> dict[str, Document]:
    """A version directory's documents by id."""
    documents = {}
    for row in _read_jsonl(version / "documents.jsonl"):
        row["segments"] = tuple(Segment(**s) for s in row["segments"])
        documents[row["doc_id"]] = Document(**row)
    return documents


def read_chunks(version: Path) -> list[Chunk]:
    """A version directory's chunks, in row order (aligned with vectors.npy)."""
    return [Chunk(**row) for row in _read_jsonl(version / "chunks.jsonl")]


def sentence_offsets(sentences: np.ndarray, n_chunks: int) -> np.ndarray:
    """Where each chunk's sentences start in ``sentences`` (sorted by chunk row)."""
    rows = sentences[:, 0] if sentences.size else np.zeros(0, dtype=np.int64)
    return np.searchsorted(rows, np.arange(n_chunks + 1), side="left").astype(np.int64)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time per index directory (a second ingest waits)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_faiss(vectors: np.ndarray, *, hnsw_threshold: int, hnsw_m: int = 32) -> Any:
    import faiss

    dim = vectors.shape[1]
    index: Any
    if vectors.shape[0] >= hnsw_threshold:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dim)
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_version(
    index_dir: Path,
    *,
    manifest: dict[str, Any],
    sources: Sequence[SourceText],
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    sentences: np.ndarray,
    sentence_vectors: np.ndarray,
    bm25: Any,
    hnsw_threshold: int,
    reports: Sequence[FileReport] = (),
    before_publish: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete new version and make it live atomically; returns its directory.

    The caller must hold :func:`writer_lock`. ``before_publish`` is a test hook called with
    the finished (not yet live) version directory.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"v-{stamp}-{secrets.token_hex(4)}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir(parents=True)
    _write_jsonl(tmp / "sources.jsonl", (dataclasses.asdict(s) for s in sources))
    _write_jsonl(tmp / "documents.jsonl", (dataclasses.asdict(d) for d in documents))
    _write_jsonl(tmp / "chunks.jsonl", (dataclasses.asdict(c) for c in chunks))
    np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    np.save(tmp / "sentences.npy", np.ascontiguousarray(sentences, dtype=np.int64))
    np.save(tmp / "sentence-vectors.npy", np.ascontiguousarray(sentence_vectors, dtype=np.float32))
    import faiss

    languages = sorted({c.language for c in chunks})
    partitions = {}
    for lang in languages:
        rows = np.array([i for i, c in enumerate(chunks) if c.language == lang], dtype=np.int64)
        np.save(tmp / f"rows-{lang}.npy", rows)
        index = build_faiss(vectors[rows], hnsw_threshold=hnsw_threshold)
        faiss.write_index(index, str(tmp / f"dense-{lang}.faiss"))
        partitions[lang] = {
            "chunks": int(rows.size),
            "type": "hnsw" if "HNSW" in type(index).__name__ else "flat",
        }
    bm25.save(str(tmp / "bm25"), show_progress=False)
    (tmp / "report.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in reports], ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    manifest = dict(manifest, format_version=FORMAT_VERSION, partitions=partitions)
    manifest["files"] = {
        str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    (tmp / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    _fsync_tree(tmp)
    final = index_dir / name
    os.replace(tmp, final)
    if before_publish is not None:
        before_publish(final)
    pointer = index_dir / f".{CURRENT}.{secrets.token_hex(4)}"
    pointer.write_text(name + "\n", encoding="utf-8")
    with pointer.open("rb") as fh:
        os.fsync(fh.fileno())
    previous = current_version(index_dir)
    os.replace(pointer, index_dir / CURRENT)
    _fsync_dir(index_dir)
    _collect_garbage(index_dir, keep={name, previous} - {None})
    LOG.info("index version %s is live in %s", name, index_dir)
    return final


def _collect_garbage(index_dir: Path, keep: set[str | None]) -> None:
    """Remove unfinished temp dirs and versions older than the previous one."""
    for path in index_dir.iterdir():
        if path.name in keep or path.name in {CURRENT, ".lock"}:
            continue
        if path.is_dir() and (path.name.startswith(".tmp-") or path.name.startswith("v-")):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(f".{CURRENT}."):
            path.unlink(missing_ok=True)


def current_version(index_dir: Path) -> str | None:
    try:
        name = (index_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The live version's manifest; raises IndexNotFound / IndexCorrupt."""
    name = current_version(index_dir)
    if name is None:
        raise IndexNotFound(
            f"no index in {index_dir}: build one with `medcite ingest PATH --index-dir {index_dir}`"
        )
    version = index_dir / name
    try:
        manifest: dict[str, Any] = json.loads((version / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(
            f"the index in {index_dir} is unreadable ({exc}); rebuild it with `medcite ingest`"
        ) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatch(
            f"the index in {index_dir} has format version {manifest.get('format_version')}, "
            f"this medcite reads version {FORMAT_VERSION}; rebuild it with `medcite ingest`"
        )
    return manifest


def check_compatible(
    manifest: dict[str, Any], *, model_name: str, dim: int, chunking: ChunkSettings | None = None
) -> None:
    """Refuse an index built with another model or chunker, naming the fix."""
    model = manifest.get("model", {})
    if model.get("name") != model_name or model.get("dim") != dim:
        raise IndexMismatch(
            f"the index was built with model {model.get('name')!r} (dim {model.get('dim')}) "
            f"but the configured model is {model_name!r} (dim {dim}); rebuild the index with "
            f"`medcite ingest` or set MEDCITE_MODEL={model.get('name')}"
        )
    from index.tokenize import TOKENIZER_VERSION

    built_with = manifest.get("lexical", {}).get("tokenizer")
    if built_with != TOKENIZER_VERSION:
        raise IndexMismatch(
            f"the index's BM25 tokens come from tokenizer {built_with!r} but this version of "
            f"medcite tokenizes queries with {TOKENIZER_VERSION!r}; rebuild the index with "
            "`medcite ingest`"
        )
    if chunking is not None and manifest.get("chunker") != chunking.as_dict():
        raise IndexMismatch(
            f"the index was chunked with {manifest.get('chunker')} but the configured chunker "
            f"is {chunking.as_dict()}; rebuild the index with `medcite ingest`"
        )


def load_index(index_dir: Path, *, backend: Backend | None = None) -> LoadedIndex:
    """Load the live version; raises IndexNotFound, IndexMismatch or IndexCorrupt.

    With ``backend`` (Milvus), candidates come from it and the FAISS and BM25 files are not
    loaded; the chunks, documents and sources that citations point into always come from
    the version directory."""
    manifest = read_manifest(index_dir)
    version = index_dir / str(current_version(index_dir))
    for rel, size in manifest.get("files", {}).items():
        path = version / rel
        if not path.is_file() or path.stat().st_size != size:
            raise IndexCorrupt(
                f"index file {rel} in {version} is missing or truncated; rebuild the index "
                "with `medcite ingest`"
            )
    try:
        import bm25s
        import faiss

        sources = {
            row["source"]: SourceText(**row) for row in _read_jsonl(version / "sources.jsonl")
        }
        documents = read_documents(version)
        chunks = read_chunks(version)
        vectors = np.load(version / "vectors.npy", mmap_mode="r")
        sentences = np.load(version / "sentences.npy")
        sentence_vectors = np.load(version / "sentence-vectors.npy", mmap_mode="r")
        partitions = {}
        embedded = backend is None
        for lang in manifest.get("partitions", {}):
            rows = np.load(version / f"rows-{lang}.npy")
            faiss_index = (
                faiss.read_index(str(version / f"dense-{lang}.faiss")) if embedded else None
            )
            partitions[lang] = Partition(lang, rows, faiss_index)
        bm25 = bm25s.BM25.load(str(version / "bm25"), show_progress=False) if embedded else None
        reports = [FileReport(**r) for r in json.loads((version / "report.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorrupt(
            f"the index in {version} cannot be loaded ({type(exc).__name__}: {exc}); rebuild "
            "it with `medcite ingest`"
        ) from exc
    if vectors.shape[0] != len(chunks) or vectors.shape[1] != manifest["model"]["dim"]:
        raise IndexCorrupt(
            f"the index in {version} is inconsistent ({vectors.shape[0]} vectors for "
            f"{len(chunks)} chunks); rebuild it with `medcite ingest`"
        )
    rows = sentences[:, 0] if sentences.ndim == 2 and sentences.shape[1:] == (3,) else None
    if (
        rows is None
        or sentences.shape[0] != sentence_vectors.shape[0]
        or sentence_vectors.shape[1:] != vectors.shape[1:]
        # in chunk order, every chunk with at least one sentence
        or rows.size == 0
        or rows[0] != 0
        or rows[-1] != len(chunks) - 1
        or not bool(np.all((np.diff(rows) == 0) | (np.diff(rows) == 1)))
    ):
        raise IndexCorrupt(
            f"the index in {version} is inconsistent ({sentences.shape[0]} sentences, "
            f"{sentence_vectors.shape[0]} sentence vectors); rebuild it with `medcite ingest`"
        )
    retriever: Retriever
    if backend is None:
        retriever = EmbeddedRetriever(
            {lang: EmbeddedPartition(p.rows, p.faiss_index) for lang, p in partitions.items()},
            bm25,
            len(chunks),
        )
    else:
        retriever = backend.open(version, {lang: p.rows for lang, p in partitions.items()})
    return LoadedIndex(
        path=version,
        manifest=manifest,
        sources=sources,
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        sentences=sentences,
        sentence_offsets=sentence_offsets(sentences, len(chunks)),
        sentence_vectors=sentence_vectors,
        partitions=partitions,
        bm25=bm25,
        reports=reports,
        retriever=retriever,
    )
