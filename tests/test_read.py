"""ingest.read / decode / extract: files and directories to sources, documents and reports."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest
from support import CORPUS

from medcite.ingest import ChunkSettings, chunk_documents, detect_language, load
from medcite.ingest.decode import UndecodableError, decode_bytes
from medcite.ingest.extract import html_to_text
from medcite.ingest.types import LoadResult

SEEDS = sorted(p.name for p in CORPUS.glob("*.txt"))

ZH_TEXT = "孕期腰痛多与体重增加和激素变化有关。建议孕妇避免久站,每天适当休息。"


def report_for(result: LoadResult, path: str) -> tuple[str, str | None, str | None, int]:
    (report,) = [r for r in result.reports if r.path == path]
    return report.status, report.reason, report.encoding, report.documents


def assert_spans(result: LoadResult) -> None:
    sources = {s.source: s.text for s in result.sources}
    for doc in result.documents:
        text = sources[doc.source]
        for seg in doc.segments:
            assert 0 <= seg.start < seg.end <= len(text)
            assert text[seg.start : seg.end] == text[seg.start : seg.end].strip()
    for chunk in chunk_documents(result, ChunkSettings(max_tokens=50)):
        assert sources[chunk.source][chunk.start : chunk.end] == chunk.text


# --- the seed corpus -------------------------------------------------------------------------


def test_seed_corpus_every_file_reported_and_read_as_utf8() -> None:
    result = load([CORPUS])
    assert [r.path for r in result.reports] == SEEDS
    assert {(r.status, r.encoding, r.reason) for r in result.reports} == {
        ("ingested", "utf-8", None)
    }
    assert {r.path: r.documents for r in result.reports} == {
        "000_1e25916c291d4d20.txt": 16,
        "001_f6e1ae9f4f4596cb.txt": 1,
        "002_e80cb361c43bb8f7.txt": 1,
        "003_322f64557f9a19d7.txt": 1,
        "004_3a0b4b9e837dc788.txt": 1,
    }
    assert [s.source for s in result.sources] == SEEDS
    assert {s.kind for s in result.sources} == {"text"}
    assert_spans(result)


def test_seed_doc_ids_sources_and_languages() -> None:
    result = load([CORPUS])
    ids = [d.doc_id for d in result.documents]
    assert len(ids) == len(set(ids)) == 20
    main = "000_1e25916c291d4d20.txt"
    assert ids[:3] == [main, f"{main}#1", f"{main}#2"]
    assert ids[15] == f"{main}#15"
    assert ids[16:] == SEEDS[1:]
    assert {d.source for d in result.documents if d.doc_id.startswith(main)} == {main}
    assert [d.language for d in result.documents[15:]] == ["zh", "en", "en", "en", "en"]


def test_load_is_deterministic_and_a_file_argument_is_named_after_itself() -> None:
    first, second = load([CORPUS]), load([CORPUS])
    assert first == second
    single = load([CORPUS / SEEDS[4]])
    assert [s.source for s in single.sources] == [SEEDS[4]]
    assert [d.doc_id for d in single.documents] == [SEEDS[4]]
    rooted = load([CORPUS / SEEDS[4]], root=CORPUS.parent)
    assert [d.doc_id for d in rooted.documents] == [f"corpus/{SEEDS[4]}"]


# --- a made-up corpus with every kind of file ------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    sub = root / "sub"
    sub.mkdir(parents=True)
    page = f"孕期腰痛怎么缓解\n\n2024年3月5日\n\n{ZH_TEXT}\n"
    (root / "gb.txt").write_bytes(page.encode("gb18030"))
    (root / "bom.txt").write_bytes(codecs.BOM_UTF8 + page.encode("utf-8"))
    (root / "notes.md").write_text(
        "---\ntitle: Sciatica notes\ndate: 2024-03-05\n---\n# Sciatica in pregnancy\n\n"
        "Sciatica is pain that runs from the lower back down one leg. It is common late in "
        "pregnancy.\n\n## Red flags\n\n## Stretches\n\n"
        "Gentle stretches ease the pressure on the nerve.\n",
        encoding="utf-8",
    )
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.md").write_text("  \n\n", encoding="utf-8")
    (root / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (root / "latin.txt").write_bytes("Café au lait, naïve résumé, déjà vu.".encode("latin-1"))
    (root / "paper.odt").write_bytes(b"PK\x03\x04")
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    records = [
        {"id": "d1", "title": "Back pain", "text": "  Back pain is common in pregnancy.  "},
        {"id": "d2", "title": "", "text": ZH_TEXT},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines += [
        '{"id": "d3", "text": "broken',
        json.dumps({"id": "d1", "title": "again", "text": "a second d1"}),
        "",
        '["not", "an", "object"]',
        json.dumps({"id": "d4", "text": "   "}),
    ]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (sub / "other.jsonl").write_text(
        json.dumps({"id": "d2", "title": "t", "text": "Another record with a taken id."}) + "\n",
        encoding="utf-8",
    )
    (sub / "page.htm").write_text(
        "<html><body><p>Rest helps most back pain in pregnancy.</p></body></html>",
        encoding="utf-8",
    )
    os.symlink(root, sub / "loop")  # sub/loop -> the corpus root: a symbolic link loop
    os.symlink(root / "gone.txt", root / "dangling.txt")
    os.mkfifo(root / "pipe.txt")  # reading it would block forever
    return root


def test_every_file_gets_a_report(mixed: Path) -> None:
    result = load([mixed])
    paths = [r.path for r in result.reports]
    assert paths == sorted(paths, key=lambda p: p.split("/"))  # sorted, depth first
    assert sorted(paths) == sorted(
        [
            ".DS_Store",
            "blank.md",
            "bom.txt",
            "corpus.jsonl",
            "dangling.txt",
            "empty.txt",
            "gb.txt",
            "image.txt",
            "latin.txt",
            "notes.md",
            "paper.odt",
            "pipe.txt",
            "sub/loop",
            "sub/other.jsonl",
            "sub/page.htm",
        ]
    )
    assert report_for(result, "gb.txt") == ("ingested", None, "gb18030", 1)
    assert report_for(result, "bom.txt") == ("ingested", None, "utf-8-sig", 1)
    assert report_for(result, "notes.md") == ("ingested", None, "utf-8", 1)
    assert report_for(result, "sub/page.htm") == ("ingested", None, "utf-8", 1)
    assert report_for(result, "empty.txt") == ("skipped", "empty", None, 0)
    assert report_for(result, "blank.md")[:2] == ("skipped", "empty")
    assert report_for(result, "paper.odt") == ("skipped", "unsupported file type '.odt'", None, 0)
    assert report_for(result, ".DS_Store")[:2] == ("skipped", "hidden file")
    assert report_for(result, "dangling.txt")[:2] == ("failed", "broken symbolic link")
    assert report_for(result, "pipe.txt")[:2] == ("skipped", "not a regular file")
    status, reason, _, _ = report_for(result, "sub/loop")
    assert status == "skipped" and reason is not None and "loop" in reason
    status, reason, _, _ = report_for(result, "image.txt")
    assert status == "failed" and reason is not None and "binary" in reason
    status, reason, _, _ = report_for(result, "latin.txt")
    assert status == "failed" and reason is not None and "not UTF-8 or GB18030" in reason
    assert_spans(result)


def test_bom_is_stripped_and_offsets_index_the_stored_text(mixed: Path) -> None:
    result = load([mixed])
    sources = {s.source: s for s in result.sources}
    assert sources["bom.txt"].text == sources["gb.txt"].text
    assert not sources["bom.txt"].text.startswith("\ufeff")
    (doc,) = [d for d in result.documents if d.source == "bom.txt"]
    assert doc.title == "孕期腰痛怎么缓解" and doc.date == "2024-03-05" and doc.language == "zh"
    (seg,) = doc.segments
    assert sources["bom.txt"].text[seg.start : seg.end] == ZH_TEXT


def test_jsonl_bad_lines_and_duplicate_ids_are_reported_and_the_rest_read(mixed: Path) -> None:
    result = load([mixed])
    status, reason, encoding, documents = report_for(result, "corpus.jsonl")
    assert (status, encoding, documents) == ("ingested", "utf-8", 2)
    assert reason is not None
    assert reason.startswith("4 bad lines skipped: line 3: invalid JSON")
    assert "line 4: duplicate id 'd1' (kept line 1)" in reason
    assert "line 6: a JSON list, not an object" in reason
    assert "line 7: empty text" in reason
    records = {d.source: d for d in result.documents if d.kind == "record"}
    assert set(records) == {"corpus.jsonl#d1", "corpus.jsonl#d2", "sub/other.jsonl#d2"}
    # d2 comes from two files, so both are prefixed; d1 is unique and keeps its own id
    assert [records[s].doc_id for s in sorted(records)] == [
        "d1",
        "corpus.jsonl#d2",
        "sub/other.jsonl#d2",
    ]
    d1 = records["corpus.jsonl#d1"]
    source = next(s for s in result.sources if s.source == "corpus.jsonl#d1")
    assert (source.kind, source.encoding) == ("jsonl", "json")
    assert d1.title == "Back pain" and d1.language == "en"
    assert source.text[d1.segments[0].start : d1.segments[0].end] == (
        "Back pain is common in pregnancy."
    )
    assert records["corpus.jsonl#d2"].language == "zh"


def test_jsonl_without_any_good_line_fails(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("{oops\n[1]\n", encoding="utf-8")
    result = load([tmp_path])
    status, reason, _, documents = report_for(result, "bad.jsonl")
    assert (status, documents) == ("failed", 0)
    assert reason is not None and reason.startswith("no valid records: line 1: invalid JSON")


def test_markdown_front_matter_headings_and_title(mixed: Path) -> None:
    result = load([mixed / "notes.md"])
    (doc,) = result.documents
    (source,) = result.sources
    assert source.kind == "markdown"
    assert doc.title == "Sciatica in pregnancy"
    assert doc.date == "2024-03-05"
    assert [(s.section, source.text[s.start : s.end]) for s in doc.segments] == [
        (
            None,
            "Sciatica is pain that runs from the lower back down one leg. It is common "
            "late in pregnancy.",
        ),
        # a heading without a body joins the text it heads, which starts at it
        (
            "Stretches",
            "Red flags\n\n## Stretches\n\nGentle stretches ease the pressure on the nerve.",
        ),
    ]


def test_missing_path_and_same_file_twice(tmp_path: Path) -> None:
    page = tmp_path / "a.txt"
    page.write_text("Title\n\nSome article text that is long enough to keep.\n", encoding="utf-8")
    result = load([page, page, tmp_path / "missing.txt"])
    assert [(r.path, r.status, r.reason) for r in result.reports] == [
        ("a.txt", "ingested", None),
        ("a.txt", "skipped", "same file as a.txt"),
        ("missing.txt", "failed", "not found"),
    ]
    assert len(result.documents) == 1


def test_an_enormous_file_is_refused_with_its_size_and_the_rest_read(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("Title\n\nA short article about back pain.\n", "utf-8")
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as fh:  # sparse: 40 MB on paper, nothing on disk
        fh.truncate(40 * 1024 * 1024)
    rows = tmp_path / "c.jsonl"
    rows.write_text('{"id": "d1", "title": "t", "text": "back pain"}\n' * 3, "utf-8")
    result = load([tmp_path], max_jsonl_bytes=64)
    by_path = {r.path: (r.status, r.reason) for r in result.reports}
    assert by_path["ok.txt"] == ("ingested", None)
    assert by_path["huge.txt"][0] == "failed"
    assert by_path["huge.txt"][1] == "too large: 41,943,040 bytes (the limit is 33,554,432 bytes)"
    assert by_path["c.jsonl"][0] == "failed" and "too large" in str(by_path["c.jsonl"][1])
    assert [d.source for d in result.documents] == ["ok.txt"]


# --- HTML ------------------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><title>Back pain | HealthSite</title>
<meta name="author" content="Ann Lee"><meta property="article:published_time"
content="2024-03-05T08:00:00Z"><style>.x { color: red }</style><script>track("view")</script>
</head><body>
<header><a href="/">HealthSite</a><nav><a>Home</a> | <a>Topics</a></nav></header>
<main><article>
<h1>Back pain in pregnancy</h1>
<p>Back pain affects most pregnant women. It usually starts in the
   second half of pregnancy.</p>
<h2>When to see a doctor</h2>
<p>See a doctor if the pain is <b>severe</b>, or if you have a fever or bleeding.<br>
Call at once if you have contractions.</p>
<script>alert("x")</script>
</article></main>
<aside>Buy our pregnancy pillow</aside>
<footer>&copy; 2024 HealthSite. Contact us.</footer>
</body></html>"""


