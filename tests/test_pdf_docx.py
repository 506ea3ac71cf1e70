"""ingest.documents through ingest.read: PDF and Word files to sources with pages, documents,
reports; page citations in the API. Every file is built in the test (reportlab, python-docx)."""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from support import HEADER, HEADINGS, PAGES_EN, build_pdf, serve

from medcite.ingest import ChunkSettings, chunk_documents, load
from medcite.ingest.documents import DocumentError, pdf_to_text
from medcite.ingest.types import Chunk, LoadResult, SourceText, pages_of


def build_docx(paragraphs: list[tuple[str, str]], **props: object) -> bytes:
    """A Word file of ``(style, text)`` paragraphs ("table" rows are "a|b" cells)."""
    import docx

    document = docx.Document()
    for style, text in paragraphs:
        if style == "table":
            cells = text.split("|")
            table = document.add_table(rows=1, cols=len(cells))
            for cell, value in zip(table.rows[0].cells, cells, strict=True):
                cell.text = value
        else:
            document.add_paragraph(text, style=style)
    for key, value in props.items():
        setattr(document.core_properties, key, value)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def chunks_of(result: LoadResult) -> list[Chunk]:
    return chunk_documents(result, ChunkSettings(max_tokens=20))


def assert_spans(result: LoadResult) -> list[Chunk]:
    """Every segment and chunk is an exact, stripped span of its source."""
    sources = {s.source: s.text for s in result.sources}
    for doc in result.documents:
        for seg in doc.segments:
            text = sources[doc.source]
            assert 0 <= seg.start < seg.end <= len(text)
            assert text[seg.start : seg.end] == text[seg.start : seg.end].strip()
    chunks = chunks_of(result)
    assert chunks
    for chunk in chunks:
        assert sources[chunk.source][chunk.start : chunk.end] == chunk.text
    return chunks


def page_texts(source: SourceText) -> list[str]:
    assert source.pages is not None
    ends = [*source.pages[1:], len(source.text)]
    return [source.text[a:b] for a, b in zip(source.pages, ends, strict=True)]


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_pages_spans_running_headers_headings_and_metadata(tmp_path: Path) -> None:
    data = build_pdf(PAGES_EN, headings=HEADINGS, title="Blood pressure", author="Dr. Ann Lee")
    (tmp_path / "bp.pdf").write_bytes(data)
    result = load([tmp_path])
    assert [(r.path, r.status, r.encoding) for r in result.reports] == [
        ("bp.pdf", "ingested", "pdf")
    ]
    (source,) = result.sources
    (doc,) = result.documents
    assert source.kind == "pdf" and source.pages is not None and len(source.pages) == 3
    assert source.pages[0] == 0
    # Page boundaries kept: each page's text holds its own lines, header and footer.
    for n, text in enumerate(page_texts(source), start=1):
        assert HEADER in text and f"Page {n} of 3" in text
        # A line wrapped mid-sentence is joined to the next one; a sentence end ends a line.
        assert " ".join(PAGES_EN[n - 1][:2]) + "\n" in text
    # Metadata fills what the page has none of (its first line is a sentence, not a title).
    assert (doc.title, doc.author, doc.date) == ("Blood pressure", "Dr. Ann Lee", "2000-01-01")
    chunks = assert_spans(result)
    pages = page_texts(source)
    seen_sections = set()
    for chunk in chunks:
        assert HEADER not in chunk.text and "Page " not in chunk.text
        first, last = pages_of(source, chunk.start, chunk.end)
        assert first is not None and last is not None and first <= last
        assert chunk.text.startswith(pages[first - 1][chunk.start - source.pages[first - 1] :][:10])
        if first == last:
            assert chunk.text in pages[first - 1]
        if first >= 2:
            assert chunk.section == HEADINGS[first - 1]
        seen_sections.add(chunk.section)
        assert all(h not in chunk.text for h in HEADINGS if h)  # headings are not content
    assert {1, 2, 3} <= {pages_of(source, c.start, c.end)[0] for c in chunks}
    assert {"Salt and blood pressure", "Exercise"} <= seen_sections
    body = " ".join(" ".join(c.text.split()) for c in chunks)
    assert "Eating less salt lowers blood pressure" in body and "Swimming and cycling" in body


