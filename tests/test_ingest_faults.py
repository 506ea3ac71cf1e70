"""Hostile corpora (issue 11): each bad file is one line of the report, the rest is
ingested, and ids stay unique whatever the file names and record ids are."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from support import shared_lexicon

from medcite.index.build import build_index
from medcite.index.embed import HashingEmbedder
from medcite.index.store import load_index
from medcite.ingest import load
from medcite.ingest.types import LoadResult
from medcite.service.app import create_app
from medcite.service.engine import Engine
from medcite.service.settings import Settings

EMB = HashingEmbedder(32)
GOOD = (
    "Back pain after miscarriage\n\nThe uterus contracts after a miscarriage and the back aches.\n"
)


def status(result: LoadResult) -> dict[str, tuple[str, str | None]]:
    return {r.path: (r.status, r.reason) for r in result.reports}


def build(result: LoadResult, out: Path) -> None:
    build_index(result, EMB, index_dir=out, settings=Settings(index_dir=out).build(), cache=None)


def assert_exact_citations(out: Path) -> None:
    index = load_index(out)
    assert len(index.documents) == len({d.doc_id for d in index.documents.values()})
    for chunk in index.chunks:
        doc = index.documents[chunk.doc_id]
        assert chunk.source == doc.source
        assert index.sources[chunk.source].text[chunk.start : chunk.end] == chunk.text


# -- 5. files that crashed the whole run --------------------------------------------------


def test_a_jsonl_line_nested_5000_deep_is_one_bad_line(tmp_path: Path) -> None:
    deep = '{"id": "d", "text": ' + "[" * 5000 + "]" * 5000 + "}"
    good = json.dumps({"id": "ok", "title": "Back pain", "text": "Rest helps back pain."})
    (tmp_path / "c.jsonl").write_text(deep + "\n" + good + "\n", encoding="utf-8")
    result = load([tmp_path])
    state, reason = status(result)["c.jsonl"]
    assert state == "ingested" and reason is not None and "line 1: JSON nested too deeply" in reason
    assert [d.doc_id for d in result.documents] == ["ok"]


def test_a_lone_surrogate_in_a_record_is_one_bad_line_and_the_index_builds(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    lines = [
        '{"id": "bad", "text": "back \\ud800 pain"}',
        '{"id": "bad-title", "title": "\\udfff", "text": "back pain"}',
        '{"id": "emoji", "text": "back pain \\ud83d\\ude00 is a pair, not a lone one"}',
    ]
    (corpus / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "a.txt").write_text(GOOD, encoding="utf-8")
    result = load([corpus])
    state, reason = status(result)["c.jsonl"]
    assert state == "ingested" and reason is not None
    assert "line 1: text holds a lone surrogate (U+D800)" in reason
    assert "line 2: title holds a lone surrogate (U+DFFF)" in reason
    assert {d.doc_id for d in result.documents} == {"a.txt", "emoji"}
    build(result, tmp_path / "idx")
    assert_exact_citations(tmp_path / "idx")


def test_a_symlink_to_itself_is_one_failed_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(GOOD, encoding="utf-8")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "loopdir").symlink_to(tmp_path / "loopdir")
    result = load([tmp_path])
    states = status(result)
    assert states["a.txt"][0] == "ingested"
    assert states["loop.txt"] == ("failed", "symbolic link loop")
    assert [d.doc_id for d in result.documents] == ["a.txt"]


def test_a_file_name_that_is_not_utf8_is_one_failed_file_and_the_index_builds(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text(GOOD, encoding="utf-8")
    with open(os.path.join(os.fsencode(corpus), b"bad\xff.txt"), "w", encoding="utf-8") as fh:
        fh.write(GOOD)
    result = load([corpus])
    assert status(result)["bad\\xff.txt"] == (
        "failed",
        "the file name is not valid UTF-8; rename the file",
    )
    build(result, tmp_path / "idx")
    report = json.loads(next((tmp_path / "idx").glob("v-*/report.json")).read_text("utf-8"))
    assert {r["path"] for r in report} == {"a.txt", "bad\\xff.txt"}


def test_medcite_ingest_reports_every_hostile_file_and_ingests_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text(GOOD, encoding="utf-8")
    deep = '{"id": "d", "text": ' + "[" * 5000 + "]" * 5000 + "}"
    (corpus / "deep.jsonl").write_text(deep + "\n", encoding="utf-8")
    (corpus / "s.jsonl").write_text('{"id": "s", "text": "\\ud800"}\n', encoding="utf-8")
    (corpus / "loop.txt").symlink_to(corpus / "loop.txt")
    with open(os.path.join(os.fsencode(corpus), b"x\xff.txt"), "w", encoding="utf-8") as fh:
        fh.write(GOOD)
    exe = Path(sys.executable).parent / "medcite"
    env = {
        **os.environ,
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [str(exe), "ingest", str(corpus), "--index-dir", str(tmp_path / "idx"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    files = {f["path"]: f["status"] for f in json.loads(run.stdout)["files"]}
    assert files == {
        "a.txt": "ingested",
        "deep.jsonl": "failed",
        "s.jsonl": "failed",
        "loop.txt": "failed",
        "x\\xff.txt": "failed",
    }


# -- 6. ids unique by construction --------------------------------------------------------


def test_a_record_id_that_looks_like_another_files_record_gets_no_shared_id(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    for name, rid, text in [
        ("records1.jsonl", "shared", "Text one about knees."),
        ("records2.jsonl", "shared", "Text two about elbows."),
        ("records3.jsonl", "records2.jsonl#shared", "Text three about shoulders."),
    ]:
        record = {"id": rid, "title": name, "text": text}
        (corpus / name).write_text(json.dumps(record) + "\n", encoding="utf-8")
    result = load([corpus])
    ids = [d.doc_id for d in result.documents]
    assert len(set(ids)) == 3
    assert "records2.jsonl#shared" in ids  # the id records3 really has is kept
    by_title = {d.title: d for d in result.documents}
    texts = {s.source: s.text for s in result.sources}
    assert texts[by_title["records3.jsonl"].source] == "Text three about shoulders."
    assert texts[by_title["records2.jsonl"].source] == "Text two about elbows."
    build(result, tmp_path / "idx")
    assert_exact_citations(tmp_path / "idx")


def test_a_page_named_like_a_record_source_keeps_both_texts(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(
        json.dumps({"id": "x.txt", "title": "Record", "text": "The record's own text."}) + "\n",
        encoding="utf-8",
    )
    (corpus / "a.jsonl#x.txt").write_text(GOOD, encoding="utf-8")
    result = load([corpus])
    names = [s.source for s in result.sources]
    assert len(names) == len(set(names)) == 2
    page = next(d for d in result.documents if d.kind == "article")
    record = next(d for d in result.documents if d.kind == "record")
    assert page.source == "a.jsonl#x.txt" and record.source != page.source
    texts = {s.source: s.text for s in result.sources}
    assert texts[page.source] == GOOD and texts[record.source] == "The record's own text."
    build(result, tmp_path / "idx")
    assert_exact_citations(tmp_path / "idx")


def test_a_record_id_equal_to_a_page_path_yields_to_the_page(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text(GOOD, encoding="utf-8")
    (corpus / "r.jsonl").write_text(
        json.dumps({"id": "a.txt", "text": "A record."}) + "\n", encoding="utf-8"
    )
    result = load([corpus])
    assert sorted(d.doc_id for d in result.documents) == ["a.txt", "r.jsonl#a.txt"]
    assert next(d for d in result.documents if d.doc_id == "a.txt").kind == "article"


def test_ordinary_record_ids_are_unchanged(tmp_path: Path) -> None:
    lines = [json.dumps({"_id": f"doc-{i}", "title": "t", "text": f"text {i}"}) for i in range(5)]
    lines.append(json.dumps({"id": "a#b", "text": "an id with a hash"}))
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load([tmp_path])
    assert [d.doc_id for d in result.documents] == [*(f"doc-{i}" for i in range(5)), "a#b"]
    assert result.documents[0].source == "corpus.jsonl#doc-0"


# -- 7. a file name with a newline is cited and served ------------------------------------


def test_a_document_whose_name_holds_a_newline_is_served(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "two\nlines.txt").write_text(GOOD, encoding="utf-8")
    out = tmp_path / "idx"
    build(load([corpus]), out)
    index = load_index(out)
    settings = Settings(index_dir=out, model="hashing-32", abstain=False)
    lexicon = shared_lexicon()
    engine = Engine(
        index,
        EMB,
        dataclasses.replace(settings.search(EMB.name), relevance=None),
        tokenizer=lexicon.tokenizer,
        expander=lexicon.expander,
    )
    with TestClient(create_app(settings, engine=engine)) as c:
        hit = c.post("/search", json={"query": "back pain after miscarriage"}).json()
        doc_id = hit["passages"][0]["doc_id"]
        assert doc_id == "two\nlines.txt"
        r = c.get("/documents/" + quote(doc_id, safe=""))
    assert r.status_code == 200, r.text
    assert r.json()["text"] == GOOD


# -- 12. a symlink out of the corpus is not followed --------------------------------------


def test_a_symlink_out_of_the_corpus_is_skipped_unless_allowed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("Secret notes\n\nNot part of the corpus at all, never read this.\n")
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text(GOOD, encoding="utf-8")
    (corpus / "leak.txt").symlink_to(outside)
    (corpus / "leakdir").symlink_to(tmp_path, target_is_directory=True)
    (corpus / "inside.txt").symlink_to(corpus / "a.txt")  # inside: the usual alias rule
    (corpus / "sub" / "up.txt").symlink_to(corpus / "a.txt")
    result = load([corpus])
    states = status(result)
    assert states["leak.txt"][0] == "skipped" and "outside the corpus" in str(states["leak.txt"][1])
    assert states["leakdir"][0] == "skipped"
    assert states["inside.txt"] == ("skipped", "same file as a.txt")
    assert all("Secret" not in s.text for s in result.sources)
    allowed = load([corpus], follow_external_symlinks=True)
    assert any("Secret" in s.text for s in allowed.sources)


def test_ingest_cli_has_the_follow_symlinks_flag() -> None:
    from click.testing import CliRunner

    from medcite.service.cli import main

    assert "--follow-symlinks" in CliRunner().invoke(main, ["ingest", "--help"]).output
