"""Settings, read once at the edge (CLI entry, app factory) and passed in explicitly."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from medcite.index.build import BuildSettings
from medcite.index.relevance import load_relevance_model
from medcite.index.search import SearchSettings
from medcite.ingest.types import ChunkSettings

if TYPE_CHECKING:
    from medcite.index.milvus import MilvusBackend
    from medcite.service.server import ServerLimits

LOG = logging.getLogger(__name__)


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def bundled_corpus() -> Path | None:
    """The repository's ``corpus/`` folder (present in a source checkout)."""
    here = Path(__file__).resolve().parent.parent / "corpus"
    return here if here.is_dir() else None


class Settings(BaseSettings):
    """Every setting can come from an environment variable ``MEDCITE_<NAME>``."""

    # hide_input_in_errors: a rejected value (an API key) is never echoed in the error.
    model_config = SettingsConfigDict(
        env_prefix="MEDCITE_", extra="ignore", hide_input_in_errors=True
    )

    index_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "medcite" / "index"
    )
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "medcite")
    corpus_dir: Path | None = Field(default_factory=bundled_corpus)
    model: str = (
        "default"  # the offline multilingual-e5-small, or any sentence-transformers name/path
    )

    chunk_max_tokens: int = Field(200, ge=16, le=480)
    chunk_overlap_sentences: int = Field(0, ge=0, le=5)
    hnsw_threshold: int = Field(200_000, ge=1)
    bm25_k1: float = Field(0.9, gt=0)
    bm25_b: float = Field(0.4, ge=0, le=1)
    bm25_title_boost: int = Field(3, ge=0, le=20)  # chosen on en_medquad_lite
    embed_batch_size: int = Field(32, ge=1, le=1024)
    # The default model's runtime: ONNX Runtime (same vectors, faster) or torch.
    runtime: Literal["onnx", "torch"] = "onnx"
    # Follow a symbolic link in the corpus that leads outside it (default: skip it, reported).
    follow_external_symlinks: bool = False
    # Embed each sentence of a chunk too: evidence spans and sentence-window scores.
    sentence_windows: bool = True

    fusion: Literal["convex", "rrf", "dense", "bm25"] = "convex"
    dense_weight: float = Field(0.8, ge=0, le=1)  # chosen on en_medquad_lite + zh_toyhom_im
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(100, ge=1, le=2000)
    max_per_doc: int = Field(2, ge=1, le=50)
    abstain: bool = True
    expand: bool = True  # cross-lingual query expansion (CC-CEDICT) for BM25
    # The least P(answerable) a question needs to be answered; default: the relevance
    # model's own threshold.
    min_relevance: float | None = Field(None, ge=0, le=1)
    # A relevance model file written by bench/calibrate_relevance.py --out; default: the
    # one shipped in index/relevance.json.
    relevance_model: Path | None = None

    # Index backend (issue: beyond one machine). "embedded": FAISS + BM25 in this process.
    # "milvus": candidates from Milvus; milvus_uri is a server (http://host:19530) or a
    # Milvus Lite file (default: milvus.db in index_dir).
    index_backend: Literal["embedded", "milvus"] = "embedded"
    milvus_uri: str | None = None
    milvus_token: SecretStr | None = None
    milvus_collection_prefix: str = Field("medcite", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # BM25 analyzer (JSON) for every chunk; jieba splits Chinese words and English on spaces.
    milvus_analyzer: dict[str, Any] = Field(default_factory=lambda: {"tokenizer": "jieba"})
    # Per-language analyzers (JSON), e.g. {"en": {"type": "english"}}: Milvus multi-language
    # analyzers, a cluster feature that Milvus Lite lacks (see README).
    milvus_analyzers: dict[str, dict[str, Any]] | None = None

    threads: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # larger request bodies get a 413
    # Operations (issue: reliability, safety and security).
    # Enables /admin/*; Authorization: Bearer <key>. At least 16 characters.
    admin_api_key: SecretStr | None = Field(None, min_length=16)
    # Staff feedback (POST /feedback): Authorization: Bearer <staff key or admin key>.
    staff_key: SecretStr | None = Field(None, min_length=16)
    feedback_path: Path = Field(
        default_factory=lambda: (
            _xdg("XDG_DATA_HOME", ".local/share") / "medcite" / "feedback.sqlite"
        )
    )
    cors_origins: list[str] = Field(default_factory=list)  # JSON list; empty: no CORS at all
    rate_limit_per_minute: float = Field(600, ge=0)  # searches per client IP; 0 turns it off
    rate_limit_burst: int = Field(60, ge=1)
    max_concurrent_searches: int = Field(4, ge=1)  # more wait up to search_queue_seconds
    search_queue_seconds: float = Field(2.0, ge=0)  # then 503 with Retry-After
    search_queue_length: int = Field(16, ge=0)  # more waiting: 503 at once
    # Batches run in a lane of their own, always smaller than max_concurrent_searches.
    max_concurrent_batches: int = Field(1, ge=1)
    # The HTTP server (service.server): slow and idle clients.
    header_timeout: float = Field(10.0, gt=0)  # request line + headers, from the first byte
    body_timeout: float = Field(20.0, gt=0)  # the whole request body; then 408
    keep_alive_timeout: int = Field(5, ge=1)  # an idle kept-alive connection closes
    max_connections: int = Field(1000, ge=16)  # over it, the oldest idle one is closed
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or
    # networks, "*" for any); default none: the client is the socket's peer.
    forwarded_allow_ips: str = ""
    log_queries: bool = False  # log question text verbatim (default: HMAC and length)
    log_json: bool = True  # `serve` logs JSON lines with request ids
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    def server_limits(self) -> ServerLimits:
        from medcite.service.server import ServerLimits

        return ServerLimits(
            header_timeout=self.header_timeout,
            keep_alive_timeout=self.keep_alive_timeout,
            max_connections=self.max_connections,
            forwarded_allow_ips=tuple(
                ip.strip() for ip in self.forwarded_allow_ips.split(",") if ip.strip()
            ),
        )

    def chunking(self) -> ChunkSettings:
        return ChunkSettings(
            max_tokens=self.chunk_max_tokens, overlap_sentences=self.chunk_overlap_sentences
        )

    def build(self) -> BuildSettings:
        return BuildSettings(
            chunking=self.chunking(),
            hnsw_threshold=self.hnsw_threshold,
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
            bm25_title_boost=self.bm25_title_boost,
            embed_batch_size=self.embed_batch_size,
            sentence_windows=self.sentence_windows,
        )

    def backend(self, progress: Callable[[int, int], None] | None = None) -> MilvusBackend | None:
        """The configured index backend; None for the embedded one (nothing to connect)."""
        if self.index_backend == "embedded":
            return None
        from medcite.index.milvus import MilvusBackend

        return MilvusBackend(
            self.milvus_uri or str(self.index_dir / "milvus.db"),
            token=self.milvus_token.get_secret_value() if self.milvus_token else None,
            prefix=self.milvus_collection_prefix,
            analyzer=self.milvus_analyzer,
            analyzers=self.milvus_analyzers,
            progress=progress,
        )

    def search(self, model_name: str) -> SearchSettings:
        return SearchSettings(
            candidates=self.candidates,
            fusion=self.fusion,
            dense_weight=self.dense_weight,
            rrf_k=self.rrf_k,
            max_per_doc=self.max_per_doc,
            relevance=load_relevance_model(model_name, self.relevance_model),
            min_relevance=self.min_relevance,
            abstain=self.abstain,
            expand=self.expand,
        )
