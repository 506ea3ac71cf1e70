"""Section headings: which lines name a section, and the section name they give.

Strong headings are recognised by their form alone: markdown ``#``, Chinese enumerations
("一、子宫复旧不良", "（二）", "第三章"), and short numbered lines ("1. Lumbar muscle strain",
"2.Relaxin hormone secretion:"). A numbered line with sentences ("4. Lumbar spine diseases are
more common in elderly women. With ...") is a list paragraph, not a heading. Weak headings are
short title-like lines ("Differential diagnosis") recognised only when a body paragraph follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medcite.ingest.language import HAN_CHAR
from medcite.ingest.lines import units

_ZH_NUM = "一二三四五六七八九十百零〇"
_ENUM_STYLES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("zh-enum", re.compile(rf"^[{_ZH_NUM}]+\s*[、.．]\s*(?=\S)")),
    ("zh-paren", re.compile(rf"^[（(]\s*[{_ZH_NUM}\d]+\s*[)）]\s*(?=\S)")),
    ("chapter", re.compile(rf"^第[{_ZH_NUM}\d]+[章节部分篇]\s*")),
    ("num", re.compile(r"^\d{1,2}\s*(?:[.、．](?!\d)|[)）])\s*(?=\S)")),
)
_MARKDOWN = re.compile(r"^(#{1,6})\s+(.+?)(?:\s+#+)?\s*$")
_SENTENCE_INSIDE = re.compile(r"[。！？!；;]|[.?](?:\s|$)")
_CLAUSE = re.compile(r"[，,、]")
_STRONG_MAX = 15.0  # units (words, or two Han characters)
_WEAK_MAX = 10.0
_BODY_MIN = 15.0


@dataclass(frozen=True)
class Heading:
    section: str  # the heading text without markdown marks or a trailing colon
    style: str  # "markdown", "zh-enum", "zh-paren", "chapter", "num" or "plain"


def section_name(text: str) -> str:
    return text.strip().rstrip(":：").rstrip()


def enum_style(text: str) -> str | None:
    """The list-marker style a line starts with ("num" for "3. ..."), if any."""
    marker = _enum_marker(text)
    return marker[0] if marker else None


def _enum_marker(text: str) -> tuple[str, int] | None:
    for style, pattern in _ENUM_STYLES:
        m = pattern.match(text)
        if m:
            return style, m.end()
    return None


def strong_heading(text: str) -> Heading | None:
    m = _MARKDOWN.match(text)
    if m:
        return Heading(section_name(m[2]), "markdown")
    marker = _enum_marker(text)
    if marker is None or units(text) > _STRONG_MAX:
        return None
    body = section_name(text[marker[1] :])
    if not body or _SENTENCE_INSIDE.search(body) or len(_CLAUSE.findall(body)) > 1:
        return None
    return Heading(section_name(text), marker[0])


def weak_heading(text: str, following: str | None) -> Heading | None:
    """A short title-like line, when ``following`` (the next non-blank line) is body text."""
    if following is None or units(text) > _WEAK_MAX or units(following) < _BODY_MIN:
        return None
    body = section_name(text)
    if not body or _SENTENCE_INSIDE.search(body.rstrip("?？")) or _CLAUSE.search(body):
        return None
    first = body[0]
    if first.isalpha() and not HAN_CHAR.match(first) and not first.isupper():
        return None
    if units(following) < 2 * units(text) or strong_heading(following) is not None:
        return None
    return Heading(body, "plain")
