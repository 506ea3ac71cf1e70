"""A page of text to documents: title and byline, sections, and lists of short Q&A cards.

The page is read line by line (:mod:`ingest.lines`) after :mod:`ingest.clean` has labelled the
boilerplate. Title, byline and heading lines are metadata, not content: a document's segments
cover body text only, and never a removed line.

- Title: the first kept line when it looks like a title (else the page's ``<title>``, else the
  start of the first sentence, and that line stays content). A repeat of the title right after it
  is dropped.
- Header: the lines after the title that are a date, a byline, a bare name confirmed by the
  byline after it, an institution or a reviewer line.
- Cards: after the main article, each run of short header lines holding a date line (title, then
  optional byline lines, the date, optional institution / byline lines) followed by a summary
  starts a card: its own document of kind "card" whose segment is the summary.
- Sections: a heading line sets the ``section`` of the body text after it and is not part of it.
  A heading without a body (the next line is a heading too) never stands alone: the text it
  heads starts at it, so the passage reads "1. Lumbar muscle strain / 2. Catch a cold / Low
  back pain is ..."; one with nothing after it is dropped. A numbered paragraph in the same
  list style as the current numbered heading ("4. Lumbar spine diseases are ...") ends that
  section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from medcite.ingest.clean import banner_names, find_boilerplate, is_teaser
from medcite.ingest.headings import Heading, enum_style, section_name, strong_heading, weak_heading
from medcite.ingest.lines import Line, split_lines, units
from medcite.ingest.metadata import (
    bare_name,
    byline,
    date_line,
    institution,
    is_reviewer_line,
    normalize_title,
    parse_date,
)
from medcite.ingest.types import Segment

_TITLE_MAX = 30.0  # units
_CARD_TITLE_MAX = 25.0
_CARD_BYLINES_BEFORE = 3
_CARD_LINES_AFTER = 2
_HEADER_MAX = 8
_FALLBACK_TITLE_CHARS = 60
_FRONT_MATTER_MAX = 40
_SENTENCE_END = re.compile(r"[。.!！;；]$")


@dataclass
class Draft:
    """One document found on a page, before it gets its id."""

    title: str
    kind: Literal["article", "card"] = "article"
    segments: list[Segment] = field(default_factory=list)
    author: str | None = None
    author_title: str | None = None
    institution: str | None = None
    date: str | None = None
    site: str | None = None

    def add_byline(self, text: str) -> bool:
        found = byline(text)
        if found is None:
            return False
        self.author = self.author or found.author
        self.author_title = self.author_title or found.author_title
        return True


@dataclass(frozen=True)
class _Card:
    start: int  # positions in the list of kept lines
    body: int
    draft: Draft


def parse_page(
    text: str,
    *,
    markdown: bool = False,
    headings: frozenset[int] = frozenset(),
    meta: Mapping[str, str] | None = None,
    drop: frozenset[int] = frozenset(),
    layout_lines: bool = False,
) -> list[Draft]:
    """The documents on a page: the main article first, then its cards in page order.

    ``headings`` are indices of lines known to be headings (from HTML markup, Word styles or
    PDF font sizes); ``meta`` holds fallbacks for title / author / date (from HTML ``<head>``,
    markdown front matter or document metadata); ``drop`` are indices of lines known to be
    boilerplate (a PDF's running headers, footers and page numbers). With ``layout_lines`` (a
    PDF, whose lines are wrapped where the page ends them) the first line is the title only
    when it is one of ``headings``, else the metadata title is used.
    Documents without any content are left out.
    """
    lines = split_lines(text)
    reasons = find_boilerplate(lines)
    for i in drop:
        reasons[i] = "running-header"
    meta = dict(meta or {})
    if markdown:
        _front_matter(lines, reasons, meta)
    kept = [i for i, line in enumerate(lines) if line.text and reasons[i] is None]
    if not kept:
        return []
    texts = [lines[i].text for i in kept]

    main, pos = _title(texts, meta, markdown, not layout_lines or kept[0] in headings)
    if pos:  # a title line, so maybe a byline under it
        pos = _header(texts, pos, main)
    main.author = main.author or meta.get("author")
    main.date = main.date or (parse_date(meta["date"]) if "date" in meta else None)

    cards = _find_cards(texts, pos)
    end = cards[0].start if cards else len(kept)
    main.segments = _sections(lines, kept[pos:end], headings, markdown)
    drafts = [main]
    site = _site(lines, meta)
    main.site = site
    for n, card in enumerate(cards):
        card_end = cards[n + 1].start if n + 1 < len(cards) else len(kept)
        summary = kept[card.body : card_end]
        card.draft.segments = _segments(
            lines, [_Item(i, None, 0, lines[i].start, lines[i].end) for i in summary]
        )
        card.draft.site = site
        drafts.append(card.draft)
    return [d for d in drafts if d.segments]


def _site(lines: Sequence[Line], meta: Mapping[str, str]) -> str | None:
    """The site's name: its banner (first on the page), else the page's ``og:site_name``."""
    names = banner_names(lines)
    for line in lines:
        for name in sorted(names, key=len, reverse=True):
            if name in line.text:
                return name
    return meta.get("site") or None


def _title(
    texts: list[str], meta: Mapping[str, str], markdown: bool, may_be_title: bool = True
) -> tuple[Draft, int]:
    first = texts[0]
    heading = strong_heading(first) if markdown else None
    if heading is not None and heading.style == "markdown":
        return Draft(heading.section), 1
    if may_be_title and _title_like(first):
        return Draft(first), 1
    if meta.get("title"):
        return Draft(meta["title"]), 0
    sentence = re.split(r"(?<=[。！？!?])|(?<=\.)\s", first, maxsplit=1)[0]
    if len(sentence) > _FALLBACK_TITLE_CHARS:
        sentence = sentence[:_FALLBACK_TITLE_CHARS].rstrip() + "…"
    return Draft(sentence), 0


def _title_like(text: str) -> bool:
    return (
        units(text) <= _TITLE_MAX
        and not _SENTENCE_END.search(text)
        and date_line(text) is None
        and byline(text) is None
    )


def _header(texts: list[str], pos: int, draft: Draft) -> int:
    """Consume the byline lines after the title; return the position of the first body line."""
    key = normalize_title(draft.title)
    start = pos
    while pos < len(texts) and pos - start < _HEADER_MAX:
        text = texts[pos]
        following = texts[pos + 1] if pos + 1 < len(texts) else ""
        date = date_line(text)
        if normalize_title(text) == key:
            pass  # the title repeated
        elif date is not None:
            draft.date = draft.date or date
        elif draft.add_byline(text) or is_reviewer_line(text):
            pass
        elif _confirmed_name(text, following):
            draft.author = draft.author or text
        elif institution(text):
            draft.institution = draft.institution or text
        else:
            break
        pos += 1
    return pos


def _confirmed_name(text: str, following: str) -> bool:
    """A bare name, confirmed by the byline after it naming the same person."""
    if bare_name(text) is None:
        return False
    found = byline(following)
    return found is not None and found.author == text


def _find_cards(texts: list[str], body_start: int) -> list[_Card]:
    cards: list[_Card] = []
    floor = body_start  # a card's title comes after the previous card's header
    for pos in range(body_start, len(texts)):
        date = date_line(texts[pos])
        if date is None or pos < floor:
            continue
        top = pos - 1
        while (
            top > floor
            and pos - top <= _CARD_BYLINES_BEFORE
            and (byline(texts[top]) or _confirmed_name(texts[top], texts[top + 1]))
        ):
            top -= 1
        if top < floor or not _card_title(texts[top]):
            continue
        body = pos + 1
        while (
            body < len(texts)
            and body - pos <= _CARD_LINES_AFTER
            and (institution(texts[body]) or byline(texts[body]))
        ):
            body += 1
        if body >= len(texts) or date_line(texts[body]) is not None:
            continue
        draft = Draft(texts[top], kind="card", date=date)
        for text in texts[top + 1 : body]:
            if draft.add_byline(text):
                continue
            if institution(text):
                draft.institution = draft.institution or text
            elif bare_name(text):
                draft.author = draft.author or text
        cards.append(_Card(top, body, draft))
        floor = body
    return cards


def _card_title(text: str) -> bool:
    return (
        units(text) <= _CARD_TITLE_MAX
        and not _SENTENCE_END.search(text)
        and date_line(text) is None
        and byline(text) is None
        and institution(text) is None
        and not is_teaser(text)
    )


def _sections(
    lines: Sequence[Line], region: list[int], html_headings: frozenset[int], markdown: bool
) -> list[Segment]:
    """Segments of an article body, each with the section heading above it."""
    texts = [lines[i].text for i in region]
    heads: list[Heading | None] = []
    for k, (i, text) in enumerate(zip(region, texts, strict=True)):
        following = texts[k + 1] if k + 1 < len(texts) else None
        if i in html_headings:
            heads.append(Heading(section_name(text), "html"))
        else:
            heading = strong_heading(text)
            if heading is not None and heading.style == "markdown" and not markdown:
                heading = None  # "# 5" in a plain text page is not a heading
            heads.append(heading or weak_heading(text, following))
    items: list[_Item] = []
    section: str | None = None
    style: str | None = None
    group = 0
    # Start of a heading without a body ("1. Lumbar muscle strain" right above "2. Catch a
    # cold"): it is no passage of its own but joins the text it heads, which then starts
    # at the heading.
    bodiless: int | None = None
    for k, i in enumerate(region):
        heading = heads[k]
        if heading is not None:
            group += 1
            if k + 1 < len(region) and heads[k + 1] is None:
                section, style = heading.section, heading.style
            else:
                if bodiless is None:
                    bodiless = lines[i].start + max(0, lines[i].text.find(heading.section))
                section, style = None, None
            continue
        if style is not None and enum_style(texts[k]) == style:
            section, style = None, None  # the next item of the list the heading belongs to
            group += 1
        start = lines[i].start if bodiless is None else bodiless
        bodiless = None
        items.append(_Item(i, section, group, start, lines[i].end))
    return _segments(lines, items)


class _Item(NamedTuple):
    """A content line (or part of one) of a document."""

    line: int
    section: str | None
    group: int  # lines join into one segment only within a group
    start: int
    end: int


def _segments(lines: Sequence[Line], items: list[_Item]) -> list[Segment]:
    """Join consecutive content lines of one group, separated only by blank lines."""
    segments: list[Segment] = []
    run: list[_Item] = []

    def close() -> None:
        if run:
            segments.append(Segment(run[0].start, run[-1].end, run[0].section))
            run.clear()

    for item in items:
        if run:
            between = lines[run[-1].line + 1 : item.line]
            if run[-1].group != item.group or any(line.text for line in between):
                close()
        run.append(item)
    close()
    return segments


def _front_matter(lines: Sequence[Line], reasons: list[str | None], meta: dict[str, str]) -> None:
    """A YAML-style ``---`` block opening a markdown file: metadata, not content."""
    if not lines or lines[0].text != "---":
        return
    for end in range(1, min(len(lines), _FRONT_MATTER_MAX)):
        if lines[end].text in ("---", "..."):
            break
    else:
        return
    for i in range(end + 1):
        reasons[i] = "front-matter"
        key, sep, value = lines[i].text.partition(":")
        key = key.strip().lower()
        if sep and key in ("title", "author", "date") and value.strip():
            meta.setdefault(key, value.strip().strip("\"'"))
