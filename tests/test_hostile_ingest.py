"""Hostile HTML (issue 11, item 8): a page nested too deep for the parser is refused before
parsing, with the reason, and the rest of the corpus is indexed.

lexbor walks its stack of open elements on most tags, so its time grows with the square of
the nesting (100,000 nested ``<div>``: about a minute). :mod:`ingest.nesting` estimates the
depth in one pass; these tests check its refusals through ``load`` and ``build_index``, its
work count, and its estimate against the depth of lexbor's own tree (the reference).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import selectolax.lexbor
from selectolax.lexbor import LexborHTMLParser

from medcite.index.build import build_index
from medcite.index.embed import HashingEmbedder
from medcite.index.store import load_index
from medcite.ingest import load
from medcite.ingest.extract import MAX_HTML_DEPTH, HtmlTooComplex, html_to_text
from medcite.ingest.nesting import html_nesting

ARTICLE = "Knee pain after running\n\nRest, ice and gentle stretching help most runners.\n"
UNLIMITED = {"max_depth": 10**9, "max_work": 10**18}


def dom_depth(html: str) -> int:
    """How deep lexbor's tree of the page is, below <body> (the reference)."""
    tree = LexborHTMLParser(html)
    deepest = 1
    stack = [(tree.root, 0)]  # <html>: <body> (or <frameset>) is at 1
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        child = node.child if node is not None else None
        while child is not None:
            if not child.is_text_node and not str(child.tag).startswith("-"):
                stack.append((child, depth + 1))
            child = child.next
    return deepest - 1