def test_chinese_pdf_with_a_cid_font(tmp_path: Path) -> None:
    zh = [
        [
            "高血压通常没有症状，成年人应当每年至少测量一次血压。",
            "两次不同日期的读数高于140/90即为高血压。",
        ],
        ["减少食盐可以在几周内降低血压。成年人每天食盐应少于五克，", "其中大部分来自酱油和咸菜。"],
    ]
    data = build_pdf(zh, header="心血管健康月刊", font="STSong-Light", title="高血压")
    (tmp_path / "zh.pdf").write_bytes(data)
    result = load([tmp_path])
    (source,) = result.sources
    (doc,) = result.documents
    assert doc.language == "zh"
    # A line wrapped mid-sentence is joined to the next, with nothing between Han characters.
    assert "成年人每天食盐应少于五克，其中大部分来自酱油和咸菜。" in source.text
    assert all(line in source.text for line in zh[0])
    chunks = assert_spans(result)
    assert all("心血管健康月刊" not in c.text and "Page" not in c.text for c in chunks)
    on_page = {pages_of(source, c.start, c.end)[0] for c in chunks if "食盐" in c.text}
    assert on_page == {2}


def test_wrapped_lines_become_one_line_per_paragraph() -> None:
    lines = [
        "Salt raises blood pressure in most adults, and the effect grows with age and",
        "with weight. Cutting back helps within weeks, whatever the starting pres-",
        "sure was.",
        "Common sources of hidden salt",
        "- bread and rolls, which are the largest single source of salt for most adults",
        "- cheese and cured meats",
        "A short closing line",
        "Another paragraph starts here.",
    ]
    text = pdf_to_text(build_pdf([lines], header=None)).text
    assert text.split("\n") == [
        "Salt raises blood pressure in most adults, and the effect grows with age and with "
        "weight. Cutting back helps within weeks, whatever the starting pressure was.",
        "Common sources of hidden salt",
        "- bread and rolls, which are the largest single source of salt for most adults",
        "- cheese and cured meats",
        "A short closing line",
        "Another paragraph starts here.",
        "Page 1 of 1",
    ]


def test_lone_page_numbers_and_page_limit() -> None:
    text = pdf_to_text(build_pdf([["One line of text here."], ["Another line."]], header=None))
    lines = text.text.split("\n")
    assert "Page 1 of 2" in lines
    assert len(text.drop) == 2  # the two footers, nothing else
    with pytest.raises(DocumentError, match="too many pages: 2"):
        pdf_to_text(build_pdf([["a"], ["b"]]), max_pages=1)


def test_pages_of() -> None:
    source = SourceText("a.pdf", "x" * 30, "pdf", "pdf", (0, 10, 20))
    assert pages_of(source, 0, 5) == (1, 1)
    assert pages_of(source, 5, 10) == (1, 1)  # end is exclusive
    assert pages_of(source, 5, 11) == (1, 2)
    assert pages_of(source, 10, 30) == (2, 3)
    assert pages_of(SourceText("a.txt", "x", "utf-8", "text"), 0, 1) == (None, None)


def test_sources_without_pages_still_load() -> None:
    from medcite.index.store import _source, _source_row

    old = {"source": "a.txt", "text": "t", "encoding": "utf-8", "kind": "text"}
    assert _source(dict(old)) == SourceText("a.txt", "t", "utf-8", "text", None)
    assert _source_row(_source(dict(old))) == old
    pdf = SourceText("a.pdf", "t\n\nu", "pdf", "pdf", (0, 3))
    assert _source(_source_row(pdf) | {"pages": [0, 3]}) == pdf


# --- Word ------------------------------------------------------------------------------------


def test_docx_headings_tables_and_metadata(tmp_path: Path) -> None:
    created = datetime.datetime(2023, 5, 6, 10, 0)
    (tmp_path / "a.docx").write_bytes(
        build_docx(
            [
                ("Title", "Diabetes basics"),
                ("Normal", "Diabetes is a disease of high blood sugar. It needs care every day."),
                ("Heading 1", "Symptoms"),
                ("Normal", "Thirst and frequent urination are common signs of diabetes."),
                ("Heading 2", "Tests"),
                ("Normal", "A fasting glucose test confirms the diagnosis in most adults."),
                ("table", "Test|Normal value"),
                ("table", "Fasting glucose|below 5.6 mmol/L"),
            ],
            author="Bob Smith",
            created=created,
        )
    )
    (tmp_path / "b.docx").write_bytes(
        build_docx(
            [("Normal", "Asthma narrows the airways. An inhaler opens them again quickly.")],
            title="Asthma care",
            author="Ann",
        )
    )
    result = load([tmp_path])
    assert [(r.path, r.status, r.encoding) for r in result.reports] == [
        ("a.docx", "ingested", "docx"),
        ("b.docx", "ingested", "docx"),
    ]
    a, b = result.documents
    assert all(s.kind == "docx" and s.pages is None for s in result.sources)
    assert (a.title, a.author, a.date) == ("Diabetes basics", "Bob Smith", "2023-05-06")
    assert (b.title, b.author) == ("Asthma care", "Ann")
    chunks = assert_spans(result)
    sections = {c.text.split(".")[0]: c.section for c in chunks if c.doc_id == "a.docx"}
    assert sections["Thirst and frequent urination are common signs of diabetes"] == "Symptoms"
    assert sections["A fasting glucose test confirms the diagnosis in most adults"] == "Tests"
    assert any("Fasting glucose | below 5.6 mmol/L" in c.text for c in chunks)
    assert not any(c.text.startswith(("Symptoms", "Tests")) for c in chunks)


