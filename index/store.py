"""The index on disk: plain files plus a manifest, replaced atomically.

Layout of an index directory ``D``::

    D/CURRENT              name of the live version (replaced with os.replace)
    D/v-<time>-<rand>/     one complete version
        manifest.json      format version, model, chunker, lexical and dense settings,
                           corpus fingerprint, counts, and the size and sha256 of every
                           file below
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
it, so a crash at any moment leaves the previous version live and loadable. A write that
fails (disk full, quota, I/O error) removes its temp folder at once and raises
IndexWriteError; temp folders of a killed writer go at the start of the next write.

Every file is checked against the manifest (size, then sha256 read in chunks) before it
is read, and arrays are read into memory, not memory-mapped: a file changed or truncated
under a running server neither changes what it serves nor kills it (SIGBUS), and the next
load or reload refuses it. Manifests from before checksums load with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
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

from medcite.index.errors import IndexCorrupt, IndexMismatch, IndexNotFound, IndexWriteError
from medcite.index.manifest import FORMAT_VERSION as FORMAT_VERSION
from medcite.index.manifest import Checksums, Manifest, PartitionInfo
from medcite.index.manifest import check_compatible as check_compatible  # serving's check
from medcite.index.retrieve import (
    HNSW_EF_SEARCH,
    Backend,
    EmbeddedPartition,
    EmbeddedRetriever,
    Retriever,
)
from medcite.ingest.types import Chunk, Document, FileReport, Segment, SourceText

if TYPE_CHECKING:
    from medcite.index.relevance import ProbeLevels

LOG = logging.getLogger(__name__)

CURRENT = "CURRENT"
CHECKSUM = "sha256"  # of every file, in the manifest's checksums (absent before checksums)


@dataclass(frozen=True)
class Partition:
    language: str
    rows: np.ndarray  # int64 chunk rows (its FAISS index, if any, is the retriever's)


@dataclass
class LoadedIndex:
    path: Path  # the version directory
    manifest: Manifest
    sources: dict[str, SourceText]
    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: np.ndarray
    sentences: np.ndarray  # int64 [n, 3]: chunk row, start, end
    sentence_offsets: np.ndarray  # int64 [n_chunks + 1]
    sentence_vectors: np.ndarray
    partitions: dict[str, Partition]
    reports: list[FileReport]
    retriever: Retriever  # candidate retrieval: FAISS + bm25s here, or a Milvus collection
    # Off-topic probe levels (index.relevance), measured once by the first search or the
    # engine's load; and the lexical tokens of chunks already scored for coverage.
    probes: ProbeLevels | None = None
    token_memo: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.manifest.model.name


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    # orjson: the JSONL files are most of an index's load time (3x faster than json here).
    import orjson

    with path.open("rb") as fh:  # line by line: a large file is never held whole
        return [orjson.loads(line) for line in fh if line.strip()]


def read_documents(version: Path) -> dict[str, Document]:
    """A version directory's documents by id."""
    documents = {}
    for row in _read_jsonl(version / "documents.jsonl"):
        row["segments"] = tuple(Segment(**s) for s in row["segments"])
        documents[row["doc_id"]] = Document(**row)
    return documents


def _source(row: dict[str, Any]) -> SourceText:
    """A sources.jsonl row; ``pages`` (PDF page starts) is absent before PDF support."""
    pages = row.pop("pages", None)
    return SourceText(**row, pages=tuple(pages) if pages is not None else None)


