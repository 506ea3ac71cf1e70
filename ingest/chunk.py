"""Documents to chunks: whole sentences packed greedily up to a token budget.

Sizes are jieba tokens for Chinese documents and words for English ones, counting only tokens
with a letter, digit or Han character (no spaces, no punctuation). A chunk never crosses a
segment (so never a removed line or a section change) and never cuts a sentence, unless the
sentence alone is over budget: then it is cut at commas first, then between tokens. Chunks are
spans of the source text, trimmed of surrounding whitespace by moving offsets:
``source.text[chunk.start:chunk.end] == chunk.text``.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from medcite.ingest.lines import LINE_BREAK
from medcite.ingest.segment import Segmenter
from medcite.ingest.types import Chunk, ChunkSettings, Document, Language, LoadResult, SourceText

LOG = logging.getLogger(__name__)

_CLOSERS = "”’\"'」』）)】》\\]"
# Candidate sentence ends: fullwidth terminators, ASCII ones, periods and ellipses.
_END = re.compile(rf"(?:[。！？；…]+|[!?;]+|\.+)[{_CLOSERS}]*")
_FULLWIDTH_END = re.compile(r"[。！？；…]")
_CLAUSE = re.compile(rf"[,，、:：][{_CLOSERS}]*")
_EN_WORD = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")
# Words that end with a period without ending the sentence ("Dr. Smith", "e.g. aspirin").
_ABBREVIATIONS = frozenset(
    {
        *("dr", "mr", "mrs", "ms", "mx", "prof", "sr", "jr", "st", "vs", "etc", "cf", "al"),
        *("e.g", "i.e", "fig", "figs", "no", "nos", "vol", "approx", "dept", "inc", "ltd"),
        *("co", "corp", "univ", "gen", "rev", "mt", "ft", "a.m", "p.m", "u.s", "u.k"),
        *("ph.d", "m.d", "b.sc", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep"),
        *("sept", "oct", "nov", "dec"),
    }
)
_INITIAL = re.compile(r"(?:^|\s)[A-Z]$")


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a piece of an over-long one: absolute offsets and its token count."""

    start: int
    end: int
    tokens: int
    # Starts where a clause was cut between tokens: the counts of the two sides need not add
    # up to the count of both together, so they never share a chunk.
    cut_before: bool = False


def chunk_documents(
    result: LoadResult, settings: ChunkSettings, tokenizer: Segmenter | None = None
) -> list[Chunk]:
    """Chunks of every document in ``result``, in document order (Chinese sizes counted with
    ``tokenizer``'s words: a new :class:`Segmenter` for this run when not given)."""
    if tokenizer is None:
        tokenizer = Segmenter()
    sources = {s.source: s for s in result.sources}
    chunks: list[Chunk] = []
    for doc in result.documents:
        chunks.extend(chunk_document(doc, sources[doc.source], settings, tokenizer))
    return chunks


def chunk_document(
    doc: Document, source: SourceText, settings: ChunkSettings, tokenizer: Segmenter
) -> list[Chunk]:
    """Chunks of one document, ids ``f"{doc_id}::{n}"`` from 0 in text order."""
    if source.source != doc.source:
        raise ValueError(f"{doc.doc_id} is from {doc.source}, not {source.source}")
    if settings.max_tokens < 1 or settings.overlap_sentences < 0:
        raise ValueError(f"bad chunk settings {settings.as_dict()}")
    text = source.text
    count = token_counter(doc.language, tokenizer)
    chunks: list[Chunk] = []
    for segment in doc.segments:
        units = _units(
            text, segment.start, segment.end, doc.language, settings.max_tokens, count, tokenizer
        )
        for first, last in _pack(units, settings):
            start, end = units[first].start, units[last].end
            n_tokens = sum(u.tokens for u in units[first : last + 1])
            if n_tokens == 0:
                continue
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}::{len(chunks)}",
                    doc_id=doc.doc_id,
                    source=doc.source,
                    text=text[start:end],
                    start=start,
                    end=end,
                    section=segment.section,
                    language=doc.language,
                    n_tokens=n_tokens,
                )
            )
    return chunks


def split_sentences(
    text: str, start: int = 0, end: int | None = None, language: Language = "en"
) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]``, trimmed; a line break always ends a sentence."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line_start, line_end in _line_spans(text, start, end):
        sentence_start = line_start
        for m in _END.finditer(text, line_start, line_end):
            if _ends_sentence(text, m, line_end, language):
                spans.extend(_trimmed(text, sentence_start, m.end()))
                sentence_start = m.end()
        spans.extend(_trimmed(text, sentence_start, line_end))
    return spans


def count_tokens(text: str, language: Language, tokenizer: Segmenter) -> int:
    return token_counter(language, tokenizer)(text)


def token_counter(language: Language, tokenizer: Segmenter) -> Callable[[str], int]:
    if language == "zh":
        return lambda text: sum(1 for word in tokenizer.cut(text) if _countable(word))
    return _count_en


def _count_en(text: str) -> int:
    return len(_EN_WORD.findall(text))


