"""PDF and Word files to plain text, with page starts, heading lines and running-header lines.

The extracted text is what the source stores (``SourceText.text``) and what offsets index.

- PDF (pypdfium2): each page's text layer, one line per paragraph: a line the page wraps
  mid-sentence is joined to the next one (with a space; with nothing between Chinese
  characters, or where pdfium reports a word broken by a hyphen, which is then dropped). A
  line ends its paragraph when it ends a sentence, is much shorter than a full line of the
  page, or the next line is a heading, a list item, a
  running header or a page number. Pages are joined by a blank line (``"\n\n"``) and
  ``pages`` holds each page's start offset (page n starts at ``pages[n - 1]``). A short line
  (not a sentence) whose first character is set at least 1.2 times the body's font size is a
  heading. Running headers and footers (a line among the first or last three of a page that
  repeats, digits aside, on at least half the pages) and lone page numbers are listed in
  ``drop``: the page parser treats them as boilerplate, the text keeps them so offsets stay
  exact. No OCR: a PDF without a text layer is refused.
- Word (python-docx): one line per paragraph (and per table row, cells joined by " | "), in
  body order. Paragraphs styled "Title" or "Heading N" are headings.

Title, author and date come from the file's metadata (PDF Info dictionary, Word core
properties) as fallbacks for the page parser. A file that cannot be read raises
:class:`DocumentError` with the reason.
"""

from __future__ import annotations

import math
import re
import statistics
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from medcite.ingest.language import HAN_CHAR
from medcite.ingest.lines import split_lines, units

MAX_PDF_PAGES = 2000
PAGE_SEPARATOR = "\n\n"
_EDGE_LINES = 3  # lines at the top and bottom of a page where running headers live
_HEADING_RATIO = 1.2  # font size over the body's that makes a short line a heading
_HEADING_MAX_UNITS = 20.0
_FULL_LINE = 0.6  # a line shorter than this share of a full line ends its paragraph
_SHORT_LINE = 20  # width of lines left out when measuring a full line
_SENTENCE_END = re.compile(r"[。.!！?？;；:：,，]$")
_PARAGRAPH_END = re.compile(r"[。.!！?？;；:：…\"”’)）」』]$")
_LIST_ITEM = re.compile(
    r"^(?:[-–•·*▪●◦■□✓]\s|\(?\d{1,3}[.)、]\s*|[a-z][.)]\s|[（(]?[一二三四五六七八九十]{1,3}[、.)）])"
)
_DOT_LEADER = re.compile(r"(?:\.\s?){4,}\s*\d*$")  # "2.1 Syntax . . . . 4" in a contents list
_PAGE_NUMBER = re.compile(
    r"^(?:[-–—]\s*)?(?:(?:page|p\.)\s*)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?(?:\s*[-–—])?$"
    r"|^第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?$",
    re.I,
)
_RAW_BREAK = re.compile(r"\r\n|\r|\n")
_SOFT_HYPHEN = "\ufffe"  # how pdfium reports a hyphen that breaks a word at a line end
# NUL, line breaks other than \r and \n (ingest.lines would split a line there) and lone
# surrogates (not storable as UTF-8) in a text layer.
_ODD = re.compile("[\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029\ud800-\udfff]")


def _odd(m: re.Match[str]) -> str:
    return "\ufffd" if "\ud800" <= m.group() <= "\udfff" else " "


# Han characters and CJK / full-width punctuation: no space where a line wraps between two.
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


class DocumentError(ValueError):
    """The file cannot be read as a PDF or Word document; the message says why."""


@dataclass(frozen=True)
class DocumentText:
    text: str
    pages: tuple[int, ...] | None = None  # start offset of each page (PDF only)
    headings: frozenset[int] = frozenset()  # indices of heading lines (ingest.lines)
    drop: frozenset[int] = frozenset()  # indices of running header / footer lines
    meta: dict[str, str] = field(default_factory=dict)  # title / author / date


# --- PDF -------------------------------------------------------------------------------------


@dataclass
class _PdfLine:
    text: str  # stripped
    size: float  # font size of its first character (0 when unknown)
    heading: bool = False
    drop: bool = False
    hyphen: bool = False  # ends in a word broken by pdfium's line-end hyphen (removed)