def _source_row(source: SourceText) -> dict[str, Any]:
    row = dataclasses.asdict(source)
    if row["pages"] is None:
        del row["pages"]  # rows of non-PDF sources stay as they were
    return row


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
def writer_lock(index_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """One writer at a time per index directory (a second ingest waits).

    With ``wait=False`` it yields False at once when another writer holds the lock."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_temp_dirs(index_dir: Path) -> None:
    """Remove the temp folders of writers that died (kill -9) before finishing.

    The caller must hold :func:`writer_lock`: then no temp folder is in use."""
    for path in index_dir.glob(".tmp-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            LOG.info("removed %s, left by an ingest that did not finish", path.name)


def remove_stale_temp_dirs(index_dir: Path) -> None:
    """:func:`remove_temp_dirs` unless another writer is at work (its folder is in use)."""
    if not index_dir.is_dir():
        return
    with writer_lock(index_dir, wait=False) as locked:
        if locked:
            remove_temp_dirs(index_dir)


def file_checksum(path: Path) -> str:
    """The file's sha256, read in chunks: memory stays flat whatever its size."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, CHECKSUM).hexdigest()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[Path]:
    """``path``; an OSError raised while writing it names it (a failed write() does not)."""
    try:
        yield path
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def build_faiss(vectors: np.ndarray, *, hnsw_threshold: int, hnsw_m: int = 32) -> Any:
    import faiss

    dim = vectors.shape[1]
    index: Any
    if vectors.shape[0] >= hnsw_threshold:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = HNSW_EF_SEARCH  # the file's default; search passes its own
    else:
        index = faiss.IndexFlatIP(dim)
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_version(
    index_dir: Path,
    *,
    manifest: Manifest,
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

    The caller must hold :func:`writer_lock`. Temp folders left by killed writers are
    removed first. An OSError while writing (ENOSPC, EDQUOT, EFBIG, EIO, ...) removes this
    version's temp folder and raises IndexWriteError; the live version is untouched.
    ``before_publish`` is a test hook called with the finished (not yet live) version
    directory.
    """
    remove_temp_dirs(index_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"v-{stamp}-{secrets.token_hex(4)}"
    tmp = index_dir / f".tmp-{name}"
    version = _Contents(
        manifest, sources, documents, chunks, vectors, sentences, sentence_vectors, bm25,
        hnsw_threshold, reports,
    )  # fmt: skip
    try:
        tmp.mkdir(parents=True)
        version.write(tmp)
        _fsync_tree(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            needed = version.least_bytes()
            raise write_error(index_dir, name, exc, tmp=tmp, needed=needed) from exc
        raise
    final = index_dir / name
    os.replace(tmp, final)
    if before_publish is not None:
        before_publish(final)
    _publish(index_dir, name)
    return final


@dataclass(frozen=True)
class _Contents:
    """What one version holds, as :func:`write_version` receives it."""

    manifest: Manifest  # without the written files (partitions, files, checksums)
    sources: Sequence[SourceText]
    documents: Sequence[Document]
    chunks: Sequence[Chunk]
    vectors: np.ndarray
    sentences: np.ndarray
    sentence_vectors: np.ndarray
    bm25: Any
    hnsw_threshold: int
    reports: Sequence[FileReport]

    def write(self, tmp: Path) -> None:
        """Every file of a version into ``tmp``, the manifest (sizes, checksums) last."""
        with _naming(tmp / "sources.jsonl") as path:
            _write_jsonl(path, (_source_row(s) for s in self.sources))
        with _naming(tmp / "documents.jsonl") as path:
            _write_jsonl(path, (dataclasses.asdict(d) for d in self.documents))
        with _naming(tmp / "chunks.jsonl") as path:
            _write_jsonl(path, (dataclasses.asdict(c) for c in self.chunks))
        _save_array(tmp / "vectors.npy", self.vectors, np.float32)
        _save_array(tmp / "sentences.npy", self.sentences, np.int64)
        _save_array(tmp / "sentence-vectors.npy", self.sentence_vectors, np.float32)
        partitions: dict[str, PartitionInfo] = {}
        for lang in sorted({c.language for c in self.chunks}):
            rows = np.array(
                [i for i, c in enumerate(self.chunks) if c.language == lang], dtype=np.int64
            )
            _save_array(tmp / f"rows-{lang}.npy", rows, np.int64)
            index = build_faiss(self.vectors[rows], hnsw_threshold=self.hnsw_threshold)
            _write_faiss(tmp / f"dense-{lang}.faiss", index)
            partitions[lang] = PartitionInfo(
                chunks=int(rows.size), type="hnsw" if "HNSW" in type(index).__name__ else "flat"
            )
        with _naming(tmp / "bm25") as path:
            self.bm25.save(str(path), show_progress=False)
        with _naming(tmp / "report.json") as path:
            path.write_text(
                json.dumps(
                    [dataclasses.asdict(r) for r in self.reports], ensure_ascii=False, indent=1
                ),
                encoding="utf-8",
            )
        files = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
        manifest = self.manifest.written(
            partitions,
            files={str(p.relative_to(tmp)): p.stat().st_size for p in files},
            checksums=Checksums(
                algorithm=CHECKSUM,
                files={str(p.relative_to(tmp)): file_checksum(p) for p in files},
            ),
        )
        with _naming(tmp / "manifest.json") as path:
            path.write_text(
                json.dumps(manifest.to_json(), ensure_ascii=False, indent=1), encoding="utf-8"
            )

    def least_bytes(self) -> int:
        """A lower bound of the version's size: texts, arrays and FAISS copies of vectors."""
        floats = 4 * (2 * self.vectors.size + self.sentence_vectors.size)
        ints = 8 * (self.sentences.size + len(self.chunks))
        texts = sum(len(s.text.encode()) for s in self.sources)
        texts += sum(len(c.text.encode()) for c in self.chunks)
        return int(floats + ints + texts)


def _save_array(path: Path, array: np.ndarray, dtype: type[np.generic]) -> None:
    with _naming(path):
        np.save(path, np.ascontiguousarray(array, dtype=dtype))


def _write_faiss(path: Path, index: Any) -> None:
    """Through Python's file I/O, so a failed write is an OSError with its errno (FAISS's
    own writer turns it into a RuntimeError with a message only)."""
    import faiss

    with _naming(path), path.open("wb") as fh:
        faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write))  # type: ignore[attr-defined]