# --- failures ----------------------------------------------------------------------------------


def test_bad_files_fail_one_by_one(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    good = build_pdf(PAGES_EN, headings=HEADINGS)
    (tmp_path / "good.pdf").write_bytes(good)
    scanned = io.BytesIO()
    c = canvas.Canvas(scanned)
    c.rect(72, 400, 300, 300, fill=1)  # an image-like page: drawing, no text
    c.showPage()
    c.save()
    (tmp_path / "scanned.pdf").write_bytes(scanned.getvalue())
    (tmp_path / "locked.pdf").write_bytes(build_pdf(PAGES_EN, encrypt="secret"))
    (tmp_path / "broken.pdf").write_bytes(good[: len(good) // 3])
    (tmp_path / "corrupt.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(tmp_path / "hollow.docx", "w") as hollow:  # a zip, no Word parts
        hollow.writestr("readme.txt", "nothing here")
    (tmp_path / "good.docx").write_bytes(
        build_docx([("Normal", "Sleep apnoea makes people tired during the day.")])
    )
    (tmp_path / "notes.txt").write_text("Fever in children is usually harmless.\n")
    result = load([tmp_path])
    reports = {r.path: (r.status, r.reason) for r in result.reports}
    assert reports["scanned.pdf"] == ("failed", "no text layer (scanned?)")
    assert reports["locked.pdf"] == ("failed", "encrypted PDF (needs a password)")
    assert reports["broken.pdf"][0] == "failed"
    assert reports["broken.pdf"][1].startswith("not a readable PDF")
    assert reports["corrupt.docx"] == ("failed", "not a readable Word document (BadZipFile)")
    assert reports["hollow.docx"] == ("failed", "not a readable Word document (KeyError)")
    for name in ("good.pdf", "good.docx", "notes.txt"):
        assert reports[name] == ("ingested", None)
    assert {d.source for d in result.documents} == {"good.pdf", "good.docx", "notes.txt"}
    assert_spans(result)


def test_size_limit_applies_to_pdf(tmp_path: Path) -> None:
    (tmp_path / "big.pdf").write_bytes(build_pdf(PAGES_EN))
    result = load([tmp_path], max_article_bytes=100)
    (report,) = result.reports
    assert report.status == "failed" and report.reason is not None
    assert report.reason.startswith("too large")


# --- through a real server ---------------------------------------------------------------------


def test_search_cites_the_page_on_a_real_server(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bp.pdf").write_bytes(build_pdf(PAGES_EN, headings=HEADINGS, title="BP"))
    (corpus / "other.txt").write_text(
        "Colds\n\nA cold is a viral infection of the nose and throat. Rest and fluids help.\n"
    )
    env = {
        "MEDCITE_MODEL": "hashing-64",
        "MEDCITE_ABSTAIN": "false",
        "MEDCITE_INDEX_DIR": str(tmp_path / "index"),
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_CORPUS_DIR": str(corpus),
        "MEDCITE_RATE_LIMIT_PER_MINUTE": "0",
    }
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    exe = Path(sys.executable).parent / "medcite"
    subprocess.run([str(exe), "ingest", str(corpus)], env=full_env, check=True, capture_output=True)
    question = "How many grams of salt a day should adults eat?"
    cli = subprocess.run(
        [str(exe), "search", question, "--k", "1"],
        env=full_env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "bp.pdf [" in cli.stdout and "p. 2" in cli.stdout
    with serve(env, tmp_path / "server.log") as base:
        r = httpx.post(f"{base}/search", json={"query": question, "k": 3}, timeout=60)
        assert r.status_code == 200, r.text
        top = r.json()["passages"][0]
        assert top["source"] == "bp.pdf"
        assert (top["page_start"], top["page_end"]) == (2, 2)
        assert "five grams" in top["text"]
        others = [p for p in r.json()["passages"] if p["source"] == "other.txt"]
        assert all(p["page_start"] is None and p["page_end"] is None for p in others)
        d = httpx.get(f"{base}/documents/{quote(top['doc_id'], safe='')}", timeout=30).json()
        assert d["text"][top["start"] : top["end"]] == top["text"]
        pages = d["pages"]
        assert len(pages) == 3 and pages[1] <= top["start"] and top["end"] <= pages[2]
        other = httpx.get(f"{base}/documents/other.txt", timeout=30).json()
        assert other["pages"] is None