def _countable(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _token_spans(
    text: str, start: int, end: int, language: Language, tokenizer: Segmenter
) -> list[tuple[int, int]]:
    """Absolute spans of the countable tokens of ``text[start:end]``."""
    piece = text[start:end]
    if language == "zh":
        spans = [(a, b) for word, a, b in tokenizer.spans(piece) if _countable(word)]
    else:
        spans = [m.span() for m in _EN_WORD.finditer(piece)]
    return [(start + a, start + b) for a, b in spans]


def _line_spans(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    pos = start
    for brk in LINE_BREAK.finditer(text, start, end):
        yield pos, brk.start()
        pos = brk.end()
    yield pos, end


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if start < end else []


def _ends_sentence(text: str, m: re.Match[str], line_end: int, language: Language) -> bool:
    mark = m.group()
    if _FULLWIDTH_END.search(mark):
        return True
    after = m.end()
    if after < line_end and not text[after].isspace():
        # "疼吗?还有": halfwidth marks end Chinese sentences without a space; "3.5", "e.g" do not
        return language == "zh" and mark[0] in "!?;"
    rest = text[after:line_end].lstrip()
    if mark[0] in "!?;":
        if mark[0] == ";" and language != "zh":
            return False
        return not rest[:1].islower()
    # periods and "..."
    if rest[:1].islower():
        return False
    word = re.search(r"[\w.]+$", text[max(0, m.start() - 20) : m.start()])
    if word and word.group().lower() in _ABBREVIATIONS:
        return False
    return not _INITIAL.search(text[max(0, m.start() - 2) : m.start()])


def _units(
    text: str,
    start: int,
    end: int,
    language: Language,
    max_tokens: int,
    count: Callable[[str], int],
    tokenizer: Segmenter,
) -> list[_Unit]:
    if sum(map(str.isalnum, text[start:end])) <= max_tokens:
        # Fits whatever the tokenizer does (a countable token holds a letter, digit or Han
        # character): one unit, so jieba reads the span once.
        return [_Unit(a, b, count(text[a:b])) for a, b in _trimmed(text, start, end)]
    units: list[_Unit] = []
    for a, b in split_sentences(text, start, end, language):
        n = count(text[a:b])
        if n <= max_tokens:
            units.append(_Unit(a, b, n))
        else:
            units.extend(_split_long(text, a, b, language, max_tokens, count, tokenizer))
    return units


def _split_long(
    text: str,
    start: int,
    end: int,
    language: Language,
    max_tokens: int,
    count: Callable[[str], int],
    tokenizer: Segmenter,
) -> list[_Unit]:
    """An over-long sentence: cut at commas, and a clause still too long between tokens."""
    groups: list[_Unit] = []  # runs of whole clauses, each within budget if it can be
    pos = start
    for cut in [m.end() for m in _CLAUSE.finditer(text, start, end)] + [end]:
        for a, b in _trimmed(text, pos, cut):
            n = count(text[a:b])
            if groups and groups[-1].tokens + n <= max_tokens:  # commas split tokens too
                groups[-1] = _Unit(groups[-1].start, b, groups[-1].tokens + n)
            else:
                groups.append(_Unit(a, b, n))
        pos = cut
    pieces: list[_Unit] = []
    for group in groups:
        if group.tokens <= max_tokens:
            pieces.append(group)
        else:
            pieces.extend(
                _cut_between_tokens(
                    text, group.start, group.end, language, max_tokens, count, tokenizer
                )
            )
    return pieces


def _cut_between_tokens(
    text: str,
    start: int,
    end: int,
    language: Language,
    max_tokens: int,
    count: Callable[[str], int],
    tokenizer: Segmenter,
    cut_before: bool = False,
) -> list[_Unit]:
    """Pieces of ``max_tokens`` tokens; a piece that counts more on its own is cut again."""
    tokens = _token_spans(text, start, end, language, tokenizer)
    cuts = [start, *(tokens[k][0] for k in range(max_tokens, len(tokens), max_tokens)), end]
    pieces: list[_Unit] = []
    for x, y in itertools.pairwise(cuts):
        for a, b in _trimmed(text, x, y):
            cut = cut_before or bool(pieces)
            n = count(text[a:b])
            if n > max_tokens:  # jieba may segment a piece differently from the whole
                pieces.extend(
                    _cut_between_tokens(text, a, b, language, max_tokens, count, tokenizer, cut)
                )
            else:
                pieces.append(_Unit(a, b, n, cut))
    return pieces


def _pack(units: list[_Unit], settings: ChunkSettings) -> list[tuple[int, int]]:
    """Greedy runs ``(first, last)`` of units within the budget, with optional overlap."""
    runs: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last, total = first, units[first].tokens
        while (
            last + 1 < len(units)
            and not units[last + 1].cut_before
            and total + units[last + 1].tokens <= settings.max_tokens
        ):
            last += 1
            total += units[last].tokens
        runs.append((first, last))
        if last + 1 >= len(units):
            break
        nxt = last + 1
        overlap = 0 if units[nxt].cut_before else min(settings.overlap_sentences, last - first)
        while overlap and (
            sum(u.tokens for u in units[nxt - overlap : nxt]) + units[nxt].tokens
            > settings.max_tokens
        ):
            overlap -= 1
        first = nxt - overlap
    return runs