def test_html_text_is_extracted_without_page_chrome() -> None:
    extracted = html_to_text(HTML)
    assert extracted.text.split("\n") == [
        "Back pain in pregnancy",
        "Back pain affects most pregnant women. It usually starts in the second half of pregnancy.",
        "When to see a doctor",
        "See a doctor if the pain is severe, or if you have a fever or bleeding.",
        "Call at once if you have contractions.",
    ]
    assert extracted.headings == {0, 2}
    assert extracted.meta == {
        "title": "Back pain | HealthSite",
        "author": "Ann Lee",
        "date": "2024-03-05T08:00:00Z",
    }


def test_html_page_loads_with_offsets_into_the_extracted_text(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(HTML, encoding="utf-8")
    result = load([tmp_path])
    (source,) = result.sources
    (doc,) = result.documents
    assert source.kind == "html" and source.text == html_to_text(HTML).text
    assert (doc.title, doc.author, doc.date) == ("Back pain in pregnancy", "Ann Lee", "2024-03-05")
    assert [s.section for s in doc.segments] == [None, "When to see a doctor"]
    chunks = chunk_documents(result, ChunkSettings())
    assert all(source.text[c.start : c.end] == c.text for c in chunks)
    joined = " ".join(c.text for c in chunks)
    for chrome in ("track", "Home", "HealthSite", "pillow", "alert", "©"):
        assert chrome not in joined


# --- encodings -------------------------------------------------------------------------------


def test_decode_order_and_refusals() -> None:
    page = "自然流产后腰疼是因为什么原因引起的。子宫复旧不良,盆腔充血。"
    assert decode_bytes(page.encode("utf-8")) == (page, "utf-8")
    assert decode_bytes(codecs.BOM_UTF8 + page.encode("utf-8")) == (page, "utf-8-sig")
    assert decode_bytes(page.encode("gb18030")) == (page, "gb18030")
    assert decode_bytes("\ufeff".encode("utf-16-le") + page.encode("utf-16-le")) == (
        page,
        "utf-16",
    )
    big5 = "懷孕三個月流產疼不疼，這是很多人關心的問題。流產後要注意休息，避免勞累。" * 3
    assert decode_bytes(big5.encode("big5")) == (big5, "big5")
    with pytest.raises(UndecodableError, match="NUL"):
        decode_bytes(b"abc\x00def")
    with pytest.raises(UndecodableError, match="ambiguous"):
        decode_bytes("Café au lait, naïve résumé.".encode("latin-1"))
    with pytest.raises(UndecodableError):
        decode_bytes("妊娠中の腰痛について説明します。".encode("shift_jis"))


def test_detect_language() -> None:
    assert detect_language("流产后腰疼是什么原因引起的") == "zh"
    assert detect_language("lower back pain after miscarriage") == "en"
    assert detect_language("B超检查 normal") == "zh"  # 3 Han of 10 letters
    assert detect_language("What does 腰疼 mean in English medicine") == "en"
    assert detect_language("") == "en"
    assert detect_language("12345 !!") == "en"
