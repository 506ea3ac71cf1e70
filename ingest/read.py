"""Load a corpus: files and directories of articles to sources, documents and file reports.

Articles are ``.txt`` / ``.md`` / ``.html`` / ``.pdf`` / ``.docx`` pages (one main article,
possibly followed by short Q&A cards, each its own document; PDF and Word text is extracted by
:mod:`ingest.documents`) and BEIR-style ``*.jsonl`` files (one ``{"id", "title",
"text"}`` record per line, each its own document and source).

Ids: a page with one document uses its relative path ("a/b.txt"); further documents on the same
page are "a/b.txt#1", "a/b.txt#2", ... in page order. A jsonl record uses its own id, prefixed
with "FILE.jsonl#" only when the same id also comes from another file. A record's source is
always "FILE.jsonl#ID".
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from medcite.ingest.decode import UndecodableError, decode_bytes
from medcite.ingest.documents import MAX_PDF_PAGES, DocumentError, docx_to_text, pdf_to_text
from medcite.ingest.extract import HtmlTooComplex, html_to_text
from medcite.ingest.language import detect_language
from medcite.ingest.metadata import normalize_title
from medcite.ingest.page import Draft, parse_page
from medcite.ingest.types import Document, FileReport, FileStatus, LoadResult, Segment, SourceText

LOG = logging.getLogger(__name__)

Kind = Literal["text", "markdown", "html", "jsonl", "pdf", "docx"]
KINDS: dict[str, Kind] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
    ".pdf": "pdf",
    ".docx": "docx",
}
_LANGUAGE_SAMPLE = 4000  # characters of a document used to decide its language
_BAD_LINES_SHOWN = 5


@dataclass(frozen=True)
class _Input:
    path: Path
    rel: str  # posix path relative to the corpus root


@dataclass
class _FileResult:
    report: FileReport
    sources: list[SourceText]
    documents: list[Document]


# An article is at most a few MB; a BEIR corpus.jsonl (one file) can be far larger. Above
# these sizes a file is refused with the reason, not read into memory.
MAX_ARTICLE_BYTES = 32 * 1024 * 1024
MAX_JSONL_BYTES = 2 * 1024 * 1024 * 1024


def load(
    paths: Sequence[Path],
    *,
    root: Path | None = None,
    max_article_bytes: int = MAX_ARTICLE_BYTES,
    max_jsonl_bytes: int = MAX_JSONL_BYTES,
    follow_external_symlinks: bool = False,
) -> LoadResult:
    """Read every supported file under ``paths``; every file found gets a :class:`FileReport`.

    ``root`` is the directory sources are named relative to; by default a directory argument
    is its own root and a file argument's root is its parent directory. A path outside an
    explicit ``root`` is a ``ValueError``. Directories are read recursively in sorted order;
    hidden entries (".name") are reported as skipped without being read, and so is a symbolic
    link found inside a directory that leads outside it, unless ``follow_external_symlinks``.
    A file that cannot be read (a link loop, a name that is not UTF-8, a record nested too
    deeply, a lone surrogate) is one failed file or line in the report; the rest is read.
    """
    reports: list[FileReport] = []
    sources: list[SourceText] = []
    documents: list[Document] = []
    limits = {"jsonl": max_jsonl_bytes, "other": max_article_bytes}
    found = _discover([Path(p) for p in paths], root, follow_external_symlinks)
    for item, problem in found:
        result = _read_file(item, limits) if problem is None else _report(item, *problem)
        reports.append(result.report)
        sources.extend(result.sources)
        documents.extend(result.documents)
        report = result.report
        trouble = report.status == "failed" or (report.status == "ingested" and report.reason)
        log = LOG.warning if trouble else LOG.debug
        log("%s: %s (%s)", item.rel, report.status, report.reason or "ok")
    sources, documents = _unique_names(sources, documents)
    LOG.info(
        "loaded %d documents from %d of %d files",
        len(documents),
        sum(1 for r in reports if r.status == "ingested"),
        len(reports),
    )
    return LoadResult(tuple(sources), tuple(documents), tuple(reports))


# --- finding files ---------------------------------------------------------------------------


_Problem = tuple[FileStatus, str]  # a file reported without being read


def _discover(
    paths: list[Path], root: Path | None, follow_external: bool = False
) -> Iterator[tuple[_Input, _Problem | None]]:
    """Every file under ``paths`` in order, with the reason when it is not to be read."""
    seen_files: dict[Path, str] = {}
    seen_dirs: set[Path] = set()
    names: set[str] = set()
    for path in paths:
        base = root if root is not None else (path if path.is_dir() else path.parent)
        if not path.exists():
            why = _missing(path)
            yield _Input(path, _printable(_relative(path, base))), ("failed", why)
            continue
        walk = _walk(path, base, seen_dirs, None if follow_external else _resolved(base))
        for found, problem in walk:
            if problem is None:
                problem = _bad_name(found)
            if problem is not None:
                yield replace(found, rel=_printable(found.rel)), problem
                continue
            real = _resolved(found.path)
            if real is None:
                yield found, ("failed", _missing(found.path))
            elif real in seen_files:
                yield found, ("skipped", f"same file as {seen_files[real]}")
            elif found.rel in names:
                yield found, ("skipped", "another input has the same relative path")
            else:
                seen_files[real] = found.rel
                names.add(found.rel)
                yield found, None


def _resolved(path: Path) -> Path | None:
    """``path`` with every symbolic link followed; None for a link loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # "Symlink loop" (3.11), ELOOP
        return None


