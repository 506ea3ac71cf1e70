"""The HTTP contract (pydantic models live only at the edge)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medcite.index.search import SearchResult
from medcite.index.store import LoadedIndex
from medcite.ingest.types import Chunk, Document, pages_of
from medcite.service.disclaimer import disclaimer, no_answer
from medcite.service.safety import urgent_notice

MAX_BATCH_QUERIES = 256


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., description="A free-text question, Chinese or English.")
    k: int = Field(5, ge=1, le=50, description="How many passages to return.")
    language: Literal["zh", "en"] | None = Field(
        None, description="Only return passages in this language."
    )


class Evidence(BaseModel):
    start: int = Field(description="Start offset (characters) into the source text.")
    end: int = Field(description="End offset (characters, exclusive) into the source text.")
    text: str = Field(description="Exactly source_text[start:end]: a sentence of the passage.")


class Passage(BaseModel):
    rank: int
    score: float = Field(
        description="P(relevant): the calibrated probability that the passage answers the "
        "question, comparable across questions, languages and corpora (index.relevance)."
    )
    text: str = Field(description="The passage: exactly source_text[start:end].")
    evidence: list[Evidence] = Field(
        default_factory=list,
        description="The sentence(s) of the passage that answer the question best, as spans "
        "of the same source (inside [start, end]).",
    )
    truncated: bool = Field(
        False,
        description="The source itself breaks this text off (a Q&A card summary cut "
        "mid-sentence): show an ellipsis; the cited text stays exactly as the source has it.",
    )
    doc_id: str
    chunk_id: str
    title: str
    source: str = Field(description="File relative to the corpus root, or FILE.jsonl#DOC_ID.")
    start: int = Field(description="Start offset (characters) into the source text.")
    end: int = Field(description="End offset (characters, exclusive) into the source text.")
    page_start: int | None = Field(
        None, description="PDF sources: the page (1-based) the passage starts on; else null."
    )
    page_end: int | None = Field(
        None, description="PDF sources: the page (1-based) the passage ends on; else null."
    )
    section: str | None
    author: str | None
    author_title: str | None
    institution: str | None
    date: str | None
    site: str | None = Field(
        None,
        description="The publisher or site the article comes from (its banner or "
        "og:site_name), when the page names one.",
    )
    language: Literal["zh", "en"]


class SearchResponse(BaseModel):
    query: str
    language: Literal["zh", "en"]
    urgent_notice: str | None = Field(
        None,
        description="Set when the question mentions a symptom that can be an emergency "
        "(heavy bleeding, chest pain, ...): tells the person to seek care now.",
    )
    answerable: bool
    message: str | None = Field(None, description="Set when nothing relevant was found.")
    disclaimer: str
    passages: list[Passage]
    took_ms: float


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[SearchRequest] = Field(..., min_length=1, max_length=MAX_BATCH_QUERIES)


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]
    took_ms: float


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ENDS = tuple('。！？!?.…；;」』”’")）)】》')


def cut_off(chunk: Chunk, doc: Document) -> bool:
    """A card's summary that the source cuts off mid-sentence, ending in this chunk."""
    last = doc.segments[-1].end if doc.segments else chunk.end
    return doc.kind == "card" and chunk.end >= last and not chunk.text.endswith(_ENDS)


def to_response(result: SearchResult, index: LoadedIndex, took_ms: float) -> SearchResponse:
    passages = []
    for rank, hit in enumerate(result.hits, start=1):
        chunk = hit.chunk
        doc = index.documents[chunk.doc_id]
        source = index.sources[chunk.source]
        page_start, page_end = pages_of(source, chunk.start, chunk.end)
        passages.append(
            Passage(
                rank=rank,
                score=round(hit.score, 6),
                text=chunk.text,
                evidence=[Evidence(start=a, end=b, text=source.text[a:b]) for a, b in hit.evidence],
                truncated=cut_off(chunk, doc),
                doc_id=chunk.doc_id,
                chunk_id=chunk.chunk_id,
                title=doc.title,
                source=chunk.source,
                start=chunk.start,
                end=chunk.end,
                page_start=page_start,
                page_end=page_end,
                section=chunk.section,
                author=doc.author,
                author_title=doc.author_title,
                institution=doc.institution,
                date=doc.date,
                site=doc.site,
                language=chunk.language,
            )
        )
    return SearchResponse(
        query=result.query,
        language=result.language,
        urgent_notice=urgent_notice(result.query, result.language),
        answerable=result.answerable,
        message=None if result.answerable else no_answer(result.language),
        disclaimer=disclaimer(result.language),
        passages=passages,
        took_ms=round(took_ms, 2),
    )
