"""The frozen types where ingest meets the rest of the pipeline.

Offsets are Python ``str`` indices (code points) into ``SourceText.text``: for a
``.txt``/``.md`` file the decoded file, for a ``corpus.jsonl`` line its ``text`` field,
for an ``.html``, ``.pdf`` or ``.docx`` file the text extracted from it (ingest.extract,
ingest.documents). ``source_text[start:end] == chunk.text``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Literal

Language = Literal["zh", "en"]
FileStatus = Literal["ingested", "skipped", "failed"]


@dataclass(frozen=True)
class SourceText:
    """One readable unit of input, decoded."""

    source: str  # path relative to the corpus root; ``FILE.jsonl#DOC_ID`` for jsonl
    text: str
    encoding: str  # "utf-8", "gb18030", ... ("json" for jsonl records, "pdf", "docx")
    kind: Literal["text", "markdown", "html", "jsonl", "pdf", "docx"]
    # PDF: the start offset of each page in ``text`` (page n starts at ``pages[n - 1]``).
    pages: tuple[int, ...] | None = None


def pages_of(source: SourceText, start: int, end: int) -> tuple[int | None, int | None]:
    """The first and last page (1-based) of the span ``[start, end)``; None without pages."""
    if not source.pages:
        return None, None
    first = max(1, bisect_right(source.pages, start))
    last = max(first, bisect_right(source.pages, max(start, end - 1)))
    return first, last


@dataclass(frozen=True)
class Segment:
    """A contiguous span of kept (non-boilerplate) content inside a source text."""

    start: int
    end: int
    section: str | None = None


@dataclass(frozen=True)
class Document:
    doc_id: str
    source: str
    title: str
    language: Language
    segments: tuple[Segment, ...]
    author: str | None = None
    author_title: str | None = None
    institution: str | None = None
    date: str | None = None  # ISO 8601 (YYYY-MM-DD) when the page gives one
    # The publisher / site name (its banner, removed from the text as boilerplate, or the
    # page's og:site_name); None when the page names none. Older indexes lack it.
    site: str | None = None
    kind: Literal["article", "card", "record"] = "article"
    near_duplicate_of: str | None = None


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # f"{doc_id}::{ordinal}"
    doc_id: str
    source: str
    text: str
    start: int
    end: int
    section: str | None
    language: Language
    n_tokens: int


@dataclass(frozen=True)
class FileReport:
    """What became of one input file (every input file gets one)."""

    path: str
    status: FileStatus
    reason: str | None = None
    encoding: str | None = None
    documents: int = 0


@dataclass(frozen=True)
class ChunkSettings:
    max_tokens: int = 200  # jieba tokens (Chinese) / words (English)
    overlap_sentences: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"max_tokens": self.max_tokens, "overlap_sentences": self.overlap_sentences}


@dataclass(frozen=True)
class LoadResult:
    sources: tuple[SourceText, ...]
    documents: tuple[Document, ...]
    reports: tuple[FileReport, ...] = field(default_factory=tuple)