def _missing(path: Path) -> str:
    if path.is_symlink():
        return "symbolic link loop" if _resolved(path) is None else "broken symbolic link"
    return "not found"


def _printable(rel: str) -> str:
    """A name fit for reports and JSON: bytes that are not UTF-8 (surrogate-escaped by the
    OS layer) shown as ``\\xff``."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _bad_name(item: _Input) -> _Problem | None:
    """A file name that cannot be cited or stored: bytes that are not UTF-8."""
    if _printable(item.rel) != item.rel:
        return ("failed", "the file name is not valid UTF-8; rename the file")
    return None


def _walk(
    path: Path, base: Path, seen_dirs: set[Path], inside: Path | None = None
) -> Iterator[tuple[_Input, _Problem | None]]:
    """Files under ``path``, sorted by name within each directory.

    Directories are tracked by their resolved path, so a symbolic link loop is read once.
    With ``inside`` (the resolved corpus root), a symbolic link below ``path`` that leads
    outside it is skipped, not followed.
    """
    item = _Input(path, _relative(path, base))
    if not path.is_dir():
        yield item, None
        return
    real = _resolved(path)
    if real is None or real in seen_dirs:
        yield item, ("skipped", "directory already read (symbolic link loop or alias)")
        return
    seen_dirs.add(real)
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        yield item, ("failed", f"unreadable directory: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            what = "directory" if entry.is_dir() else "file"
            yield _Input(entry, _relative(entry, base)), ("skipped", f"hidden {what}")
        elif inside is not None and entry.is_symlink() and _outside(entry, inside):
            yield (
                _Input(entry, _relative(entry, base)),
                (
                    "skipped",
                    "symbolic link to a path outside the corpus (not followed; "
                    "`medcite ingest --follow-symlinks` follows it)",
                ),
            )
        else:
            yield from _walk(entry, base, seen_dirs, inside)


def _outside(link: Path, inside: Path) -> bool:
    target = _resolved(link)
    return target is not None and not target.is_relative_to(inside)


def _relative(path: Path, base: Path) -> str:
    for form in (Path.absolute, _resolved):  # resolved only when needed: it may loop
        p, b = form(path), form(base)
        if p is None or b is None:
            continue
        try:
            rel = p.relative_to(b).as_posix()
        except ValueError:
            continue
        return rel if rel != "." else path.name
    raise ValueError(f"{path} is not under the corpus root {base}")


# --- reading one file ------------------------------------------------------------------------


def _read_file(item: _Input, limits: dict[str, int]) -> _FileResult:
    suffix = item.path.suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        what = f"'{suffix}'" if suffix else "without an extension"
        return _report(item, "skipped", f"unsupported file type {what}")
    if not item.path.exists():
        return _report(item, "failed", "broken symbolic link")
    if not item.path.is_file():  # a FIFO or device would block or never end
        return _report(item, "skipped", "not a regular file")
    limit = limits["jsonl" if kind == "jsonl" else "other"]
    try:
        size = item.path.stat().st_size
        if size > limit:
            return _report(
                item, "failed", f"too large: {size:,} bytes (the limit is {limit:,} bytes)"
            )
        data = item.path.read_bytes()
    except OSError as exc:
        return _report(item, "failed", f"unreadable: {exc.strerror or exc}")
    if not data.strip():
        return _report(item, "skipped", "empty")
    if kind in ("pdf", "docx"):
        return _read_document(item, data, kind)
    try:
        text, encoding = decode_bytes(data)
    except UndecodableError as exc:
        return _report(item, "failed", str(exc))
    if not text.strip():
        return _report(item, "skipped", "empty", encoding)
    if kind == "jsonl":
        return _read_jsonl(item, text, encoding)
    return _read_page(item, text, encoding, kind)


def _report(
    item: _Input, status: FileStatus, reason: str | None, encoding: str | None = None
) -> _FileResult:
    return _FileResult(FileReport(item.rel, status, reason, encoding), [], [])


def _read_document(item: _Input, data: bytes, kind: Kind) -> _FileResult:
    """A PDF or Word file: its extracted text read as a page (see :mod:`ingest.documents`)."""
    try:
        if kind == "pdf":
            extracted = pdf_to_text(data, max_pages=MAX_PDF_PAGES)
        else:
            extracted = docx_to_text(data)
    except DocumentError as exc:
        return _report(item, "failed", str(exc), kind)
    return _read_page(
        item,
        extracted.text,
        kind,
        kind,
        headings=extracted.headings,
        meta=extracted.meta,
        drop=extracted.drop,
        pages=extracted.pages,
    )


def _read_page(
    item: _Input,
    raw: str,
    encoding: str,
    kind: Kind,
    *,
    headings: frozenset[int] = frozenset(),
    meta: dict[str, str] | None = None,
    drop: frozenset[int] = frozenset(),
    pages: tuple[int, ...] | None = None,
) -> _FileResult:
    text = raw
    if kind == "html":
        try:
            extracted = html_to_text(raw)
        except HtmlTooComplex as exc:
            return _report(item, "failed", str(exc), encoding)
        text, headings, meta = extracted.text, extracted.headings, extracted.meta
    drafts = parse_page(
        text,
        markdown=kind == "markdown",
        headings=headings,
        meta=meta or {},
        drop=drop,
        layout_lines=kind == "pdf",
    )
    if not drafts:
        return _report(item, "skipped", "no article text after removing boilerplate", encoding)
    source = SourceText(item.rel, text, encoding, kind, pages)
    documents = _page_documents(item.rel, text, drafts)
    report = FileReport(item.rel, "ingested", None, encoding, len(documents))
    return _FileResult(report, [source], documents)


def _page_documents(rel: str, text: str, drafts: list[Draft]) -> list[Document]:
    documents: list[Document] = []
    first_with_title: dict[str, str] = {}
    for n, draft in enumerate(drafts):
        doc_id = rel if n == 0 else f"{rel}#{n}"
        key = normalize_title(draft.title)
        body = "\n".join(text[s.start : s.end] for s in draft.segments)
        documents.append(
            Document(
                doc_id=doc_id,
                source=rel,
                title=draft.title,
                language=detect_language((draft.title + "\n" + body)[:_LANGUAGE_SAMPLE]),
                segments=tuple(draft.segments),
                author=draft.author,
                author_title=draft.author_title,
                institution=draft.institution,
                date=draft.date,
                site=draft.site,
                kind=draft.kind,
                near_duplicate_of=first_with_title.get(key) if key else None,
            )
        )
        if key:
            first_with_title.setdefault(key, doc_id)
    return documents


def _read_jsonl(item: _Input, text: str, encoding: str) -> _FileResult:
    """One document per record; a bad line is reported and the rest of the file still read."""
    sources: list[SourceText] = []
    documents: list[Document] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    # Split on "\n" only: JSON strings may hold U+2028 and other characters splitlines() breaks on.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = _record(raw)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        doc_id, title, body = record
        if doc_id in first_line:
            problems.append(
                f"line {number}: duplicate id {doc_id!r} (kept line {first_line[doc_id]})"
            )
            continue
        first_line[doc_id] = number
        start = len(body) - len(body.lstrip())
        source = f"{item.rel}#{doc_id}"
        sources.append(SourceText(source, body, "json", "jsonl"))
        documents.append(
            Document(
                doc_id=doc_id,
                source=source,
                title=title,
                language=detect_language((title + "\n" + body)[:_LANGUAGE_SAMPLE]),
                segments=(Segment(start, len(body.rstrip())),),
                kind="record",
            )
        )
    detail = "; ".join(problems[:_BAD_LINES_SHOWN])
    if len(problems) > _BAD_LINES_SHOWN:
        detail += f"; and {len(problems) - _BAD_LINES_SHOWN} more"
    if not documents:
        if problems:
            return _report(item, "failed", f"no valid records: {detail}", encoding)
        return _report(item, "skipped", "empty", encoding)
    plural = "line" if len(problems) == 1 else "lines"
    skipped = f"{len(problems)} bad {plural} skipped: {detail}" if problems else None
    report = FileReport(item.rel, "ingested", skipped, encoding, len(documents))
    return _FileResult(report, sources, documents)


def _record(raw: str) -> tuple[str, str, str]:
    """``(id, title, text)`` of one jsonl line; ``ValueError`` says what is wrong with it."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    doc_id = record.get("id", record.get("_id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id) == "":
        raise ValueError("no usable id")
    title = record.get("title") or ""
    body = record.get("text")
    if not isinstance(title, str):
        raise ValueError("title is not a string")
    if not isinstance(body, str):
        raise ValueError("no text" if body is None else "text is not a string")
    if not body.strip():
        raise ValueError("empty text")
    for field, value in (("id", str(doc_id)), ("title", title), ("text", body)):
        lone = _SURROGATE.search(value)
        if lone:  # a JSON escape such as "\ud800": not a character, cannot be stored or cited
            raise ValueError(
                f"{field} holds a lone surrogate (U+{ord(lone.group()):04X}), not valid Unicode"
            )
    return str(doc_id), title, body


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unique_names(
    sources: list[SourceText], documents: list[Document]
) -> tuple[list[SourceText], list[Document]]:
    """Make source names and document ids unique by construction, whatever the file names
    and record ids are (a page file may be named "a.jsonl#x.txt", a record id may be
    "b.jsonl#shared" or "a.txt").

    Sources: a page keeps its path (paths are unique); a record keeps "FILE.jsonl#ID" unless
    that is taken, then gets "~2", "~3", ... Documents: a page's ids ("a.txt", "a.txt#1")
    and every record id no other document has are kept; a record id two documents share
    becomes the record's source name, and one that is still taken a "~N" suffix.
    """
    # Record documents and record sources are made one for one, in the same order.
    taken_sources = {s.source for s in sources if s.kind != "jsonl"}
    record_names: list[str] = []
    for source in sources:
        if source.kind == "jsonl":
            record_names.append(_free(source.source, taken_sources))
            taken_sources.add(record_names[-1])
    names = iter(record_names)
    sources = [replace(s, source=next(names)) if s.kind == "jsonl" else s for s in sources]
    names = iter(record_names)
    documents = [replace(d, source=next(names)) if d.kind == "record" else d for d in documents]
    counts = Counter(d.doc_id for d in documents)
    taken = {d.doc_id for d in documents if d.kind != "record" or counts[d.doc_id] == 1}
    unique: list[Document] = []
    for doc in documents:
        if doc.kind == "record" and counts[doc.doc_id] > 1:
            doc = replace(doc, doc_id=_free(doc.source, taken))
            taken.add(doc.doc_id)
        unique.append(doc)
    return sources, unique


def _free(name: str, taken: set[str]) -> str:
    """``name``, or ``name~2``, ``name~3``, ... whichever is not taken yet."""
    if name not in taken:
        return name
    n = 2
    while f"{name}~{n}" in taken:
        n += 1
    return f"{name}~{n}"
