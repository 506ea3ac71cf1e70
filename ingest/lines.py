"""Lines of a source text, with the offsets of their stripped content, and their rough size."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medcite.ingest.language import HAN_CHAR

# What str.splitlines() treats as a line boundary.
LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


_WORD = re.compile(r"[A-Za-z0-9]+")


def units(text: str) -> float:
    """A rough word count: Latin words and numbers, plus half a unit per Han character."""
    return len(_WORD.findall(text)) + len(HAN_CHAR.findall(text)) / 2


@dataclass(frozen=True)
class Line:
    """One line; ``text == source[start:end]`` is the line without surrounding whitespace."""

    start: int
    end: int
    text: str


def split_lines(text: str) -> list[Line]:
    lines: list[Line] = []
    pos = 0
    for brk in LINE_BREAK.finditer(text):
        lines.append(_line(text, pos, brk.start()))
        pos = brk.end()
    lines.append(_line(text, pos, len(text)))
    return lines


def _line(text: str, start: int, end: int) -> Line:
    raw = text[start:end]
    stripped = raw.strip()
    if not stripped:
        return Line(start, start, "")
    lead = len(raw) - len(raw.lstrip())
    return Line(start + lead, start + lead + len(stripped), stripped)
