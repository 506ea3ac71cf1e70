"""HTML to plain text with selectolax: one line per block, page chrome dropped.

The extracted text is what an HTML source stores (``SourceText.text``) and what offsets index.
A page nested too deep to parse in reasonable time is refused before parsing
(:class:`HtmlTooComplex`, with the reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from medcite.ingest.nesting import html_nesting

LOG = logging.getLogger(__name__)

# Never article text. <header> is dropped only outside <article>/<main>, where it holds the
# site banner; inside an article it holds the title and byline. (Not <form>: some sites wrap
# the whole page in one.)
_DROP = (
    "head, script, style, noscript, template, iframe, object, embed, svg, canvas, nav, aside, "
    "footer, button, select, textarea, dialog, [hidden], [aria-hidden=true], [role=navigation], "
    "[role=banner], [role=contentinfo], [role=complementary], [role=search]"
)
_BLOCK = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "caption", "center", "dd"),
        *("details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure"),
        *("footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html"),
        *("legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary", "table"),
        *("tbody", "td", "tfoot", "th", "thead", "tr", "ul"),
    }
)
_HEADING = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

# An HTML parser walks its open elements on most tags, so a page N elements deep takes it
# N steps a tag. Browsers keep the DOM under 512 levels; real pages stay under ~100.
MAX_HTML_DEPTH = 1_000
# The sum of the depth at every tag: ~300 M steps are a few seconds of lexbor's time, and
# ten times the largest page we accept (32 MB, ~1.5 M tags) at a typical depth of 20.
MAX_HTML_WORK = 300_000_000


@dataclass(frozen=True)
class HtmlText:
    text: str
    headings: frozenset[int] = frozenset()  # indices of lines that came from <h1>..<h6>
    meta: dict[str, str] = field(default_factory=dict)  # title / author / date from <head>


class HtmlTooComplex(ValueError):
    """Parsing the page would take too long: its elements nest too deep (see ingest.nesting)."""


def html_to_text(
    html: str, *, max_depth: int = MAX_HTML_DEPTH, max_work: int = MAX_HTML_WORK
) -> HtmlText:
    """The page's text; :class:`HtmlTooComplex` (before parsing) when it nests too deep."""
    from selectolax.lexbor import LexborHTMLParser

    _check_nesting(html, max_depth, max_work)
    tree = LexborHTMLParser(html)
    meta = _head_meta(tree)
    for node in tree.css(_DROP):
        node.decompose()
    in_article = {node.mem_id for node in tree.css("article header, main header")}
    for node in tree.css("header"):
        if node.mem_id not in in_article:
            node.decompose()
    root = tree.body or tree.root
    lines: list[str] = []
    headings: set[int] = set()
    if root is not None:
        _walk(root, lines, headings)
    return HtmlText("\n".join(lines), frozenset(headings), meta)


def _walk(root: Any, lines: list[str], headings: set[int]) -> None:
    buffer: list[str] = []
    heading_depth = 0

    def flush() -> None:
        line = " ".join("".join(buffer).split())
        buffer.clear()
        if line:
            if heading_depth:
                headings.add(len(lines))
            lines.append(line)

    # (node, closing): a block is flushed before its content and again when it closes.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag
        if closing:
            flush()
            if tag in _HEADING:
                heading_depth -= 1
            continue
        if node.is_text_node:
            buffer.append(node.text_content or "")
            continue
        if tag == "br":
            flush()
            continue
        if tag in _BLOCK:
            flush()
            if tag in _HEADING:
                heading_depth += 1
            stack.append((node, True))
        if tag.startswith("-"):  # comments and other non-element nodes
            continue
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children))
    flush()


def _check_nesting(html: str, max_depth: int, max_work: int) -> None:
    nesting = html_nesting(html, max_depth=max_depth, max_work=max_work)
    if nesting.depth > max_depth:
        raise HtmlTooComplex(
            f"HTML nested more than {max_depth:,} elements deep (the parser's time grows "
            "with the square of the depth)"
        )
    if nesting.work > max_work:
        raise HtmlTooComplex(
            f"HTML too costly to parse: more than {max_work:,} steps through open elements "
            "(deep nesting times many tags)"
        )


def _head_meta(tree: Any) -> dict[str, str]:
    meta: dict[str, str] = {}
    title = tree.css_first("title")
    if title is not None and title.text(strip=True):
        meta["title"] = " ".join(title.text().split())
    wanted = {
        "author": "author",
        "article:author": "author",
        "article:published_time": "date",
        "date": "date",
        "dc.date": "date",
        "pubdate": "date",
        "og:site_name": "site",
        "application-name": "site",
    }
    for node in tree.css("meta"):
        key = (node.attributes.get("name") or node.attributes.get("property") or "").lower()
        content = (node.attributes.get("content") or "").strip()
        if key in wanted and content and wanted[key] not in meta:
            meta[wanted[key]] = content
    return meta
