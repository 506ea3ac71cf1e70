"""An index version's manifest: what it was built with and what it holds.

One frozen :class:`Manifest` read from and written to ``manifest.json`` (the JSON is the
same as before this type existed), and one :func:`check_compatible` that serving and
evaluation use to refuse an index built with other settings.

``manifest.json`` of format version 2, keys in the order they are written::

    created           UTC time the version was built
    model             name, dim, normalized
    chunker           max_tokens, overlap_sentences
    lexical           tokenizer, k1, b, title_boost (0 when absent)
    dense             metric, hnsw_threshold
    corpus            fingerprint, removed (only after documents were removed)
    counts            files, sources, documents, chunks, chunks_by_language, sentences
    sentence_windows  (true when absent)
    format_version
    partitions        per language: chunks, type
    files             size of every file of the version
    checksums         algorithm, files (absent in versions written before checksums)

Unknown keys are ignored, as the readers before this type ignored them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medcite.index.errors import IndexCorrupt, IndexMismatch
from medcite.ingest.types import ChunkSettings

if TYPE_CHECKING:
    from medcite.index.build import BuildSettings

FORMAT_VERSION = 2  # 2: sentence vectors (evidence, sentence windows)


class ManifestInvalid(IndexCorrupt):
    """manifest.json is a JSON object but not a manifest: a key is missing or of the wrong
    type. The message names the key."""


@dataclass(frozen=True)
class Model:
    name: str
    dim: int
    normalized: bool = True


@dataclass(frozen=True)
class Lexical:
    """How the BM25 index was built: query tokens must come from the same tokenizer."""

    tokenizer: str
    k1: float
    b: float
    title_boost: int = 0  # absent before title-boosted BM25


@dataclass(frozen=True)
class Dense:
    metric: str
    hnsw_threshold: int


@dataclass(frozen=True)
class Corpus:
    fingerprint: str
    removed: tuple[str, ...] | None = None  # doc ids removed since the corpus was read


@dataclass(frozen=True)
class Counts:
    files: int
    sources: int
    documents: int
    chunks: int
    chunks_by_language: Mapping[str, int]
    sentences: int


@dataclass(frozen=True)
class PartitionInfo:
    chunks: int
    type: str  # "flat" or "hnsw"


@dataclass(frozen=True)
class Checksums:
    algorithm: str
    files: Mapping[str, str]  # file -> hex digest


@dataclass(frozen=True)
class Manifest:
    """A version's manifest. ``partitions``, ``files`` and ``checksums`` describe the
    written files: :meth:`written` fills them in when the version is written."""

    created: str
    model: Model
    chunker: ChunkSettings
    lexical: Lexical
    dense: Dense
    corpus: Corpus
    counts: Counts
    sentence_windows: bool = True  # absent before sentence windows
    format_version: int = FORMAT_VERSION
    partitions: Mapping[str, PartitionInfo] = field(default_factory=dict)
    files: Mapping[str, int] = field(default_factory=dict)  # file -> size in bytes
    checksums: Checksums | None = None  # None in versions written before checksums

    def written(
        self,
        partitions: Mapping[str, PartitionInfo],
        files: Mapping[str, int],
        checksums: Checksums,
    ) -> Manifest:
        """This manifest for a version just written with these files."""
        return dataclasses.replace(
            self,
            format_version=FORMAT_VERSION,
            partitions=dict(partitions),
            files=dict(files),
            checksums=checksums,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as ``manifest.json`` holds it (same keys, same order)."""
        corpus: dict[str, Any] = {"fingerprint": self.corpus.fingerprint}
        if self.corpus.removed is not None:
            corpus["removed"] = list(self.corpus.removed)
        out: dict[str, Any] = {
            "created": self.created,
            "model": dataclasses.asdict(self.model),
            "chunker": self.chunker.as_dict(),
            "lexical": dataclasses.asdict(self.lexical),
            "dense": dataclasses.asdict(self.dense),
            "corpus": corpus,
            "counts": {
                "files": self.counts.files,
                "sources": self.counts.sources,
                "documents": self.counts.documents,
                "chunks": self.counts.chunks,
                "chunks_by_language": dict(self.counts.chunks_by_language),
                "sentences": self.counts.sentences,
            },
            "sentence_windows": self.sentence_windows,
            "format_version": self.format_version,
            "partitions": {lang: dataclasses.asdict(p) for lang, p in self.partitions.items()},
            "files": dict(self.files),
        }
        if self.checksums is not None:
            out["checksums"] = {
                "algorithm": self.checksums.algorithm,
                "files": dict(self.checksums.files),
            }
        return out

    @classmethod
    def from_json(cls, data: Any, *, version: str | None = None) -> Manifest:
        """Parse a ``manifest.json`` object. Raises IndexMismatch for another format
        version, IndexCorrupt when ``data`` is not an object, and ManifestInvalid naming
        the key that is missing or of the wrong type. ``version`` (the version directory's
        name) is named in the messages."""
        where = f"index version {version}" if version else "the index"
        if not isinstance(data, dict):
            raise IndexCorrupt(
                f"{where}: manifest.json is not an object; rebuild the index with `medcite ingest`"
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(
                f"{where} has format version {data.get('format_version')}, this medcite "
                f"reads version {FORMAT_VERSION}; rebuild it with `medcite ingest`"
            )
        try:
            return _parse(_Object(data, ""))
        except _BadKey as bad:
            raise ManifestInvalid(
                f"{where}: manifest.json key {bad.key!r} {bad.problem}; rebuild the index "
                "with `medcite ingest`"
            ) from None


def check_compatible(
    manifest: Manifest,
    *,
    model_name: str,
    dim: int,
    chunking: ChunkSettings | None = None,
    build: BuildSettings | None = None,
    fingerprint: str | None = None,
) -> None:
    """Refuse (IndexMismatch) an index built with another model, tokenizer or chunker,
    naming the fix. Evaluation, which rebuilds its own index, also passes the ``build``
    settings (BM25 parameters, sentence windows, chunker) and the corpus ``fingerprint``
    it wants."""
    if fingerprint is not None and manifest.corpus.fingerprint != fingerprint:
        raise IndexMismatch("corpus changed")
    if build is not None:
        lexical = manifest.lexical
        if (lexical.k1, lexical.b, lexical.title_boost) != (
            build.bm25_k1,
            build.bm25_b,
            build.bm25_title_boost,
        ):
            raise IndexMismatch("BM25 parameters changed")
        if manifest.sentence_windows != build.sentence_windows:
            raise IndexMismatch("sentence windows switched")
        chunking = chunking if chunking is not None else build.chunking
    model = manifest.model
    if model.name != model_name or model.dim != dim:
        raise IndexMismatch(
            f"the index was built with model {model.name!r} (dim {model.dim}) "
            f"but the configured model is {model_name!r} (dim {dim}); rebuild the index with "
            f"`medcite ingest` or set MEDCITE_MODEL={model.name}"
        )
    from medcite.index.tokenize import TOKENIZER_VERSION

    built_with = manifest.lexical.tokenizer
    if built_with != TOKENIZER_VERSION:
        raise IndexMismatch(
            f"the index's BM25 tokens come from tokenizer {built_with!r} but this version of "
            f"medcite tokenizes queries with {TOKENIZER_VERSION!r}; rebuild the index with "
            "`medcite ingest`"
        )
    if chunking is not None and manifest.chunker != chunking:
        raise IndexMismatch(
            f"the index was chunked with {manifest.chunker.as_dict()} but the configured "
            f"chunker is {chunking.as_dict()}; rebuild the index with `medcite ingest`"
        )


# Parsing: every value checked for its JSON type, the bad key named by its path.


class _BadKey(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


_MISSING: Any = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_KINDS: dict[Callable[[Any], bool], str] = {
    _is_str_list: "a list of strings",
    _is_int: "an integer",
    _is_number: "a number",
    _is_str: "a string",
    _is_bool: "true or false",
}


class _Object:
    """A JSON object at ``path`` (dotted keys from the manifest's root)."""

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def value(self, key: str, check: Callable[[Any], bool], default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise _BadKey(self.name(key), "is missing")
            return default
        value = self.data[key]
        if not check(value):
            raise _BadKey(self.name(key), f"is not {_KINDS[check]} ({type(value).__name__})")
        return value

    def object(self, key: str) -> _Object:
        if key not in self.data:
            raise _BadKey(self.name(key), "is missing")
        value = self.data[key]
        if not isinstance(value, dict):
            raise _BadKey(self.name(key), f"is not an object ({type(value).__name__})")
        return _Object(value, self.name(key))

    def optional_object(self, key: str) -> _Object | None:
        return self.object(key) if key in self.data else None

    def each(self, check: Callable[[Any], bool]) -> dict[str, Any]:
        """Every value of this object, each checked."""
        return {key: self.value(key, check) for key in self.data}


def _parse(root: _Object) -> Manifest:
    model = root.object("model")
    chunker = root.object("chunker")
    lexical = root.object("lexical")
    dense = root.object("dense")
    corpus = root.object("corpus")
    counts = root.object("counts")
    removed = corpus.value("removed", _is_str_list, None)
    partitions = root.optional_object("partitions")
    files = root.optional_object("files")
    checksums = root.optional_object("checksums")
    return Manifest(
        created=root.value("created", _is_str),
        model=Model(
            name=model.value("name", _is_str),
            dim=model.value("dim", _is_int),
            normalized=model.value("normalized", _is_bool),
        ),
        chunker=ChunkSettings(
            max_tokens=chunker.value("max_tokens", _is_int),
            overlap_sentences=chunker.value("overlap_sentences", _is_int),
        ),
        lexical=Lexical(
            tokenizer=lexical.value("tokenizer", _is_str),
            k1=lexical.value("k1", _is_number),
            b=lexical.value("b", _is_number),
            title_boost=lexical.value("title_boost", _is_int, 0),
        ),
        dense=Dense(
            metric=dense.value("metric", _is_str),
            hnsw_threshold=dense.value("hnsw_threshold", _is_int),
        ),
        corpus=Corpus(
            fingerprint=corpus.value("fingerprint", _is_str),
            removed=tuple(removed) if removed is not None else None,
        ),
        counts=Counts(
            files=counts.value("files", _is_int),
            sources=counts.value("sources", _is_int),
            documents=counts.value("documents", _is_int),
            chunks=counts.value("chunks", _is_int),
            chunks_by_language=counts.object("chunks_by_language").each(_is_int),
            sentences=counts.value("sentences", _is_int),
        ),
        sentence_windows=root.value("sentence_windows", _is_bool, True),
        format_version=root.value("format_version", _is_int),
        partitions=_partitions(partitions) if partitions is not None else {},
        files=files.each(_is_int) if files is not None else {},
        checksums=(
            Checksums(
                algorithm=checksums.value("algorithm", _is_str),
                files=checksums.object("files").each(_is_str),
            )
            if checksums is not None
            else None
        ),
    )


def _partitions(partitions: _Object) -> dict[str, PartitionInfo]:
    out = {}
    for lang in partitions.data:
        part = partitions.object(lang)
        out[lang] = PartitionInfo(
            chunks=part.value("chunks", _is_int), type=part.value("type", _is_str)
        )
    return out
