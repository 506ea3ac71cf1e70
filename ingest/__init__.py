"""Ingest: read articles, drop site boilerplate, find metadata and sections, cut chunks.

Pipeline: :func:`load` (paths -> :class:`LoadResult` of sources, documents and file reports),
then :func:`chunk_documents` (-> :class:`Chunk` spans of the sources). Nothing heavy is imported
here: selectolax and charset-normalizer load on first use; jieba when a tokenizer is made.
"""

from __future__ import annotations

import logging

from medcite.ingest.chunk import chunk_document, chunk_documents, count_tokens, split_sentences
from medcite.ingest.language import detect_language
from medcite.ingest.read import load
from medcite.ingest.types import (
    Chunk,
    ChunkSettings,
    Document,
    FileReport,
    FileStatus,
    Language,
    LoadResult,
    Segment,
    SourceText,
)

LOG = logging.getLogger(__name__)

__all__ = [
    "Chunk",
    "ChunkSettings",
    "Document",
    "FileReport",
    "FileStatus",
    "Language",
    "LoadResult",
    "Segment",
    "SourceText",
    "chunk_document",
    "chunk_documents",
    "count_tokens",
    "detect_language",
    "load",
    "split_sentences",
]
