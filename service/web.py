"""The search page at ``/`` (plain files in ``service/static``) and the JSON it needs.

Read-only endpoints besides ``POST /search``:

- ``POST /terms`` (body ``{"query": ...}``; the page uses it so the question stays out of URLs
  and logs) and ``GET /terms?q=`` (kept for clients): the lexical tokens of a question
  (jieba search-mode words for Chinese, English words and their stems) and its
  other-language expansion terms, so the page highlights what BM25 matched.
- ``GET /documents/{doc_id}`` one indexed document: its whole source text and the kept
  (non-boilerplate) segments, so the page can show a cited span in its article.

- ``GET /docs`` Swagger UI served from the packaged ``swagger-ui-bundle`` files (works
  offline; no CDN).

Documents are looked up by id in the loaded index only; no user input reaches the filesystem.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

import medcite.service.convertors  # noqa: F401  ({doc_id:anypath})
from medcite.index.expand import Expander
from medcite.index.search import MAX_QUERY_CHARS, validate_query
from medcite.index.tokenize import EN_STOPWORDS, Tokenizer
from medcite.ingest.language import HAN_CHAR, detect_language
from medcite.service.engine import Engine, EngineDep
from medcite.service.middleware import PAGE_HEADERS
from medcite.service.schemas import ErrorResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"

_EN_WORD = re.compile(r"[a-z0-9\u00c0-\u024f]+(?:'[a-z]+)?")
# Words BM25 may match but a reader gains nothing from seeing lit up in every passage.
_FUNCTION_WORDS = (
    "after before during while since until about again also still cause causes caused reason "
    "reasons thing things way ways get gets got make makes normal common happen happens "
    "something anything feel feels"
)
_NOT_HIGHLIGHTED = frozenset(_FUNCTION_WORDS.split())

router = APIRouter()


class TermsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., max_length=MAX_QUERY_CHARS, description="The question.")


class TermsResponse(BaseModel):
    query: str
    language: Literal["zh", "en"]
    terms: list[str] = Field(
        description="Words to highlight, longest first. A term with Han characters matches "
        "anywhere in a text; any other term matches a whole word, or the start of one when "
        "it is a stem (followed by at most a short ending)."
    )
    expansions: list[str] = Field(
        default_factory=list,
        description="The question's terms in the other language (CC-CEDICT), to highlight "
        "in passages of that language; same matching rules, longest first.",
    )


class DocumentSegment(BaseModel):
    start: int = Field(description="Start offset (characters) into `text`.")
    end: int = Field(description="End offset (characters, exclusive) into `text`.")
    section: str | None


class DocumentResponse(BaseModel):
    doc_id: str
    title: str
    source: str = Field(description="File relative to the corpus root, or FILE.jsonl#DOC_ID.")
    language: Literal["zh", "en"]
    kind: Literal["article", "card", "record"]
    author: str | None
    author_title: str | None
    institution: str | None
    date: str | None
    site: str | None = Field(None, description="The publisher or site, when the page names one.")
    text: str = Field(description="The whole source text; passage offsets point into it.")
    segments: list[DocumentSegment] = Field(
        description="The document's kept spans of `text`, in order; the rest is boilerplate "
        "(or belongs to another document of the same page)."
    )
    pages: list[int] | None = Field(
        None,
        description="PDF sources: the start offset in `text` of each page (page n starts at "
        "pages[n-1]); null for other sources.",
    )


def highlight_terms(query: str, tokenizer: Tokenizer) -> list[str]:
    """The query's BM25 tokens plus its English surface words, for highlighting.

    Single Han characters (后, 疼) are dropped when longer Chinese words exist: they would
    light up half of every Chinese passage.
    """
    tokens = tokenizer.tokens(query, bigrams=False)
    words = [w for w in _EN_WORD.findall(query.lower()) if w not in EN_STOPWORDS]
    han = [t for t in tokens if HAN_CHAR.search(t)]
    if any(len(t) > 1 for t in han):
        tokens = [t for t in tokens if not (HAN_CHAR.search(t) and len(t) == 1)]
    unique = dict.fromkeys(t for t in [*tokens, *words] if t.strip() and t not in _NOT_HIGHLIGHTED)
    return sorted(unique, key=lambda t: (-len(t), t))


def expansion_terms(query: str, tokenizer: Tokenizer, expander: Expander | None) -> list[str]:
    """The other-language words of the question (index.expand, the first gloss of each
    meaningful word only: fewer false friends lit up), to highlight; none without an
    ``expander`` (query expansion off)."""
    if expander is None:
        return []
    expander = dataclasses.replace(expander, glosses=1, words=1)
    words = [w for w in tokenizer.tokens(query, bigrams=False) if w not in _NOT_HIGHLIGHTED]
    english = " ".join(w for w in _EN_WORD.findall(query.lower()) if w not in _NOT_HIGHLIGHTED)
    extra = expander.english_for(words) + expander.chinese_for(english)
    found: dict[str, None] = {}
    for phrase in extra:
        if HAN_CHAR.search(phrase):
            found[phrase] = None
        else:
            for w in _EN_WORD.findall(phrase.lower()):
                if w not in EN_STOPWORDS and w not in _NOT_HIGHLIGHTED and len(w) > 2:
                    found[w] = None
    return sorted(found, key=lambda t: (-len(t), t))


def _terms(text: str, engine: Engine) -> TermsResponse:
    return TermsResponse(
        query=text,
        language=detect_language(text),
        terms=highlight_terms(text, engine.tokenizer),
        expansions=expansion_terms(text, engine.tokenizer, engine.expander),
    )


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The search page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
    )


_TERMS_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.get("/terms", response_model=TermsResponse, responses=_TERMS_ERRORS)
def terms(
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="The question.")],
    engine: EngineDep,
) -> TermsResponse:
    """The words of a question the search page highlights in passages."""
    return _terms(validate_query(q), engine)


@router.post("/terms", response_model=TermsResponse, responses=_TERMS_ERRORS)
def terms_post(body: TermsRequest, engine: EngineDep) -> TermsResponse:
    """As ``GET /terms``, with the question in the body (kept out of URLs and access logs)."""
    return _terms(validate_query(body.query), engine)


@router.get(
    "/documents/{doc_id:anypath}",
    response_model=DocumentResponse,
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
def document(doc_id: str, engine: EngineDep) -> DocumentResponse:
    """One document with its whole source text and kept segments (URL-encode the id)."""
    doc = engine.index.documents.get(doc_id)
    source = engine.index.sources.get(doc.source) if doc is not None else None
    if doc is None or source is None:
        raise HTTPException(404, f"no document {doc_id!r} in the index")
    return DocumentResponse(
        doc_id=doc.doc_id,
        title=doc.title,
        source=doc.source,
        language=doc.language,
        kind=doc.kind,
        author=doc.author,
        author_title=doc.author_title,
        institution=doc.institution,
        date=doc.date,
        site=doc.site,
        text=source.text,
        segments=[
            DocumentSegment(start=s.start, end=s.end, section=s.section) for s in doc.segments
        ],
        pages=list(source.pages) if source.pages is not None else None,
    )


def static_files() -> StaticFiles:
    """The page's CSS and JavaScript, mounted at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)


DOCS_ASSETS = "/docs-assets"


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI from the packaged files (no CDN: the page works offline)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="medcite API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


def docs_assets() -> StaticFiles:
    """Swagger UI's JavaScript and CSS (PyPI ``swagger-ui-bundle-v2``), at ``DOCS_ASSETS``."""
    import swagger_ui_bundle

    return StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)
