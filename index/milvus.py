"""The Milvus backend: dense and BM25 candidate retrieval from a Milvus collection.

Each index version gets its own collection, ``<prefix>_<version>``, filled from the
finished version directory *before* the version's CURRENT pointer flips
(:meth:`MilvusBackend.publish` is the writer's ``before_publish`` hook). The pointer in the
index directory stays the one source of truth: whoever loads a version opens the collection
of that version, so a reload switches files and collection together, and a crash between
the two leaves the old pair live. Collections of versions no longer on disk are dropped at
the next publish.

What Milvus holds per chunk: its row number (primary key), chunk and document ids, language,
the passage text analysed for BM25 (``{"tokenizer": "jieba"}`` by default, which splits
Chinese into words and English on spaces), the BM25 sparse vector Milvus derives from it,
and the dense vector. The citation data (chunks with their spans, documents, sources)
stays in the version directory: search only needs candidate rows from Milvus, and the exact
cosines, fusion, the relevance model and de-duplication then run as for the embedded
backend, so abstention, citations and the disclaimer behave the same.

Milvus Lite (a local ``*.db`` file) is supported for development and tests. What it lacks
compared with a Milvus cluster is listed in the README.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcite.index.errors import BackendUnavailable, IndexNotFound, MedciteError
from medcite.index.retrieve import Candidates, LexicalQuery

LOG = logging.getLogger(__name__)

DEFAULT_ANALYZER: Mapping[str, Any] = {"tokenizer": "jieba"}
# Milvus VARCHAR limit is 65,535 bytes; passages are ~200 tokens, titles are repeated.
_MAX_TEXT_CHARS = 20_000


class MilvusUnavailable(BackendUnavailable):
    """Milvus could not be reached or refused an operation."""


def collection_name(prefix: str, version_dir: Path) -> str:
    """``medcite_v_20261129T080000_ab12cd34``: Milvus names allow letters, digits and _."""
    return f"{prefix}_{version_dir.name}".replace("-", "_")


_OWNER_KEY = "medcite.index"


def _owner(index_dir: Path) -> str:
    """The collection property value that marks which index folder published it."""
    return f"medcite index {index_dir.resolve()}"


def _is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


class MilvusBackend:
    """Publishes index versions to Milvus and opens retrievers over them."""

    name = "milvus"

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        prefix: str = "medcite",
        analyzer: Mapping[str, Any] = DEFAULT_ANALYZER,
        analyzers: Mapping[str, Mapping[str, Any]] | None = None,
        insert_batch: int = 512,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.uri = uri
        self.token = token
        self.prefix = prefix
        self.analyzer = dict(analyzer)
        # One analyzer per chunk language (Milvus multi-language analyzers), e.g.
        # {"en": {"type": "english"}, "zh": {"tokenizer": "jieba"}}; a cluster feature.
        self.analyzers = {k: dict(v) for k, v in (analyzers or {}).items()}
        self.insert_batch = insert_batch
        self.progress = progress
        self.lite = _is_lite(uri)
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    from pymilvus import MilvusClient
                except ImportError as exc:
                    raise MilvusUnavailable(
                        "the Milvus backend needs pymilvus (and milvus-lite for a local file): "
                        "pip install 'medcite[milvus]'"
                    ) from exc
                if self.lite:
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._client = MilvusClient(uri=self.uri, token=self.token or "")
                except Exception as exc:  # pymilvus raises its own MilvusException and more
                    hint = (
                        " (Milvus Lite lets one process open a file: is a `medcite serve` "
                        "using it? Use POST /admin/ingest there, or a Milvus server)"
                        if self.lite
                        else ""
                    )
                    raise MilvusUnavailable(
                        f"cannot open Milvus at {self.uri}: {exc}{hint}"
                    ) from exc
            return self._client

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop its in-process server, which
        releases the file for other processes."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                if self.lite:
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self.uri)

    # -- writing -----------------------------------------------------------------------

    def _create(self, name: str, owner: str, dim: int, k1: float, b: float) -> None:
        from pymilvus import DataType, Function, FunctionType

        client = self.client()
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=512)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("language", DataType.VARCHAR, max_length=8)
        text_analysis: dict[str, Any] = (
            {
                "multi_analyzer_params": {
                    "analyzers": {"default": self.analyzer, **self.analyzers},
                    "by_field": "language",
                }
            }
            if self.analyzers
            else {"analyzer_params": self.analyzer}
        )
        schema.add_field(
            "text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True, **text_analysis
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        params = client.prepare_index_params()
        # Vectors are L2-normalised, so inner product is the cosine.
        params.add_index(
            field_name="vector",
            index_type="FLAT" if self.lite else "AUTOINDEX",
            metric_type="IP",
        )
        params.add_index(
            field_name="sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": k1, "bm25_b": b},
        )
        client.create_collection(
            name, schema=schema, index_params=params, properties={_OWNER_KEY: owner}
        )

    def publish(self, version_dir: Path) -> None:
        """Fill the version's collection from its files; drop collections of gone versions."""
        from medcite.index.build import passage_text
        from medcite.index.store import read_chunks, read_documents, version_manifest

        manifest = version_manifest(version_dir)
        documents = read_documents(version_dir)
        chunks = read_chunks(version_dir)
        vectors = np.load(version_dir / "vectors.npy", mmap_mode="r")
        lexical = manifest.lexical
        boost = lexical.title_boost
        name = collection_name(self.prefix, version_dir)
        client = self.client()
        try:
            if client.has_collection(name):  # left by a crashed attempt at this version
                client.drop_collection(name)
            self._create(
                name,
                _owner(version_dir.parent),
                manifest.model.dim,
                lexical.k1,
                lexical.b,
            )
            for start in range(0, len(chunks), self.insert_batch):
                batch = chunks[start : start + self.insert_batch]
                rows = []
                for i, chunk in enumerate(batch, start):
                    doc = documents[chunk.doc_id]
                    # The same text as the embedded BM25 index: title, section, passage, and
                    # the title ``title_boost`` more times.
                    text = "\n".join([passage_text(chunk, doc)] + [doc.title] * boost)
                    rows.append(
                        {
                            "id": i,
                            "chunk_id": chunk.chunk_id,
                            "doc_id": chunk.doc_id,
                            "language": chunk.language,
                            "text": text[:_MAX_TEXT_CHARS],
                            "vector": np.asarray(vectors[i], dtype=np.float32).tolist(),
                        }
                    )
                client.insert(name, rows)
                if self.progress is not None:
                    self.progress(start + len(batch), len(chunks))
            client.flush(name)
            count = int(client.get_collection_stats(name)["row_count"])
        except MedciteError:
            raise
        except Exception as exc:
            raise MilvusUnavailable(f"writing collection {name} to Milvus failed: {exc}") from exc
        if count != len(chunks):
            raise MilvusUnavailable(
                f"collection {name} holds {count} rows after the insert, expected {len(chunks)}"
            )
        LOG.info("published %d chunks to Milvus collection %s", count, name)
        try:
            self._drop_stale(version_dir.parent, keep=name)
        except Exception as exc:  # the new version is complete; a leftover is only space
            LOG.warning("could not drop old Milvus collections: %s", exc)

    def _drop_stale(self, index_dir: Path, keep: str) -> None:
        """Drop collections of this index folder whose version directory is gone.

        Only collections this folder published (a collection property names it) are candidates,
        so indexes of other folders sharing the Milvus and the prefix are never touched."""
        client = self.client()
        owner = _owner(index_dir)
        on_disk = {
            collection_name(self.prefix, p)
            for p in index_dir.iterdir()
            if p.is_dir() and p.name.startswith("v-")
        }
        for name in client.list_collections():
            if not name.startswith(f"{self.prefix}_v_") or name == keep or name in on_disk:
                continue
            if client.describe_collection(name).get("properties", {}).get(_OWNER_KEY) != owner:
                continue
            client.drop_collection(name)
            LOG.info("dropped Milvus collection %s (its version is gone)", name)

    # -- reading -----------------------------------------------------------------------

    def open(
        self, version_dir: Path, rows_by_language: Mapping[str, np.ndarray]
    ) -> MilvusRetriever:
        name = collection_name(self.prefix, version_dir)
        client = self.client()
        try:
            if not client.has_collection(name):
                raise IndexNotFound(
                    f"Milvus at {self.uri} has no collection {name} for index version "
                    f"{version_dir.name}; publish it with `medcite ingest` and "
                    "MEDCITE_INDEX_BACKEND=milvus"
                )
            client.load_collection(name)
            count = int(client.get_collection_stats(name)["row_count"])
        except MedciteError:
            raise
        except Exception as exc:
            raise MilvusUnavailable(f"cannot open collection {name} in Milvus: {exc}") from exc
        expected = sum(int(r.size) for r in rows_by_language.values())
        if count != expected:
            raise IndexNotFound(
                f"Milvus collection {name} holds {count} chunks but index version "
                f"{version_dir.name} has {expected}; publish it again with `medcite ingest`"
            )
        return MilvusRetriever(self, name)