def pdf_to_text(data: bytes, *, max_pages: int = MAX_PDF_PAGES) -> DocumentText:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentError("encrypted PDF (needs a password)") from None
        raise DocumentError(f"not a readable PDF ({exc})") from None
    try:
        n_pages = len(pdf)
        if n_pages > max_pages:
            raise DocumentError(f"too many pages: {n_pages:,} (the limit is {max_pages:,})")
        pages: list[list[_PdfLine]] = []
        for index in range(n_pages):
            try:
                pages.append(_pdf_page_lines(pdf, index))
            except pdfium.PdfiumError as exc:
                raise DocumentError(f"unreadable page {index + 1} ({exc})") from None
        meta = _pdf_meta(pdf)
    finally:
        pdf.close()
    if not any(line.text for lines in pages for line in lines):
        raise DocumentError("no text layer (scanned?)")
    _mark_headings(pages)
    _mark_running(pages)

    starts: list[int] = []
    parts: list[str] = []
    headings: set[int] = set()  # start offsets of heading / dropped lines
    drop: set[int] = set()
    pos = 0
    for n, lines in enumerate(pages):
        if n:
            parts.append(PAGE_SEPARATOR)
            pos += len(PAGE_SEPARATOR)
        starts.append(pos)
        for k, (text, line) in enumerate(_paragraphs(lines)):
            if k:
                parts.append("\n")
                pos += 1
            (headings if line.heading else drop if line.drop else set()).add(pos)
            parts.append(text)
            pos += len(text)
    text = "".join(parts)
    found = split_lines(text)
    return DocumentText(
        text,
        tuple(starts),
        frozenset(i for i, line in enumerate(found) if line.text and line.start in headings),
        frozenset(i for i, line in enumerate(found) if line.text and line.start in drop),
        meta,
    )


def _pdf_page_lines(pdf: Any, index: int) -> list[_PdfLine]:
    """The page's non-blank text lines, each with the font size of its first character."""
    import pypdfium2.raw as pdfium_c

    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            raw = textpage.get_text_range()
            out: list[_PdfLine] = []
            start = 0
            for brk in [*_RAW_BREAK.finditer(raw), None]:
                end = brk.start() if brk is not None else len(raw)
                line = _ODD.sub(_odd, raw[start:end])
                text = line.strip()
                if text:
                    first = start + len(line) - len(line.lstrip())
                    size = float(pdfium_c.FPDFText_GetFontSize(textpage, first))
                    hyphen = text.endswith(_SOFT_HYPHEN)
                    text = text.replace(_SOFT_HYPHEN, "").strip()
                    if text:
                        out.append(_PdfLine(text, size, hyphen=hyphen))
                if brk is not None:
                    start = brk.end()
            return out
        finally:
            textpage.close()
    finally:
        page.close()


def _mark_headings(pages: list[list[_PdfLine]]) -> None:
    """Short lines (not sentences) set in a larger font than the body's."""
    weights: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            if line.size > 0:
                weights[line.size] += len(line.text)
    if not weights:
        return
    body = statistics.median_low(list(weights.elements()))
    for lines in pages:
        for line in lines:
            line.heading = (
                line.size >= body * _HEADING_RATIO
                and units(line.text) <= _HEADING_MAX_UNITS
                and not _SENTENCE_END.search(line.text)
                and not _DOT_LEADER.search(line.text)
            )


def _mark_running(pages: list[list[_PdfLine]]) -> None:
    """Lines near a page's top or bottom that repeat on most pages, and lone page numbers.

    Repeats are counted with digits ignored ("Page 3 of 9"), except for heading lines: a
    heading repeats only verbatim ("Part 2" on page 2 is no running header of "Part 1").
    """
    edges = [
        {id(line): line for line in [*lines[:_EDGE_LINES], *lines[-_EDGE_LINES:]]}.values()
        for lines in pages
    ]
    counts: Counter[str] = Counter()
    for lines in edges:
        counts.update({_shape(line) for line in lines})
    needed = max(2, math.ceil(len(pages) / 2))
    for lines in edges:
        for line in lines:
            line.drop = bool(_PAGE_NUMBER.match(line.text)) or (
                len(pages) >= 2 and counts[_shape(line)] >= needed
            )
            line.heading = line.heading and not line.drop