def estimate(html: str) -> int:
    return html_nesting(html, **UNLIMITED).depth


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lengths of the pages handed to lexbor."""
    seen: list[int] = []

    def counting(html: str) -> LexborHTMLParser:
        seen.append(len(html))
        return LexborHTMLParser(html)

    monkeypatch.setattr(selectolax.lexbor, "LexborHTMLParser", counting)
    return seen


# --- through load() and build_index() ---------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param("<div>" * 50_000 + "deep" + "</div>" * 50_000, id="50k-nested-div"),
        pytest.param("<div><p>" * 30_000 + "deep", id="30k-unclosed-div-p"),
        pytest.param("<span><div></span>" * 20_000, id="20k-misnested-span-div"),
        pytest.param("<svg><foreignObject>" + "<div/>" * 20_000, id="20k-self-closed-div"),
    ],
)
def test_a_page_nested_too_deep_is_one_failed_file_and_the_rest_is_indexed(
    tmp_path: Path, parsed: list[int], hostile: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "deep.html").write_text(f"<html><body>{hostile}</body></html>", encoding="utf-8")
    (corpus / "knee.txt").write_text(ARTICLE, encoding="utf-8")
    (corpus / "ok.html").write_text(
        "<html><body><article><h1>Sciatica</h1><p>Sciatica is leg pain from the lower back."
        "</p></article></body></html>",
        encoding="utf-8",
    )
    result = load([corpus])
    reports = {r.path: (r.status, r.reason) for r in result.reports}
    status, reason = reports["deep.html"]
    assert status == "failed"
    assert reason is not None and f"nested more than {MAX_HTML_DEPTH:,} elements deep" in reason
    assert reports["knee.txt"] == ("ingested", None) and reports["ok.html"] == ("ingested", None)
    assert len(parsed) == 1  # ok.html only: the hostile page never reached the parser
    out = tmp_path / "index"
    build_index(result, HashingEmbedder(32), index_dir=out, settings=_settings(out), cache=None)
    index = load_index(out)
    assert {d.source for d in index.documents.values()} == {"knee.txt", "ok.html"}
    assert {r.path: r.status for r in index.reports}["deep.html"] == "failed"


def _settings(out: Path):  # type: ignore[no-untyped-def]
    from medcite.service.settings import Settings

    return Settings(index_dir=out).build()


def test_a_deep_but_ordinary_page_is_still_read(tmp_path: Path) -> None:
    """900 nested blocks, and 20,000 paragraphs and list items never closed (old HTML)."""
    nested = "<div>" * 900 + "<p>Knee pain after running is common.</p>" + "</div>" * 900
    unclosed = "<ul>" + "<li>Rest the knee" * 10_000 + "</ul>" + "<p>Ice helps." * 10_000
    (tmp_path / "nested.html").write_text(f"<body>{nested}</body>", encoding="utf-8")
    (tmp_path / "unclosed.html").write_text(f"<body>{unclosed}</body>", encoding="utf-8")
    result = load([tmp_path])
    assert {(r.path, r.status) for r in result.reports} == {
        ("nested.html", "ingested"),
        ("unclosed.html", "ingested"),
    }
    assert estimate(nested) == dom_depth(nested) == 901
    assert estimate(unclosed) == dom_depth(unclosed) == 2


# --- the work the parser would do -------------------------------------------------------------


def test_the_work_count_is_the_square_of_the_nesting() -> None:
    for n in (10, 100, 1000):
        nesting = html_nesting("<div>" * n + "</div>" * n, **UNLIMITED)
        assert (nesting.depth, nesting.work, nesting.complete) == (n, n * n, True)
    flat = html_nesting("<p>x</p>" * 1000, **UNLIMITED)
    assert (flat.depth, flat.work) == (1, 1000)


def test_the_scan_stops_at_the_limit() -> None:
    nesting = html_nesting("<div>" * 100_000, max_depth=1000, max_work=10**18)
    assert (nesting.depth, nesting.complete) == (1001, False)


def test_a_long_page_just_under_the_depth_limit_is_refused_by_the_work_bound() -> None:
    """Deep enough to be slow on every tag, not deep enough for the depth limit."""
    page = "<div>" * 90 + "<p>x</p>" * 2000
    with pytest.raises(HtmlTooComplex, match="too costly to parse"):
        html_to_text(page, max_depth=100, max_work=100_000)
    assert html_to_text(page, max_depth=100, max_work=1_000_000).text.startswith("x\nx")


# --- the estimate against lexbor's tree -------------------------------------------------------

N = 300
CONSTRUCTS = {
    "nested blocks": "<div>" * N + "x" + "</div>" * N,
    "unclosed div p": "<div><p>" * N + "x",
    "unclosed paragraphs": "<p>x" * N,
    "unclosed list items": "<ul>" + "<li><b>x" * N + "</ul>",
    "unclosed cells": "<table>" + ("<tr>" + "<td>x" * 5) * N + "</table>",
    "misnested bold": "<b><p>x</b>y</p>" * N,
    "misnested span": "<span><div></span>" * N,
    "bold around blocks": "<b><div></b>" * N,
    "reopened formatting": "<div>" + "".join(f"<b class=c{i}>" for i in range(N)) + "</div>x",
    "unclosed formatting": "<b><i><u>x" * N,
    "svg self-closed": "<svg>" + "<path d='M0'/>" * N + "</svg>",
    "svg icons": "<p><svg><title>t</title><desc>d</desc><g><path/></g></svg>x</p>" * N,
    "html self-closed": "<div/>" * N,
    "html in svg": "<svg><foreignObject>" + "<div/>" * N,
    "svg style": "<svg><style>" + "<g>" * N,
    "mathml title": "<math><title><style>" + "<mi>" * N,
    "comment --!>": "<!-- --!>" + "<div>" * N,
    "attribute =quote": '<x ="> ' + "<div>" * N + ' "',
    "tables in paragraphs": "<p><table><tr><td>" * N,
    "script text": "<script>var a='<div><div>';</script>" * N,
    "select": "<select><button><nobr>" * N,
    "frameset": "<frameset><style>" * N,
    "ruby": "<rb><ruby/><dt>" * N,
    "br end tag": "</div></br><div><font>" * N,
}


@pytest.mark.parametrize("html", CONSTRUCTS.values(), ids=CONSTRUCTS.keys())
def test_the_estimate_is_lexbors_depth(html: str) -> None:
    real = dom_depth(html)
    assert real - 2 <= estimate(html) <= real + 2


def test_the_estimate_of_forms_counts_their_stack_not_their_tree() -> None:
    """``</form>`` takes a form off the stack but leaves it in the tree (twice as deep)."""
    html = "<form><div></form>" * N
    assert estimate(html) == N + 1 and dom_depth(html) == 2 * N


SOUP = (
    "div p span b i a li ul ol td tr table tbody th dd dt dl h1 h2 form button select option "
    "optgroup svg math g foreignObject desc title mi mtext annotation-xml font nobr em pre "
    "xmp style script textarea template object caption noscript br img hr input center "
    "applet marquee ruby rt rb rtc iframe noembed frameset frame head body html col"
)


def _tag_soup(rng: random.Random) -> Callable[[], str]:
    names = SOUP.split()
    attributes = ("", " a=1", " color=red", " encoding='text/html'", "/", ' x="y"')

    def token() -> str:
        roll, name = rng.random(), rng.choice(names)
        if roll < 0.55:
            return f"<{name}{rng.choice(attributes)}>"
        if roll < 0.85:
            return f"</{name}>"
        return rng.choice(["t", " ", "<!-- c -->", "<!-->", "<!x>", "</>"])

    return token


def test_the_estimate_is_never_far_under_lexbors_depth_on_repeated_tag_soup() -> None:
    """A hostile page repeats what grows the parser's stack: whatever a random unit of tags
    does to lexbor's depth, repeated 100 times the estimate grows at least half as fast."""
    rng = random.Random(11)
    token = _tag_soup(rng)
    for _ in range(400):
        unit = "".join(token() for _ in range(rng.randint(2, 14)))
        html = unit * 100
        real = dom_depth(html)
        assert estimate(html) >= real / 2 - 3, unit
