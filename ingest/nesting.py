"""How deep an HTML parser's stack of open elements gets, estimated in one linear pass.

An HTML5 tree builder walks its stack of open elements on most tags ("is there a ``<p>`` in
button scope?", "is this end tag's element open?"), so a page nested N elements deep costs it
about N steps per tag: 100,000 nested ``<div>`` take lexbor (selectolax) about a minute.
:func:`html_nesting` replays the tokens of a page on a model of that stack, cheaply and before
parsing, so such a page is refused instead of parsed.

The model follows the parts of the tree-construction rules that change the depth: void and
raw-text elements, end tags (in scope, not past a "special" element), the implied ends of
``<p>``, ``<li>``, ``<dd>``/``<dt>``, headings, table cells, rows and options, formatting
elements (reopened after a block closes them, at most three alike), and SVG/MathML content
(``/>`` closes there; HTML tags break out of it). Where it simplifies, it keeps elements open
that the parser would close: its depth errs high, never far low, so a hostile page cannot hide
its depth from it. ``work`` sums the depth at every tag: the steps the parser's stack walks may
take, which bounds its time on a page that is long rather than deep.

Where lexbor departs from the older spec, the model follows lexbor: a ``<select>`` holds any
markup (and nothing closes past it), ``<noscript>`` is parsed as markup. It counts the stack,
not the tree: a ``</form>`` leaves its form in the tree but takes it off the stack.
tests/test_hostile_ingest.py checks the estimate against the depth of lexbor's own tree.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_WS = "\t\n\f\r "
# One token of markup: a tag (1 "/" of an end tag, 2 name, 3 attributes, 4 "/" of "/>"),
# a comment start (5), other "<!" "<?" "</" markup (6), or a tag the file ends inside (7).
# Attributes as the tokenizer reads them: a name may start with "=" or hold quotes; only a
# value after "=" is quoted.
_TOKEN = re.compile(
    r"""<(?:
        (/?)([A-Za-z][^\t\n\f\r />]*+)
        ((?:[\t\n\f\r ]++|/(?!>)
           |[^\t\n\f\r />][^\t\n\f\r />=]*+
            (?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+))?+
         )*+)
        (/?)>
      |(!--)|([!?/])|(/?[A-Za-z]))""",
    re.X,
)
# "<!-->" and "<!--->" end at once; else the first "-->" or "--!>".
_COMMENT_REST = re.compile(r"-?>|(?s:.*?)--!?>")
_FONT_BREAKS_OUT = re.compile(r"[\t\n\f\r /](?:color|face|size)[\t\n\f\r /=>]", re.I)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_VOID = _names(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr"
)
_HEAD = _names("html head base basefont bgsound link meta title style script noscript noframes")
_IGNORED = frozenset({"html", "head", "body"})  # start tags the body never opens again
# Skipped to their end tag (not <noscript>: whether it is raw text depends on scripting).
_RAW_TEXT = _names("script style xmp iframe noembed noframes textarea title")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_CLOSES_P = _HEADINGS | _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul pre listing form "
    "plaintext xmp li dd dt hr"
)  # (not <table>: it does not close a <p> in quirks mode)
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
_MARKERS = _names("applet marquee object template td th caption")
# (lexbor also stops at an open <select>: end tags and implied ends do not reach past it)
# (and nothing reaches past a <frameset>, which a page with frames keeps open)
_SCOPE = _names("applet caption html table td th marquee object template select frameset")
_SPECIAL = _HEADINGS | _names(
    "address applet area article aside base basefont bgsound blockquote body br button caption "
    "center col colgroup dd details dir div dl dt embed fieldset figcaption figure footer form "
    "frame frameset head header hgroup hr html iframe img input keygen li link listing main "
    "marquee menu meta nav noembed noframes noscript object ol p param plaintext pre script "
    "search section select source style summary table tbody td template textarea tfoot th "
    "thead title tr track ul wbr xmp"
)
_BREAKOUT = _HEADINGS | _names(
    "b big blockquote body br center code dd div dl dt em embed head hr i img li listing menu "
    "meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var"
)
# End tags that close their element with whatever is open inside it (if no scope marker is
# in the way); any other end tag closes its element only when no "special" one is inside it.
_BLOCK_ENDS = _names(
    "address article aside blockquote button center details dialog dir div dl fieldset "
    "figcaption figure footer header hgroup listing main menu nav ol pre search section summary "
    "ul applet marquee object select"
)
# Start tags (besides those that close a <p>) before which closed formatting is not reopened.
_NO_REOPEN = _names(
    "table hr textarea iframe noembed param source track rb rtc rp rt frameset frame body html "
    "head base basefont bgsound link meta script style template title noframes caption col "
    "colgroup tbody td tfoot th thead tr"
)
# What "generate implied end tags" closes when it is the current element.
_IMPLIED_ENDS = _names("dd dt li optgroup option p rb rp rt rtc")
_TABLE_PARTS = ("td", "th", "tr", "tbody", "thead", "tfoot")
_SECTIONS = ("tbody", "thead", "tfoot")
_TABLE_ONLY = frozenset({*_TABLE_PARTS, "caption", "col", "colgroup"})
_ADOPTION_ROUNDS = 8  # the adoption agency's outer loop


# SVG / MathML elements that are scope markers and "special" like HTML blocks.
_FOREIGN_MARKERS = {
    "svg": frozenset({"foreignobject", "desc", "title"}),
    "math": frozenset({"mi", "mo", "mn", "ms", "mtext", "annotation-xml"}),
}
_HTML_ANNOTATION = re.compile(
    r"encoding[\t\n\f\r ]*=[\t\n\f\r ]*[\"']?(?:text/html|application/xhtml\+xml)", re.I
)


def _keys(name: str, ns: str) -> tuple[str, ...]:
    """The index keys of an open element: its name and the categories the rules ask for."""
    if ns != "html":
        if name in _FOREIGN_MARKERS[ns]:
            return ("~" + name, "@scope", "@special", "@stop-li", "@stop-dd")
        return ("~" + name,)
    keys = [name, "@html"]
    if name in _SCOPE:
        keys.append("@scope")
    if name in ("html", "table", "template", "frameset"):
        keys.append("@table")
    if name == "button":
        keys.append("@button")
    if name in ("ol", "ul"):
        keys.append("@list")
    if name in _HEADINGS:
        keys.append("@heading")
    if name in _SPECIAL:
        keys.append("@special")
        if name not in ("address", "div", "p", "li"):
            keys.append("@stop-li")
        if name not in ("address", "div", "p", "dd", "dt"):
            keys.append("@stop-dd")
    return tuple(keys)


@dataclass(eq=False, slots=True)
class _Formatting:
    """An entry of the list of active formatting elements."""

    name: str
    signature: str  # tag name and attribute text: "alike" for the at-most-three rule
    element: _Element | None = None  # its open element, None while it is closed
    removed: bool = False


@dataclass(eq=False, slots=True)
class _Element:
    name: str
    ns: str  # "html", "svg" or "math"
    position: int  # in the stack; elements are only ever pushed on top
    keys: tuple[str, ...]
    integration: bool = False  # SVG/MathML holding HTML (<foreignObject>, <mi>, ...)
    formatting: _Formatting | None = None
    alive: bool = True  # False once taken out of the middle of the stack


@dataclass
class _Segment:
    """Formatting entries since the last marker (a cell, caption, object, template ...)."""

    entries: list[_Formatting] = field(default_factory=list)
    by_name: dict[str, list[_Formatting]] = field(default_factory=dict)
    alike: dict[str, list[_Formatting]] = field(default_factory=dict)

    def add(self, entry: _Formatting) -> None:
        self.entries.append(entry)
        self.by_name.setdefault(entry.name, []).append(entry)
        alike = self.alike.setdefault(entry.signature, [])
        alike[:] = [e for e in alike if not e.removed]
        alike.append(entry)


@dataclass(frozen=True)
class Nesting:
    depth: int  # the most elements open at once
    work: int  # the sum of the depth at every tag
    complete: bool = True  # False when the scan stopped at a limit


class _Model:
    """The stack of open elements and the list of active formatting elements."""

    def __init__(self, max_depth: int, max_work: int) -> None:
        self.stack: list[_Element] = []
        self.at: dict[str, list[int]] = {}  # key -> positions in the stack, bottom to top
        self.depth = 0  # live elements in the stack
        self.most = 0
        self.work = 0
        self.max_depth, self.max_work = max_depth, max_work
        self.segments = [_Segment()]
        self.form: _Element | None = None  # the parser's "form element pointer"
        self.in_head = True  # before the first body content: <noscript> is the head's
        self.frameset = False  # a <frameset> was opened
        self.closed_formatting = False  # whether the list may hold closed entries to reopen
        self.keys: dict[tuple[str, str], tuple[str, ...]] = {}

    @property
    def over(self) -> bool:
        return self.most > self.max_depth or self.work > self.max_work

    # --- the stack ---

    def top(self, key: str) -> int:
        """Position of the topmost live element with ``key``, or -1."""
        positions = self.at.get(key)
        while positions and not self.stack[positions[-1]].alive:
            positions.pop()
        return positions[-1] if positions else -1

    def current(self) -> _Element | None:
        while self.stack and not self.stack[-1].alive:
            self._drop_last()
        return self.stack[-1] if self.stack else None

    def foreign(self) -> bool:
        """Whether start tags and text go to SVG/MathML content rather than HTML."""
        current = self.current()
        return current is not None and current.ns != "html" and not current.integration

    def push(self, name: str, ns: str = "html", integration: bool = False) -> _Element:
        keys = self.keys.get((name, ns))
        if keys is None:
            keys = self.keys[name, ns] = _keys(name, ns)
        element = _Element(name, ns, len(self.stack), keys, integration)
        for key in element.keys:
            self.at.setdefault(key, []).append(element.position)
        self.stack.append(element)
        self.depth += 1
        self.most = max(self.most, self.depth)
        return element

    def pop_to(self, position: int) -> None:
        """Close the element at ``position`` and every element above it."""
        while len(self.stack) > position:
            self._drop_last()

    def _drop_last(self) -> None:
        element = self.stack.pop()
        for key in element.keys:
            positions = self.at[key]
            if positions and positions[-1] == element.position:
                positions.pop()
        if element.alive:
            self._closed(element)

    def take_out(self, element: _Element) -> None:
        """Remove one element from the middle of the stack (what it holds stays open)."""
        element.alive = False
        self._closed(element)

    def _closed(self, element: _Element) -> None:
        self.depth -= 1
        if element.formatting is not None:
            element.formatting.element = None
            self.closed_formatting = True
        if element.ns == "html" and element.name in ("td", "th", "caption", "template"):
            self.clear_to_marker()  # a cell, caption or template closes with its formatting

    def clear_to_marker(self) -> None:
        if len(self.segments) > 1:
            for entry in self.segments.pop().entries:
                if entry.element is not None:
                    entry.element.formatting = None
            self.closed_formatting = True  # (the entries before the marker may be closed)

    def is_open(self, element: _Element) -> bool:
        stack = self.stack
        return element.position < len(stack) and stack[element.position] is element

    def in_scope(self, key: str, *markers: str) -> int:
        """Position of the topmost ``key`` when no scope marker is above it, else -1."""
        position = self.top(key)
        if position < 0 or any(self.top(m) > position for m in markers):
            return -1
        return position

    # --- active formatting elements ---

    def open_formatting(self, name: str, signature: str) -> None:
        segment = self.segments[-1]
        alike = [e for e in segment.alike.get(signature, []) if not e.removed]
        if len(alike) >= 3:  # Noah's Ark: the earliest of four alike is forgotten
            self.forget(alike[0])
        entry = _Formatting(name, signature)
        segment.add(entry)
        self.reopen(entry)

    def reopen(self, entry: _Formatting) -> None:
        element = self.push(entry.name)
        element.formatting, entry.element = entry, element

    def forget(self, entry: _Formatting) -> None:
        entry.removed = True
        if entry.element is not None:
            entry.element.formatting = None
            entry.element = None

    def reconstruct(self) -> None:
        """Reopen the formatting elements a closed block closed ("<b><p>x</p>y": y is bold)."""
        if not self.closed_formatting:
            return
        self.closed_formatting = False
        entries = self.segments[-1].entries
        while entries and entries[-1].removed:
            entries.pop()
        start = len(entries)
        while start and (entries[start - 1].removed or entries[start - 1].element is None):
            start -= 1
        if start == len(entries):
            return
        entries[start:] = [e for e in entries[start:] if not e.removed]
        for entry in entries[start:]:
            self.reopen(entry)
            self.work += self.depth
            if self.over:
                return

    def last_formatting(self, name: str) -> _Formatting | None:
        entries = self.segments[-1].by_name.get(name)
        while entries and entries[-1].removed:
            entries.pop()
        return entries[-1] if entries else None

    def marker(self) -> None:
        self.segments.append(_Segment())


def html_nesting(html: str, *, max_depth: int, max_work: int) -> Nesting:
    """The depth and work of parsing ``html``; the scan stops once past either limit."""
    model = _Model(max_depth, max_work)
    pos = 0
    search = _TOKEN.search
    while pos >= 0 and model.most <= max_depth and model.work <= max_work:
        token = search(html, pos)
        if token is None:
            break
        if token.start() > pos:
            if model.in_head and html[pos : token.start()].strip(_WS):
                model.in_head = False
            if not model.foreign():
                model.reconstruct()  # text reopens closed formatting elements
        end_slash, name, attributes, self_closing, comment, _, unended = token.groups()
        if name is None:
            if unended is not None:  # the file ends inside a tag: the tag is dropped
                break
            pos = _skip_markup(html, token.end(), comment is not None)
            continue
        model.work += model.depth
        pos = token.end()
        if end_slash:
            _end_tag(model, name.lower())
        else:
            pos = _start_tag(model, name.lower(), attributes, bool(self_closing), html, pos)
    return Nesting(model.most, model.work, complete=not model.over)


def _skip_markup(html: str, pos: int, comment: bool) -> int:
    """After a comment, a doctype or other "<!"/"<?"/"</" markup: where text resumes, or -1."""
    if comment:
        rest = _COMMENT_REST.match(html, pos)
        return rest.end() if rest is not None else -1
    if html.startswith("/>", pos - 1):  # "</>" is nothing
        return pos + 1
    end = html.find(">", pos)
    return end + 1 if end >= 0 else -1


def _start_tag(
    model: _Model, name: str, attributes: str, self_closing: bool, html: str, pos: int
) -> int:
    """Apply a start tag; return where scanning resumes (-1: the rest of the file is text)."""
    if model.in_head:
        if name == "noscript":
            return pos
        model.in_head = name in _HEAD
    if model.foreign():
        current = model.current()
        assert current is not None
        if name == "svg" and current.name == "annotation-xml":
            pass  # HTML rules: a new SVG root
        elif name in _BREAKOUT or (name == "font" and _FONT_BREAKS_OUT.search(attributes)):
            _leave_foreign(model)  # close the SVG/MathML content, then as in HTML
        else:
            if not self_closing:
                _push_foreign(model, name, current.ns, attributes)
            return pos
    if name == "frameset":
        model.frameset = True
    if model.frameset and (name in _RAW_TEXT or name == "plaintext") and name != "noframes":
        return pos  # (a frameset page drops these tags: what follows them is still markup)
    if name in _RAW_TEXT:
        if name == "xmp":
            _close_p(model)
            model.reconstruct()
        return _raw_text_end(html, name, pos)
    if name in _IGNORED or (name in ("svg", "math") and self_closing):
        return pos
    if name in _TABLE_ONLY and model.top("table") < 0 and model.top("template") < 0:
        return pos  # a cell, row or caption outside any table is dropped
    if name == "form" and model.form is not None and model.top("template") < 0:
        return pos  # one form at a time: a form inside a form is dropped
    if name == "select" and model.in_scope("select", "@scope") >= 0:
        model.pop_to(model.top("select"))  # a <select> inside another closes it, and is dropped
        return pos
    if name in ("li", "dd", "dt"):  # (an open list item first, then a <p>)
        _implied_ends(model, name)
        _close_p(model)
    elif name in _CLOSES_P:
        _close_p(model)
        _implied_ends(model, name)
    else:
        _implied_ends(model, name)
        if name not in _NO_REOPEN:
            model.reconstruct()
    if name in ("svg", "math"):
        if model.top("frameset") < 0:  # (a frameset page drops them)
            _push_foreign(model, name, name, attributes)
    elif name in _FORMATTING:
        model.open_formatting(name, name + " " + attributes.strip())
    elif name not in _VOID:
        if name in ("td", "th", "tr"):
            _implied_table_parts(model, name)
        element = model.push(name)
        if name in _MARKERS:
            model.marker()
        if name == "form" and model.top("template") < 0:
            model.form = element
    return -1 if name == "plaintext" else pos


def _leave_foreign(model: _Model) -> None:
    while model.foreign():
        current = model.current()
        assert current is not None
        model.pop_to(current.position)


def _raw_text_end(html: str, name: str, pos: int) -> int:
    end = re.compile(rf"</{re.escape(name)}[\t\n\f\r />]", re.I).search(html, pos)
    return end.start() if end is not None else -1


def _push_foreign(model: _Model, name: str, ns: str, attributes: str) -> None:
    integration = name in _FOREIGN_MARKERS[ns] and (
        name != "annotation-xml" or _HTML_ANNOTATION.search(attributes) is not None
    )
    model.push(name, ns, integration)


def _implied_table_parts(model: _Model, name: str) -> None:
    """A row outside a table section opens a <tbody> first; a cell outside a row, a <tr>."""
    if name != "tr" and model.in_scope("tr", "@table") >= 0:
        return
    if all(model.in_scope(section, "@table") < 0 for section in _SECTIONS):
        model.push("tbody")
    if name != "tr":
        model.push("tr")


def _close_p(model: _Model) -> None:
    position = model.in_scope("p", "@scope", "@button")
    if position >= 0:
        model.pop_to(position)


def _implied_ends(model: _Model, name: str) -> None:
    """What opening ``name`` closes first, beyond an open ``<p>``."""
    current = model.current()
    if name in _HEADINGS:
        if current is not None and current.ns == "html" and current.name in _HEADINGS:
            model.pop_to(current.position)
    elif name == "li":
        if model.top("li") > model.top("@stop-li"):
            model.pop_to(model.top("li"))
    elif name in ("dd", "dt"):
        position = max(model.top("dd"), model.top("dt"))
        if position > model.top("@stop-dd"):
            model.pop_to(position)
    elif name in _TABLE_PARTS:
        closes = {"td": ("td", "th"), "th": ("td", "th"), "tr": ("tr", "td", "th")}
        for part in closes.get(name, _SECTIONS):
            position = model.in_scope(part, "@table")
            if position >= 0:
                model.pop_to(position)
                break
    elif name in ("rb", "rtc", "rp", "rt"):  # ruby annotations close the open ones
        if model.in_scope("ruby", "@scope") >= 0:
            keep = "rtc" if name in ("rp", "rt") else ""
            _generate_implied_ends(model, keep)
    elif name in ("caption", "colgroup", "col"):  # these go straight into the table
        position = model.in_scope("table", "@table")
        if position >= 0:
            model.pop_to(position + 1)
    elif name in ("option", "optgroup"):
        if current is not None and current.ns == "html" and current.name == "option":
            model.pop_to(current.position)
    elif name == "a":  # an open <a> ends, and leaves the stack even when out of scope
        entry = model.last_formatting(name)
        if entry is not None:
            _end_formatting(model, name)
            element = entry.element
            model.forget(entry)
            if element is not None and element.alive and model.is_open(element):
                model.take_out(element)
    elif name == "nobr":
        if model.in_scope(name, "@scope") >= 0:
            _end_formatting(model, name)
    elif name in ("button", "input"):  # an <input> closes an open <select>
        position = model.in_scope("button" if name == "button" else "select", "@scope")
        if position >= 0:
            model.pop_to(position)


def _end_tag(model: _Model, name: str) -> None:
    if model.in_head:
        if name == "noscript":
            return
        model.in_head = name not in ("head", "body", "html", "br")
    current = model.current()
    if current is not None and current.ns != "html":
        if name in ("p", "br"):  # these leave SVG/MathML content, then end as in HTML
            _leave_foreign(model)
        else:
            position = model.top("~" + name)
            if position > model.top("@html"):
                model.pop_to(position)
                return
    if name in _FORMATTING:
        _end_formatting(model, name)
    elif name in ("p", "li", "dd", "dt") or name in _HEADINGS:
        markers = {"p": ("@scope", "@button"), "li": ("@scope", "@list")}.get(name, ("@scope",))
        position = model.in_scope("@heading" if name in _HEADINGS else name, *markers)
        if position >= 0:
            model.pop_to(position)
    elif name in _TABLE_PARTS or name in ("table", "caption", "template"):
        position = model.in_scope(name, "@table")
        if position >= 0:
            model.pop_to(position)
    elif name == "form":
        _end_form(model)
    elif name == "br":  # read as <br>, which reopens closed formatting elements
        model.reconstruct()
    elif name in ("body", "html", "frameset"):
        return  # (a </frameset> may close a frameset; counted as open, it errs high)
    elif name in _BLOCK_ENDS:
        position = model.in_scope(name, "@scope")
        if position >= 0:
            model.pop_to(position)
            if name in _MARKERS:  # (an object closed any other way leaves its marker)
                model.clear_to_marker()
    else:
        _other_end_tag(model, name)


def _end_form(model: _Model) -> None:
    """``</form>`` ends the form the pointer holds (even from inside other elements)."""
    if model.top("template") >= 0:
        position = model.in_scope("form", "@scope")
        if position >= 0:
            model.pop_to(position)
        return
    form, model.form = model.form, None
    if form is not None and model.is_open(form) and model.top("@scope") <= form.position:
        _generate_implied_ends(model)
        model.take_out(form)


def _generate_implied_ends(model: _Model, keep: str = "") -> None:
    while (current := model.current()) is not None and current.ns == "html":
        if current.name not in _IMPLIED_ENDS or current.name == keep:
            return
        model.pop_to(current.position)


def _other_end_tag(model: _Model, name: str) -> None:
    """Close the topmost ``name`` unless a "special" element is open above it."""
    position = model.top(name)
    if position >= 0 and position >= model.top("@special"):
        model.pop_to(position)


def _end_formatting(model: _Model, name: str) -> None:
    """The adoption agency, as far as the depth goes: with a block opened inside the element,
    the element leaves the stack and reopens (inside the block) at the next text."""
    entry = model.last_formatting(name)
    if entry is None:
        _other_end_tag(model, name)
        return
    element = entry.element
    if element is None:
        model.forget(entry)
        return
    if model.top("@scope") > element.position:
        return
    model.forget(entry)
    above = model.top("@special")
    if above < element.position:
        model.pop_to(element.position)
        return
    # The element leaves the stack; its copy moves up past one block per round and is
    # closed, with what is open above the topmost block, when no block is left above it.
    model.take_out(element)
    specials = model.at["@special"]
    if len(specials) - bisect.bisect_right(specials, element.position) < _ADOPTION_ROUNDS:
        model.pop_to(above + 1)
    else:  # out of rounds: the copy stays open in the middle; count it as reopened later
        model.segments[-1].add(_Formatting(entry.name, entry.signature))
        model.closed_formatting = True