def _shape(line: _PdfLine) -> str:
    text = line.text.lower()
    return "h:" + text if line.heading else re.sub(r"\d+", "#", text)


def _paragraphs(lines: list[_PdfLine]) -> Iterable[tuple[str, _PdfLine]]:
    """The page's lines with the ones it wraps mid-sentence joined: (text, first line)."""
    # A full line's width: the upper quartile of the longer lines, not the longest (pdfium
    # sometimes reports two printed lines as one).
    widths = sorted(w for w in map(_width, (line.text for line in lines)) if w >= _SHORT_LINE)
    full = widths[(len(widths) - 1) * 3 // 4] if widths else 0
    text, first, previous = "", None, None
    for line in lines:
        if first is not None and previous is not None and _joins(previous, line, full):
            text += ("" if previous.hyphen else _glue(text, line.text)) + line.text
        else:
            if first is not None:
                yield text, first
            text, first = line.text, line
        previous = line
    if first is not None:
        yield text, first


def _joins(line: _PdfLine, following: _PdfLine, full: float) -> bool:
    return not (
        line.heading
        or line.drop
        or following.heading
        or following.drop
        or (
            not line.hyphen
            and (_PARAGRAPH_END.search(line.text) or _width(line.text) < _FULL_LINE * full)
        )
        or _LIST_ITEM.match(following.text)
    )


def _width(text: str) -> int:
    """A line's rough printed width: a Han character is about two Latin letters wide."""
    return len(text) + len(HAN_CHAR.findall(text))


def _glue(before: str, after: str) -> str:
    if _CJK.match(before[-1]) and _CJK.match(after[0]):
        return ""
    if before.endswith("-") and len(before) > 1 and before[-2].isalpha() and after[0].islower():
        return ""  # "blood pres-" + "sure": the hyphen stays, the text is never rewritten
    return " "


def _pdf_meta(pdf: Any) -> dict[str, str]:
    try:
        info = pdf.get_metadata_dict(skip_empty=True)
    except Exception:  # metadata is optional: an unreadable Info dictionary is none
        return {}
    meta: dict[str, str] = {}
    for key, name in (("Title", "title"), ("Author", "author")):
        value = " ".join(str(info.get(key, "")).split())
        if value and value.lower() not in ("untitled", "unspecified", "anonymous"):
            meta[name] = value
    found = re.match(r"(?:D:)?(\d{4})(\d{2})(\d{2})", str(info.get("CreationDate", "")))
    if found:
        meta["date"] = "-".join(found.groups())
    return meta


# --- Word ------------------------------------------------------------------------------------


def docx_to_text(data: bytes) -> DocumentText:
    import io

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        props = document.core_properties
        meta = {"title": props.title or "", "author": props.author or ""}
        if props.created is not None:
            meta["date"] = props.created.date().isoformat()
    except (zipfile.BadZipFile, KeyError, PackageNotFoundError) as exc:
        raise DocumentError(f"not a readable Word document ({type(exc).__name__})") from None
    except Exception as exc:  # lxml and python-docx raise many kinds on a damaged part
        raise DocumentError(f"not a readable Word document ({type(exc).__name__})") from None
    meta = {k: " ".join(v.split()) for k, v in meta.items() if v and v.strip()}
    parts: list[str] = []
    heading_spans: list[tuple[int, int]] = []
    pos = 0
    for text, heading in blocks:
        if parts:
            parts.append("\n")
            pos += 1
        if heading:
            heading_spans.append((pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    text = "".join(parts)
    if not text.strip():
        raise DocumentError("no text")
    lines = split_lines(text)
    headings = frozenset(
        i
        for i, line in enumerate(lines)
        if line.text and any(a <= line.start < b for a, b in heading_spans)
    )
    return DocumentText(text, None, headings, frozenset(), meta)


def _docx_blocks(document: Any) -> Iterable[tuple[str, bool]]:
    """(text, is heading) for each paragraph and table row of the body, in order."""
    from docx.table import Table

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                unique = [c for n, c in enumerate(cells) if c and (n == 0 or c != cells[n - 1])]
                if unique:
                    yield " | ".join(unique), False
            continue
        style = block.style.name if block.style is not None else ""
        heading = style == "Title" or style.startswith("Heading")
        yield block.text, heading