class MilvusRetriever:
    """Top ``n`` by dense inner product and top ``n`` by BM25, per language, from Milvus."""

    name = "milvus"

    def __init__(self, backend: MilvusBackend, collection: str) -> None:
        self.backend = backend
        self.collection = collection
        # Milvus Lite runs in this process and is not documented as thread-safe.
        self._lock: threading.Lock | None = threading.Lock() if backend.lite else None

    def _search(self, **kwargs: Any) -> list[dict[str, Any]]:
        client = self.backend.client()
        try:
            if self._lock is None:
                result = client.search(self.collection, **kwargs)
            else:
                with self._lock:
                    result = client.search(self.collection, **kwargs)
        except Exception as exc:
            raise MilvusUnavailable(f"Milvus search failed: {exc}") from exc
        return list(result[0])

    def candidates(
        self, qv: np.ndarray, query: LexicalQuery, languages: Sequence[str], n: int
    ) -> dict[str, Candidates]:
        out: dict[str, Candidates] = {}
        for lang in languages:
            where = f'language == "{lang}"'
            dense = self._search(
                data=[np.asarray(qv, dtype=np.float32).tolist()],
                anns_field="vector",
                filter=where,
                limit=n,
                output_fields=["id"],
                search_params={"metric_type": "IP"},
            )
            bm25_params: dict[str, Any] = {"metric_type": "BM25"}
            if self.backend.analyzers:  # analyse the question as this partition's language
                bm25_params["analyzer_name"] = lang if lang in self.backend.analyzers else "default"
            lexical = (
                self._search(
                    data=[query.text],
                    anns_field="sparse",
                    filter=where,
                    limit=n,
                    output_fields=["id"],
                    search_params=bm25_params,
                )
                if query.text.strip()
                else []
            )
            # BM25 scores are positive; Milvus Lite reports them negated, as distances.
            bm25 = {int(h["id"]): abs(float(h["distance"])) for h in lexical}
            rows = np.unique(np.array([int(h["id"]) for h in dense] + list(bm25), dtype=np.int64))
            if rows.size == 0:
                continue
            out[lang] = Candidates(
                rows=rows,
                lexical=np.array([bm25.get(int(r), 0.0) for r in rows], dtype=np.float32),
            )
        return out

    def close(self) -> None:
        pass  # the client belongs to the backend, which outlives a reload
