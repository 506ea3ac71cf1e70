"""Staff feedback: the store (service.feedback), the routes (service.routes.feedback), the
export (`medcite judgements export`) and `medcite eval` on it, and the page's round trip."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from support import CORPUS, all_at_once, cache_dir, serve, tiny_engine, tiny_settings
from test_web import browser_available as browser_available  # a fixture: skips without Chromium

from medcite.service.app import create_app
from medcite.service.cli import main
from medcite.service.evaluate import load_qrels, load_queries
from medcite.service.feedback import (
    FeedbackStore,
    FeedbackUnavailable,
    InvalidFeedback,
    export_beir,
    staff_id,
)
from medcite.service.settings import Settings

STAFF = "staff-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
QUESTION = "back pain after miscarriage"
A = staff_id("alice-key-0123456789")
B = staff_id("bob-key-0123456789ab")


def store_at(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "fb" / "feedback.sqlite")


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---- the store ----------------------------------------------------------------------------


def test_a_re_mark_replaces_the_label_and_the_text_is_kept_only_when_asked(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)
    first = store.record(
        query=QUESTION, label="helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0"
    )
    again = store.record(
        query=f"  {QUESTION} ", label="not_helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0"
    )
    store.record(query=QUESTION, label="helpful", staff=B, doc_id="a.txt", chunk_id="a.txt::0")
    assert first.query_key == again.query_key and len(first.query_key) == 32
    assert not again.question_saved
    assert store.counts() == {"helpful": 1, "not_helpful": 1, "none": 0}
    store.close()
    db = store.path
    rows = table(db, "SELECT staff, label FROM judgements ORDER BY staff")
    assert sorted(rows) == sorted([(A, "not_helpful"), (B, "helpful")])
    # Nothing of the question's text is in the file, only its HMAC.
    assert QUESTION.encode() not in db.read_bytes()
    assert table(db, "SELECT text FROM questions") == [(None,)]
    key_file = db.with_name(db.name + ".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # Reopened: the same key (the HMAC key persists), and saving the text keeps it.
    store = FeedbackStore(db)
    saved = store.record(query=QUESTION, label="none", staff=A, keep_text=True)
    later = store.record(query=QUESTION, label="none", staff=B)  # does not erase the text
    assert saved.query_key == first.query_key and saved.question_saved and later.question_saved
    store.close()
    assert table(db, "SELECT text FROM questions") == [(QUESTION,)]
    assert table(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "back pain \ud800"}, "lone surrogate"),
        ({"doc_id": "a\udfff.txt"}, "lone surrogate"),
        ({"chunk_id": "a.txt::0\x00"}, "control character"),
        ({"query": "   "}, "empty"),
        ({"query": "x" * 1001}, "longer than"),
        ({"label": "meh"}, "label must be"),
        ({"label": "none"}, "give no passage"),
        ({"doc_id": None, "chunk_id": None}, "needs the passage"),
        ({"chunk_id": "b.txt::0"}, "does not belong"),
        ({"chunk_id": None, "start": 5, "end": 5}, "0 <= start < end"),
        ({"chunk_id": None, "start": 5}, "both start and end"),
        ({"language": "fr"}, "zh or en"),
    ],
)
def test_bad_judgements_are_refused_and_nothing_is_stored(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    store = store_at(tmp_path)
    given = {
        "query": QUESTION,
        "label": "helpful",
        "staff": A,
        "doc_id": "a.txt",
        "chunk_id": "a.txt::0",
        "keep_text": True,
    } | kwargs
    with pytest.raises(InvalidFeedback, match=message):
        store.record(**given)
    assert store.counts() == {"helpful": 0, "not_helpful": 0, "none": 0}
    store.close()
    assert table(store.path, "SELECT count(*) FROM questions") == [(0,)]


def test_a_span_identifies_a_passage_without_a_chunk_id(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    for label in ("helpful", "not_helpful"):
        store.record(query=QUESTION, label=label, staff=A, doc_id="a.txt", start=3, end=40)
    store.record(query=QUESTION, label="helpful", staff=A, doc_id="a.txt", start=40, end=90)
    assert store.counts() == {"helpful": 1, "not_helpful": 1, "none": 0}


def test_a_corrupt_file_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    db.write_bytes(b"this is not a database" * 200)
    with pytest.raises(FeedbackUnavailable, match="not a feedback database"):
        FeedbackStore(db)
    with pytest.raises(FeedbackUnavailable, match="not a feedback database"):
        FeedbackStore(db, readonly=True)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(FeedbackUnavailable, match="not a medcite feedback store"):
        FeedbackStore(other, readonly=True)
    assert b"this is not a database" in db.read_bytes()  # left as it was


def test_a_damaged_or_lost_hmac_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = store_at(tmp_path)
    before = store.record(query=QUESTION, label="none", staff=A)
    store.close()
    key_file = store.path.with_name(store.path.name + ".key")
    key_file.write_text("not hex")
    with pytest.raises(FeedbackUnavailable, match="cannot read the HMAC key file"):
        FeedbackStore(store.path)
    key_file.unlink()  # lost: a new key, with a warning that old questions will not group
    store = FeedbackStore(store.path)
    assert "HMAC key file was missing" in caplog.text
    assert store.record(query=QUESTION, label="none", staff=A).query_key != before.query_key
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.close()
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(FeedbackUnavailable, match="schema version 2"):
        FeedbackStore(store.path)


def test_an_unwritable_place_and_a_read_only_file_are_clear_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(FeedbackUnavailable, match="cannot use the feedback store"):
        FeedbackStore(blocker / "feedback.sqlite")  # its folder cannot be made

    store = store_at(tmp_path)
    store.record(query=QUESTION, label="helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0")
    # SQLite's answer for a file it may not write (root ignores file modes, so ask SQLite).
    store._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(FeedbackUnavailable, match="read-only"):
        store.record(query="other question", label="none", staff=A, keep_text=True)
    store._conn.execute("PRAGMA query_only = OFF")
    assert store.counts() == {"helpful": 1, "not_helpful": 0, "none": 0}
    store.close()
    assert table(store.path, "SELECT count(*) FROM questions") == [(1,)]


def test_a_full_disk_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.record(query=QUESTION, label="helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    stored = 1
    with pytest.raises(FeedbackUnavailable, match="disk is full"):
        for i in range(10_000):
            store.record(
                query=f"question number {i} " + "pad " * 200,
                label="not_helpful",
                staff=A,
                doc_id="a.txt",
                chunk_id="a.txt::0",
                keep_text=True,
            )
            stored += 1
    counts = store.counts()
    assert sum(counts.values()) == stored
    store._conn.execute("PRAGMA max_page_count = 1000000")
    store.record(query="after", label="none", staff=A)  # writable again
    store.close()
    # Every question row has its judgement and the other way round: no half a record.
    assert table(store.path, "PRAGMA integrity_check") == [("ok",)]
    assert table(store.path, "SELECT count(*) FROM questions") == [(stored + 1,)]
    orphans = (
        "SELECT count(*) FROM questions WHERE query_key NOT IN (SELECT query_key FROM judgements)"
    )
    assert table(store.path, orphans) == [(0,)]


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Eight threads on one store and four on a second connection to the same file (as a
    second server process would be)."""
    first = store_at(tmp_path)
    second = FeedbackStore(first.path)
    errors: list[BaseException] = []

    def write(store: FeedbackStore, who: int) -> None:
        try:
            for i in range(40):
                store.record(
                    query=f"question {i % 7}",
                    label=("helpful", "not_helpful")[i % 2],
                    staff=staff_id(f"writer-{who}-0123456789"),
                    doc_id="a.txt",
                    chunk_id=f"a.txt::{i}",
                    keep_text=i % 3 == 0,
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(first, n)) for n in range(8)]
    threads += [threading.Thread(target=write, args=(second, 8 + n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(first.counts().values()) == 12 * 40
    assert first.counts() == {"helpful": 240, "not_helpful": 240, "none": 0}
    first.close()
    second.close()
    assert table(first.path, "SELECT count(*) FROM questions") == [(7,)]


# ---- the export ---------------------------------------------------------------------------


def test_export_writes_beir_that_eval_reads(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    mark = store.record
    # q1: a.txt helpful by A, not helpful by B, helpful by C -> relevant; b.txt not helpful.
    mark(
        query="q one", label="helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0", keep_text=True
    )
    mark(query="q one", label="not_helpful", staff=B, doc_id="a.txt", chunk_id="a.txt::0")
    mark(query="q one", label="helpful", staff="c", doc_id="a.txt", chunk_id="a.txt::0")
    mark(query="q one", label="not_helpful", staff=A, doc_id="b.txt", chunk_id="b.txt::2")
    # q2: a tie (one each): the later mark decides (not helpful); c.txt helpful elsewhere.
    mark(
        query="q two",
        label="helpful",
        staff=A,
        doc_id="a.txt",
        chunk_id="a.txt::1",
        now=1.0,
        keep_text=True,
    )
    mark(query="q two", label="not_helpful", staff=B, doc_id="a.txt", chunk_id="a.txt::1", now=2.0)
    mark(query="q two", label="helpful", staff=A, doc_id="c.txt", chunk_id="c.txt::0", now=3.0)
    # q3: none of these answers -> unanswerable. q4: only not helpful. q5: text never saved.
    mark(query="q three", label="none", staff=A, keep_text=True)
    mark(query="q three", label="not_helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0")
    mark(
        query="q four",
        label="not_helpful",
        staff=A,
        doc_id="b.txt",
        chunk_id="b.txt::0",
        keep_text=True,
    )
    mark(query="q five", label="helpful", staff=A, doc_id="a.txt", chunk_id="a.txt::0")
    keys = {q: store.query_key(q) for q in ("q one", "q two", "q three", "q four", "q five")}
    store.close()

    out = tmp_path / "export"
    result = CliRunner().invoke(
        main,
        ["judgements", "export", "--out", str(out)],
        env={"MEDCITE_FEEDBACK_PATH": str(store.path)},
    )
    assert result.exit_code == 0, result.output
    assert "exported 4 of 5 judged questions" in result.stdout
    assert "2 answerable, 1 unanswerable, 1 with only not-helpful passages" in result.stdout
    assert "skipped 1 questions whose text was not saved" in result.stderr

    queries = load_queries(out / "queries.jsonl")
    assert queries.texts == {keys[q]: q for q in ("q one", "q two", "q three", "q four")}
    assert queries.unanswerable == {keys["q three"]}
    assert load_qrels(out / "qrels.tsv") == {
        keys["q one"]: {"a.txt": 1},
        keys["q two"]: {"c.txt": 1},
    }
    lines = (out / "qrels.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    assert f"{keys['q one']}\tb.txt\t0" in lines and f"{keys['q two']}\ta.txt\t0" in lines
    assert f"{keys['q four']}\tb.txt\t0" in lines
    assert not list(out.glob(".*.tmp"))


def test_export_of_a_missing_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "feedback.sqlite"
    result = CliRunner().invoke(
        main,
        ["judgements", "export", "--out", str(tmp_path / "out"), "--feedback-path", str(missing)],
    )
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("error: no feedback store at") and "Traceback" not in result.output
    )
    assert not missing.exists() and not (tmp_path / "out").exists()  # nothing created


def test_export_into_an_unwritable_place_is_a_domain_error(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.record(query=QUESTION, label="none", staff=A, keep_text=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot write the export"):
        export_beir(store, blocker / "out")


# ---- the routes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_dir(tiny_index_dir: Path) -> Path:
    return tiny_index_dir


@pytest.fixture
def app_client(index_dir: Path, tmp_path: Path) -> Iterator[Any]:
    def make(**overrides: Any) -> TestClient:
        overrides = {
            "staff_key": STAFF,
            "admin_api_key": ADMIN,
            "feedback_path": tmp_path / "feedback.sqlite",
        } | overrides
        settings = tiny_settings(index_dir, **overrides)
        return TestClient(create_app(settings, engine=tiny_engine(index_dir, **overrides)))

    yield make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def passage_mark(c: TestClient, key: str = STAFF, **extra: Any) -> httpx.Response:
    hit = c.post("/search", json={"query": QUESTION}).json()["passages"][0]
    body = {
        "query": QUESTION,
        "label": "helpful",
        "doc_id": hit["doc_id"],
        "chunk_id": hit["chunk_id"],
    }
    return c.post("/feedback", json=body | extra, headers=bearer(key))


def test_feedback_needs_the_staff_or_admin_key(app_client: Any, tmp_path: Path) -> None:
    off = {"enabled": False, "signed_in": False, "role": None, "question_text": None}
    with app_client(staff_key=None, admin_api_key=None) as c:
        assert c.get("/feedback/enabled").json() == off
        assert c.get("/feedback/enabled", headers=bearer(STAFF)).json() == off
        r = passage_mark(c)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert "MEDCITE_STAFF_KEY" in r.json()["error"]["message"]
    with app_client() as c:
        # Without a key: whether feedback is on (the page shows its sign-in link), no more.
        assert c.get("/feedback/enabled").json() == off | {"enabled": True}
        assert passage_mark(c, "").status_code == 401
        for headers in (bearer("wrong-key-0123456789abc"), bearer(STAFF + "x")):
            r = c.get("/feedback/enabled", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        for headers in ({"Authorization": STAFF}, bearer("wrong-key-0123456789abc")):
            r = c.post("/feedback", json={"query": QUESTION, "label": "none"}, headers=headers)
            assert r.status_code == 401, r.text
        assert c.get("/feedback/enabled", headers=bearer(STAFF)).json() == {
            "enabled": True,
            "signed_in": True,
            "role": "staff",
            "question_text": "on_request",
        }
        assert c.get("/feedback/enabled", headers=bearer(ADMIN)).json()["role"] == "admin"
        # The staff key opens feedback only, not the admin endpoints.
        assert c.post("/admin/reload", headers=bearer(STAFF)).status_code == 401
    assert not (tmp_path / "feedback.sqlite").exists()  # nothing was stored


def test_a_mark_is_stored_counted_and_keeps_no_text_unless_saved(
    app_client: Any, tmp_path: Path
) -> None:
    db = tmp_path / "feedback.sqlite"
    with app_client() as c:
        r = passage_mark(c)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "stored" and r.json()["question_saved"] is False
        assert passage_mark(c, label="not_helpful").json()["label"] == "not_helpful"  # replaced
        assert passage_mark(c, ADMIN).status_code == 200  # the admin key counts as another mark
        none = {"query": QUESTION, "label": "none", "language": "en", "save_question": True}
        r = c.post("/feedback", json=none, headers=bearer(STAFF))
        assert r.status_code == 200 and r.json()["question_saved"] is True
        metrics = c.get("/metrics").text
        version = c.get("/readyz").json()["index_version"]
    assert 'medcite_feedback_total{label="helpful"} 2.0' in metrics
    assert 'medcite_feedback_total{label="not_helpful"} 1.0' in metrics
    assert 'medcite_feedback_total{label="none"} 1.0' in metrics
    rows = table(db, "SELECT label, staff, index_version FROM judgements ORDER BY id")
    assert [(label, staff) for label, staff, _ in rows] == [
        ("not_helpful", staff_id(STAFF)),
        ("helpful", staff_id(ADMIN)),
        ("none", staff_id(STAFF)),
    ]
    assert {v for *_, v in rows} == {version}
    assert table(db, "SELECT text, language FROM questions") == [(QUESTION, "en")]
    assert STAFF.encode() not in db.read_bytes() and ADMIN.encode() not in db.read_bytes()


def test_with_log_queries_every_judged_question_keeps_its_text(
    app_client: Any, tmp_path: Path
) -> None:
    with app_client(log_queries=True) as c:
        assert c.get("/feedback/enabled", headers=bearer(STAFF)).json()["question_text"] == "always"
        assert passage_mark(c).json()["question_saved"] is True
    assert table(tmp_path / "feedback.sqlite", "SELECT text FROM questions") == [(QUESTION,)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"label": "helpful", "doc_id": "nope.txt", "chunk_id": "nope.txt::0"}, "invalid_feedback"),
        ({"label": "none", "doc_id": "a.txt"}, "invalid_feedback"),
        ({"label": "helpful", "doc_id": "a.txt", "chunk_id": "b.txt::0"}, "invalid_feedback"),
        ({"label": "great"}, "invalid_request"),
        ({"label": "none", "extra": 1}, "invalid_request"),
        # JSON decoding refuses a lone surrogate before the route (the store refuses it too)
        ({"label": "none", "query": "why \ud800"}, "invalid_request"),
        ({"label": "none", "query": "   "}, "invalid_query"),
        ({"label": "helpful", "doc_id": "a.txt", "chunk_id": "a.txt::\udc00"}, "invalid_request"),
        ({"label": "helpful", "doc_id": "a.txt", "chunk_id": "a.txt::\x01"}, "invalid_feedback"),
        ({"label": "helpful", "doc_id": "a.txt", "start": -1, "end": 3}, "invalid_request"),
    ],
)
def test_bad_feedback_is_a_422_in_the_error_shape(
    app_client: Any, tmp_path: Path, body: dict[str, Any], code: str
) -> None:
    with app_client() as c:
        # json.dumps escapes a lone surrogate as "\\ud800", as a hostile client sends it
        sent = json.dumps({"query": QUESTION} | body)
        headers = bearer(STAFF) | {"Content-Type": "application/json"}
        r = c.post("/feedback", content=sent, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code
        assert 'medcite_feedback_total{label="none"} 0.0' in c.get("/metrics").text
    if (tmp_path / "feedback.sqlite").exists():
        assert table(tmp_path / "feedback.sqlite", "SELECT count(*) FROM judgements") == [(0,)]


def test_a_broken_store_is_a_503_and_search_keeps_working(app_client: Any, tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    db.write_bytes(b"garbage" * 1000)
    with app_client() as c:
        r = passage_mark(c)
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        error = r.json()["error"]
        assert error["code"] == "feedback_unavailable" and "corrupt" in error["message"]
        assert str(tmp_path) not in error["message"]  # no absolute path reaches a client
        assert c.post("/search", json={"query": QUESTION}).status_code == 200
        db.unlink()  # repaired: the next mark opens a new store
        assert passage_mark(c).status_code == 200


# ---- with the real model: export, then `medcite eval` ---------------------------------------

EN = "why does my back hurt after a miscarriage"
OFF_TOPIC = "how do I change a flat tyre on my car"


def eval_export(out: Path, index_dir: Path) -> dict[str, Any]:
    """`medcite eval` on an exported set, on the bundled corpus's index."""
    args = ["eval", "--corpus", str(CORPUS), "--queries", str(out / "queries.jsonl")]
    args += ["--qrels", str(out / "qrels.tsv"), "--index-dir", str(index_dir), "--json"]
    env = {"MEDCITE_CACHE_DIR": str(cache_dir()), "HF_HUB_OFFLINE": "1"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def expected_ndcg(passages: list[dict[str, Any]], relevant: str) -> float:
    """nDCG@10 of one relevant document, from /search's passages (k=10) in their order."""
    import math

    docs = list(dict.fromkeys(p["doc_id"] for p in passages))
    return 1 / math.log2(docs.index(relevant) + 2) if relevant in docs else 0.0


@pytest.mark.slow
def test_judgements_through_the_api_become_a_set_that_eval_scores(
    tmp_path: Path, seed_index_dir: Path, seed_engine: Any
) -> None:
    """Real model, bundled corpus: a helpful passage, a not-helpful one, an off-topic
    question judged "none of these answers" and one whose text is not saved; exported,
    then `medcite eval` scores exactly the ranking /search gives."""
    db = tmp_path / "feedback.sqlite"
    settings = Settings(
        index_dir=seed_index_dir, cache_dir=cache_dir(), staff_key=STAFF, feedback_path=db
    )
    with TestClient(create_app(settings, engine=seed_engine)) as c:
        hits = c.post("/search", json={"query": EN, "k": 10}).json()["passages"]
        good = next(p for p in hits if p["source"] in MISCARRIAGE_EN)
        bad = next(p for p in hits if p["doc_id"] != good["doc_id"])
        for p, label in ((good, "helpful"), (bad, "not_helpful")):
            body = {"query": EN, "label": label, "doc_id": p["doc_id"], "chunk_id": p["chunk_id"]}
            r = c.post("/feedback", json=body | {"save_question": True}, headers=bearer(STAFF))
            assert r.status_code == 200, r.text
        off = c.post("/search", json={"query": OFF_TOPIC}).json()
        assert off["answerable"] is False
        none = {"query": OFF_TOPIC, "label": "none", "save_question": True}
        assert c.post("/feedback", json=none, headers=bearer(STAFF)).status_code == 200
        unsaved = {"query": "腰疼怎么办", "label": "none"}
        assert c.post("/feedback", json=unsaved, headers=bearer(STAFF)).status_code == 200

    out = tmp_path / "set"
    env = {"MEDCITE_FEEDBACK_PATH": str(db)}
    result = CliRunner().invoke(main, ["judgements", "export", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "exported 2 of 3 judged questions" in result.stdout
    assert "skipped 1 questions" in result.stderr

    report = eval_export(out, seed_index_dir)
    assert report["queries"] == 1 and report["answered"] == 1.0
    assert report["ndcg@10"] == pytest.approx(expected_ndcg(hits, good["doc_id"]), abs=1e-4)
    assert report["abstention"] == {"unanswerable_queries": 1, "abstained": 1, "rate": 1.0}


MISCARRIAGE_EN = {"001_f6e1ae9f4f4596cb.txt", "004_3a0b4b9e837dc788.txt"}


# ---- the page: click -> stored -> exported -> scored ------------------------------------------


@pytest.fixture(scope="module")
def staff_server(
    browser_available: None, seed_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("staff-serve")
    env = {
        "MEDCITE_INDEX_DIR": str(seed_index_dir),
        "MEDCITE_CACHE_DIR": str(cache_dir()),
        "MEDCITE_STAFF_KEY": STAFF,
        "MEDCITE_FEEDBACK_PATH": str(root / "feedback.sqlite"),
    }
    with serve(env, root / "serve.log", timeout=300) as base:
        yield base, root / "feedback.sqlite"


def wal(db: Path) -> bytes:
    """The store's write-ahead log (recent writes live there until a checkpoint)."""
    log = db.with_name(db.name + "-wal")
    return log.read_bytes() if log.exists() else b""


def click_and_wait_saved(driver: Any, button: Any, status_css: str) -> None:
    from test_web import js, wait_until

    button.click()
    wait_until(driver, lambda d: button.get_attribute("aria-pressed") == "true", 60)
    status = js(
        driver,
        "return arguments[0].closest('[role=group]').querySelector(arguments[1]).textContent",
        button,
        status_css,
    )
    assert status in ("Saved", "已保存"), status


@pytest.mark.slow
def test_the_page_round_trip_click_store_export_eval(
    staff_server: tuple[str, Path], seed_index_dir: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from test_web import _chromium, ask, js, open_page, shot, wait_until

    base, db = staff_server
    with _chromium(1280, 1000) as driver:
        # The public page: a sign-in link, no feedback buttons.
        ask(driver, base, EN)
        assert driver.find_elements(By.CSS_SELECTOR, "#cards li.card .passage-actions")
        assert not driver.find_elements(By.CSS_SELECTOR, ".fb-passage, #fb-result")
        signin = wait_until(driver, lambda d: d.find_elements(By.ID, "staff-signin"))[0]
        assert signin.is_displayed()
        js(driver, "arguments[0].scrollIntoView({block: 'end'})", signin)
        shot(driver, "feedback-public")

        # A wrong key is refused; the right one is kept in this tab only, never in the URL.
        signin.click()
        box = driver.find_element(By.ID, "staff-key")
        box.send_keys("not-the-key-0123456789")
        driver.find_element(By.ID, "staff-submit").click()
        wait_until(driver, lambda d: "not accepted" in d.find_element(By.ID, "staff-error").text)
        shot(driver, "feedback-signin-refused")
        box.clear()
        box.send_keys(STAFF)
        driver.find_element(By.ID, "staff-submit").click()
        wait_until(driver, lambda d: d.find_elements(By.ID, "staff-signout"))
        assert js(driver, "return sessionStorage.getItem('medcite.staffKey')") == STAFF
        assert js(driver, "return localStorage.length") == 0
        assert STAFF not in driver.current_url

        # Buttons on every passage of the results already shown, and after a new search.
        ask(driver, base, EN)
        wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".fb-passage"))
        cards = driver.find_elements(By.CSS_SELECTOR, "#cards li.card")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".fb-passage")) == len(cards)
        driver.find_element(By.ID, "fb-save").click()
        good = next(c for c in cards if c.get_attribute("data-doc-id") in MISCARRIAGE_EN)
        bad = next(
            c for c in cards if c.get_attribute("data-doc-id") != good.get_attribute("data-doc-id")
        )
        click_and_wait_saved(driver, bad.find_element(By.CSS_SELECTOR, ".fb-helpful"), ".fb-status")
        # changed its mind: the re-mark replaces the label
        click_and_wait_saved(
            driver, bad.find_element(By.CSS_SELECTOR, ".fb-not-helpful"), ".fb-status"
        )
        assert (
            bad.find_element(By.CSS_SELECTOR, ".fb-helpful").get_attribute("aria-pressed")
            == "false"
        )
        click_and_wait_saved(
            driver, good.find_element(By.CSS_SELECTOR, ".fb-helpful"), ".fb-status"
        )
        js(driver, "arguments[0].scrollIntoView({block: 'center'})", good)
        shot(driver, "feedback-marked")
        good_doc = good.get_attribute("data-doc-id")

        # An off-topic question: no passages, "none of these answers", saved as a test case.
        # Judged first, saved as a test case after: the judgement is sent again with the text.
        ask(driver, base, OFF_TOPIC)
        assert not driver.find_elements(By.CSS_SELECTOR, ".fb-passage")
        click_and_wait_saved(driver, driver.find_element(By.ID, "fb-none"), "#fb-status")
        assert OFF_TOPIC.encode() not in db.read_bytes() + wal(db)
        js(driver, "document.getElementById('fb-status').textContent = ''")
        driver.find_element(By.ID, "fb-save").click()
        wait_until(driver, lambda d: d.find_element(By.ID, "fb-status").text == "Saved", 60)
        shot(driver, "feedback-none")

        # A question judged without saving its text: stored as an HMAC only, not exported.
        ask(driver, base, "腰疼怎么办")
        wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".fb-passage"))
        assert driver.find_element(By.CSS_SELECTOR, ".fb-helpful").text == "有帮助"
        click_and_wait_saved(driver, driver.find_element(By.ID, "fb-none"), "#fb-status")
        shot(driver, "feedback-zh")

        # Signing out removes the buttons and the key.
        driver.find_element(By.ID, "staff-signout").click()
        wait_until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#fb-result"))
        assert js(driver, "return sessionStorage.getItem('medcite.staffKey')") is None
        open_page(driver, base)
        wait_until(driver, lambda d: d.find_elements(By.ID, "staff-signin"))

    metrics = httpx.get(f"{base}/metrics").text
    assert 'medcite_feedback_total{label="helpful"} 2.0' in metrics
    assert 'medcite_feedback_total{label="not_helpful"} 1.0' in metrics
    assert 'medcite_feedback_total{label="none"} 3.0' in metrics  # one sent again
    assert "腰疼怎么办".encode() not in db.read_bytes() + wal(db)

    out = tmp_path / "set"
    result = CliRunner().invoke(
        main, ["judgements", "export", "--out", str(out)], env={"MEDCITE_FEEDBACK_PATH": str(db)}
    )
    assert result.exit_code == 0, result.output
    assert "exported 2 of 3 judged questions" in result.stdout
    assert "1 answerable, 1 unanswerable" in result.stdout
    texts = load_queries(out / "queries.jsonl").texts
    assert sorted(texts.values()) == sorted([EN, OFF_TOPIC])

    hits = httpx.post(f"{base}/search", json={"query": EN, "k": 10}, timeout=120).json()
    report = eval_export(out, seed_index_dir)
    assert report["queries"] == 1 and report["answered"] == 1.0
    assert report["ndcg@10"] == pytest.approx(expected_ndcg(hits["passages"], good_doc), abs=1e-4)
    assert report["ndcg@10"] > 0
    assert report["abstention"] == {"unanswerable_queries": 1, "abstained": 1, "rate": 1.0}


@pytest.mark.slow
def test_the_feedback_controls_fit_a_phone(staff_server: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from test_web import _phone, ask, js, open_page, shot, wait_until

    base, _ = staff_server
    with _phone(390, 844) as driver:
        open_page(driver, base)
        js(driver, "sessionStorage.setItem('medcite.staffKey', arguments[0])", STAFF)
        ask(driver, base, EN)
        wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".fb-passage"), 60)
        width = js(driver, "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
        for css in ("#fb-result", ".fb-passage"):
            box = js(
                driver,
                "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                "return [r.left, r.right];",
                css,
            )
            assert box[0] >= 0 and box[1] <= width[1], (css, box)
        js(driver, "document.querySelector('.fb-passage').scrollIntoView({block: 'center'})")
        shot(driver, "feedback-phone")


def test_stores_opened_at_once_on_a_new_path_share_one_key(tmp_path: Path) -> None:
    # Switching a new file to WAL is not covered by SQLite's busy handler: without the retry,
    # about one round in twelve lost an opener to "database is locked" (CI failed on it).
    for round_ in range(40):
        path = tmp_path / str(round_) / "feedback.sqlite"
        keys: list[str] = []

        def open_and_key(path: Path = path, keys: list[str] = keys) -> None:
            store = FeedbackStore(path)
            keys.append(store.query_key(QUESTION))
            store.close()

        errors = all_at_once(open_and_key)
        assert errors == [] and len(keys) == 8 and len(set(keys)) == 1, (round_, errors)
        assert sorted(
            p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))
        ) == [
            "feedback.sqlite",
            "feedback.sqlite.key",
        ]