def _publish(index_dir: Path, name: str) -> None:
    """Point CURRENT at version ``name``; on failure remove the version, keep the live one."""
    pointer = index_dir / f".{CURRENT}.{secrets.token_hex(4)}"
    previous = current_version(index_dir)
    try:
        pointer.write_text(name + "\n", encoding="utf-8")
        with pointer.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, index_dir / CURRENT)
    except OSError as exc:
        with contextlib.suppress(OSError):
            pointer.unlink(missing_ok=True)
        shutil.rmtree(index_dir / name, ignore_errors=True)
        raise write_error(index_dir, name, exc) from exc
    _fsync_dir(index_dir)
    _collect_garbage(index_dir, keep={name, previous} - {None})
    LOG.info("index version %s is live in %s", name, index_dir)


# What to do about a failed write, by errno.
_WRITE_HINTS = {
    errno.ENOSPC: "free some space or set MEDCITE_INDEX_DIR to a larger disk",
    errno.EDQUOT: "free some space or raise the disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f) or use a file system with a higher one",
    errno.EIO: "check the disk, which reported an I/O error (dmesg, SMART)",
    errno.EROFS: "make the file system writable or set MEDCITE_INDEX_DIR to another disk",
}


def write_error(
    index_dir: Path,
    name: str,
    exc: OSError,
    *,
    tmp: Path | None = None,
    needed: int | None = None,
) -> IndexWriteError:
    """IndexWriteError naming the folder, the file, the errno, the free and needed space."""
    code = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    reason = f"{exc.strerror or type(exc).__name__}" + (f" [{code}]" if code else "")
    where = ""
    if exc.filename is not None:
        failed = Path(str(exc.filename))
        inside = tmp is not None and failed.is_relative_to(tmp)
        where = f" while writing {failed.relative_to(tmp) if tmp and inside else failed.name}"
    space = ""
    with contextlib.suppress(OSError):
        space = f"; {_size(shutil.disk_usage(index_dir).free)} free there"
    if needed:
        space += f", the new version needs at least {_size(needed)}"
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the disk and the folder's permissions")
    return IndexWriteError(
        f"cannot write index version {name} in {index_dir}: {reason}{where}{space}; the "
        f"partial version was removed and the live index is unchanged; {hint}, then run "
        "`medcite ingest` again"
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


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


def read_manifest(index_dir: Path) -> Manifest:
    """The live version's manifest; raises IndexNotFound / IndexCorrupt / IndexMismatch."""
    return version_manifest(index_dir / _live(index_dir))


def _live(index_dir: Path) -> str:
    name = current_version(index_dir)
    if name is None:
        raise IndexNotFound(
            f"no index in {index_dir}: build one with `medcite ingest PATH --index-dir {index_dir}`"
        )
    return name


def _reason(exc: Exception, version: Path) -> str:
    """Why reading ``version`` failed, without the absolute paths errors carry."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'unreadable'}"
    return f"{type(exc).__name__}: {str(exc).replace(str(version), version.name)}"


def version_manifest(version: Path) -> Manifest:
    """A version directory's manifest; raises IndexCorrupt (ManifestInvalid naming a bad
    key) or IndexMismatch (another format version)."""
    try:
        data = json.loads((version / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(
            f"index version {version.name}: manifest.json is unreadable ({_reason(exc, version)}); "
            "rebuild the index with `medcite ingest`"
        ) from exc
    return Manifest.from_json(data, version=version.name)


def verify_version(version: Path, manifest: Manifest) -> None:
    """Check every file the manifest lists before anything reads it: its size, then its
    checksum (streamed). Raises IndexCorrupt naming the version and the file (never an
    absolute path); a manifest from before checksums passes on sizes, with a warning."""
    for rel, size in manifest.files.items():
        path = version / rel
        if not path.is_file() or path.stat().st_size != size:
            raise IndexCorrupt(
                f"index version {version.name}: file {rel} is missing or truncated; rebuild "
                "the index with `medcite ingest`"
            )
    checksums = manifest.checksums
    if checksums is None:
        LOG.warning(
            "index version %s has no checksums (written by an older medcite): its files are "
            "checked by size only; run `medcite ingest` to rebuild it with checksums",
            version.name,
        )
        return
    if checksums.algorithm != CHECKSUM:
        raise IndexMismatch(
            f"index version {version.name} has {checksums.algorithm!r} checksums, this "
            f"medcite checks {CHECKSUM!r}; rebuild it with `medcite ingest`"
        )
    started = time.perf_counter()
    for rel, digest in checksums.files.items():
        try:
            actual = file_checksum(version / rel)
        except OSError as exc:
            raise IndexCorrupt(
                f"index version {version.name}: file {rel} cannot be read "
                f"({_reason(exc, version)}); rebuild the index with `medcite ingest`"
            ) from exc
        if actual != digest:
            raise IndexCorrupt(
                f"index version {version.name}: file {rel} does not match its checksum (it "
                "changed after the index was written); rebuild the index with `medcite ingest`"
            )
    LOG.info(
        "checked %d files of index version %s in %.2f s",
        len(checksums.files),
        version.name,
        time.perf_counter() - started,
    )


def load_index(
    index_dir: Path, *, backend: Backend | None = None, fallback: bool = False
) -> LoadedIndex:
    """Load the live version; raises IndexNotFound, IndexMismatch or IndexCorrupt.

    With ``backend`` (Milvus), candidates come from it and the FAISS and BM25 files are not
    loaded; the chunks, documents and sources that citations point into always come from
    the version directory. With ``fallback`` (a server starting), a damaged live version
    gives way to the newest intact older one, with a warning; without it (a reload, a
    rebuild from the live version) the damage is raised."""
    version = index_dir / _live(index_dir)
    try:
        return _load_version(version, backend)
    except IndexCorrupt as damage:
        if not fallback:
            raise
        return _load_fallback(index_dir, version, damage, backend)


def _load_fallback(
    index_dir: Path, live: Path, damage: IndexCorrupt, backend: Backend | None
) -> LoadedIndex:
    for older in _older_versions(index_dir, live):
        try:
            index = _load_version(older, backend)
        except (IndexCorrupt, IndexMismatch) as exc:
            LOG.warning("older index version %s cannot be used either: %s", older.name, exc)
            continue
        LOG.warning(
            "THE LIVE INDEX VERSION IS DAMAGED: %s -- serving the older intact version %s "
            "instead; rebuild the index with `medcite ingest`",
            damage,
            older.name,
        )
        return index
    raise IndexCorrupt(f"{damage} (no older intact version to fall back to)") from damage


def _older_versions(index_dir: Path, live: Path) -> list[Path]:
    """Finished versions written before ``live``, newest first (a version newer than the
    live one never went live, e.g. its Milvus publish failed, so it is no fallback)."""

    def written(path: Path) -> tuple[str, int]:
        parts = path.name.split("-")
        stamp = parts[1] if len(parts) > 2 else ""
        try:
            return stamp, path.stat().st_mtime_ns
        except OSError:
            return stamp, 2**63

    limit = written(live)
    older = [
        p
        for p in index_dir.glob("v-*")
        if p.is_dir() and p.name != live.name and written(p) < limit
    ]
    return sorted(older, key=written, reverse=True)


def _load_version(version: Path, backend: Backend | None) -> LoadedIndex:
    manifest = version_manifest(version)
    verify_version(version, manifest)
    try:
        sources = {row["source"]: _source(row) for row in _read_jsonl(version / "sources.jsonl")}
        documents = read_documents(version)
        chunks = read_chunks(version)
        # In memory, not memory-mapped: a file truncated under a mapping kills the process
        # (SIGBUS) at the next search, and one overwritten in place changes what is served.
        vectors = np.load(version / "vectors.npy")
        sentences = np.load(version / "sentences.npy")
        sentence_vectors = np.load(version / "sentence-vectors.npy")
        partitions = {
            lang: Partition(lang, np.load(version / f"rows-{lang}.npy"))
            for lang in manifest.partitions
        }
        # FAISS and BM25 only for the embedded backend, held by its retriever alone.
        embedded = _embedded(version, partitions, len(chunks)) if backend is None else None
        reports = [FileReport(**r) for r in json.loads((version / "report.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorrupt(
            f"index version {version.name} cannot be loaded ({_reason(exc, version)}); rebuild "
            "it with `medcite ingest`"
        ) from exc
    if vectors.shape[0] != len(chunks) or vectors.shape[1] != manifest.model.dim:
        raise IndexCorrupt(
            f"index version {version.name} is inconsistent ({vectors.shape[0]} vectors for "
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
            f"index version {version.name} is inconsistent ({sentences.shape[0]} sentences, "
            f"{sentence_vectors.shape[0]} sentence vectors); rebuild it with `medcite ingest`"
        )
    retriever: Retriever
    if embedded is not None:
        retriever = embedded
    else:
        assert backend is not None
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
        reports=reports,
        retriever=retriever,
    )


def _embedded(version: Path, partitions: dict[str, Partition], n_chunks: int) -> Retriever:
    """The version's FAISS indexes and bm25s index, in an EmbeddedRetriever."""
    import bm25s
    import faiss

    dense = {
        lang: EmbeddedPartition(p.rows, faiss.read_index(str(version / f"dense-{lang}.faiss")))
        for lang, p in partitions.items()
    }
    bm25 = bm25s.BM25.load(str(version / "bm25"), show_progress=False)
    return EmbeddedRetriever(dense, bm25, n_chunks)
