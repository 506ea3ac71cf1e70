"""Staff judgements of passages, stored in SQLite, exported as a BEIR evaluation set.

Support staff mark each passage of an answer helpful or not helpful, or say that none of
them answers the question. One row per judgement and per staff key: marking the same
passage again replaces the label (the last one wins). Questions are health data: a
question is stored as an HMAC of its text (``query_key``) under a key kept in a file beside
the database (``feedback.sqlite.key``, mode 0600), so judgements of one question group
together across restarts while the text cannot be recovered from the database alone by
hashing guesses. The text itself is stored only when the caller says so (the staff member
saves the question as a test case, or MEDCITE_LOG_QUERIES allows it); :func:`export_beir`
writes only those questions.

Every write is one transaction: a full disk or a read-only file is a
:class:`FeedbackUnavailable` and nothing of that judgement is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from medcite.index.errors import MedciteError
from medcite.index.sqlitelock import while_locked

LOG = logging.getLogger(__name__)

Label = Literal["helpful", "not_helpful", "none"]
LABELS: tuple[str, ...] = get_args(Label)
SCHEMA_VERSION = 1
MAX_TEXT = 1000  # characters of a question (as /search takes)
MAX_ID = 1000  # characters of a doc or chunk id
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS questions (
    query_key TEXT PRIMARY KEY,
    text TEXT,
    language TEXT,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    query_key TEXT NOT NULL REFERENCES questions(query_key),
    language TEXT,
    passage TEXT NOT NULL,
    doc_id TEXT,
    chunk_id TEXT,
    start INTEGER,
    end INTEGER,
    label TEXT NOT NULL CHECK (label IN ('helpful', 'not_helpful', 'none')),
    staff TEXT NOT NULL,
    index_version TEXT,
    UNIQUE (staff, query_key, passage)
);
"""


class FeedbackError(MedciteError):
    pass


class InvalidFeedback(FeedbackError):
    """A judgement that cannot be stored as given (bad label, id or text)."""


class FeedbackUnavailable(FeedbackError):
    """The store cannot be opened or written (missing, corrupt, read-only, disk full)."""


class FeedbackStoreMissing(FeedbackUnavailable):
    pass


@dataclass(frozen=True)
class Judgement:
    query_key: str
    label: Label
    doc_id: str | None
    chunk_id: str | None
    start: int | None
    end: int | None
    language: str | None
    staff: str
    index_version: str | None
    time: float
    question_saved: bool


def staff_id(key: str) -> str:
    """What identifies a staff key in the store: a hash of it, never the key."""
    return hashlib.sha256(b"medcite-staff\0" + key.encode("utf-8")).hexdigest()[:16]


def _clean(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFeedback(f"{what} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFeedback(f"{what} holds a lone surrogate: send valid UTF-8") from exc
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value) or "\x7f" in value:
        raise InvalidFeedback(f"{what} holds a control character")
    if not value.strip():
        raise InvalidFeedback(f"{what} is empty")
    if len(value) > limit:
        raise InvalidFeedback(f"{what} is longer than {limit} characters")
    return value


def _unavailable(path: Path, exc: BaseException) -> FeedbackUnavailable:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        why = "the file is read-only"
    elif "full" in text:
        why = "the disk is full"
    elif "not a database" in text or "malformed" in text:
        why = "the file is not a feedback database (corrupt?)"
    else:
        why = text
    return FeedbackUnavailable(f"cannot use the feedback store {path.name}: {why}")


def _passage_key(
    label: str, doc_id: str | None, chunk_id: str | None, start: int | None, end: int | None
) -> str:
    """What a judgement is about: "" for the question itself (label "none"), else the chunk
    id or ``doc_id@start:end``. Raises InvalidFeedback for a passage that is not one."""
    if label == "none":
        if doc_id or chunk_id or start is not None or end is not None:
            raise InvalidFeedback('label "none" judges the question: give no passage')
        return ""
    if doc_id is None:
        raise InvalidFeedback(f'label "{label}" needs the passage\'s doc_id')
    if (start is None) != (end is None):
        raise InvalidFeedback("give both start and end, or neither")
    if start is not None and end is not None and not 0 <= start < end:
        raise InvalidFeedback("the span must have 0 <= start < end")
    if chunk_id is None and start is None:
        raise InvalidFeedback("give the passage's chunk_id or its start and end")
    if chunk_id is not None and not chunk_id.startswith(doc_id + "::"):
        raise InvalidFeedback("chunk_id does not belong to doc_id")
    return chunk_id if chunk_id is not None else f"{doc_id}@{start}:{end}"


class FeedbackStore:
    """One SQLite file (WAL, busy timeout); safe to share between a server's threads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly and not path.is_file():
            raise FeedbackStoreMissing(
                f"no feedback store at {path} (MEDCITE_FEEDBACK_PATH): nothing judged yet?"
            )
        try:
            if readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(str(path), check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise _unavailable(path, exc) from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise _unavailable(path, exc) from exc
        except FeedbackError:
            self._conn.close()
            raise
        try:
            self._key = None if readonly else self._hmac_key()
        except FeedbackError:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        if self.readonly:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not {"meta", "questions", "judgements"} <= tables:
                raise FeedbackUnavailable(f"{self.path.name} is not a medcite feedback store")
        else:
            while_locked(
                lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(),
                timeout_s=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA synchronous = NORMAL")
            with conn:
                conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else 0
        if version != SCHEMA_VERSION:
            raise FeedbackUnavailable(
                f"{self.path.name} has feedback schema version {version}; this medcite reads "
                f"version {SCHEMA_VERSION}"
            )

    def _hmac_key(self) -> bytes:
        """The HMAC key, in ``<store>.key`` (mode 0600). Made once: written to a temporary
        file and linked into place, so a concurrent opener reads a whole key or makes none."""
        key_path = self.path.with_name(self.path.name + ".key")
        if not key_path.exists():
            self._make_key(key_path)
        try:
            key = bytes.fromhex(key_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as exc:
            raise FeedbackUnavailable(
                f"cannot read the HMAC key file {key_path.name}: {exc}"
            ) from exc
        if len(key) < 16:
            raise FeedbackUnavailable(f"the HMAC key file {key_path.name} is damaged")
        return key

    def _make_key(self, key_path: Path) -> None:
        tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_bytes(32).hex())
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, key_path)
        except FileExistsError:
            return  # another process made it first: use theirs
        except OSError as exc:
            raise _unavailable(key_path, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        (judged,) = self._conn.execute("SELECT count(*) FROM questions").fetchone()
        if judged:
            LOG.warning(
                "%s holds %d questions but its HMAC key file was missing: a new key is made, "
                "so those questions will not be grouped with new judgements",
                self.path.name,
                judged,
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def query_key(self, text: str) -> str:
        if self._key is None:
            raise FeedbackError("a read-only store cannot key questions")
        clean = _clean(text.strip(), "the question", MAX_TEXT)
        assert clean is not None
        return hmac.new(self._key, clean.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def record(
        self,
        *,
        query: str,
        label: str,
        staff: str,
        doc_id: str | None = None,
        chunk_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        language: str | None = None,
        index_version: str | None = None,
        keep_text: bool = False,
        now: float | None = None,
    ) -> Judgement:
        """Store one judgement (replacing this staff key's earlier label of the passage).

        ``label`` "none" judges the question (none of the passages answers it): no passage.
        ``keep_text`` stores the question's text (else only its HMAC)."""
        if label not in LABELS:
            raise InvalidFeedback(f"label must be one of {', '.join(LABELS)}")
        text = query.strip()
        key = self.query_key(text)
        doc_id = _clean(doc_id, "doc_id", MAX_ID)
        chunk_id = _clean(chunk_id, "chunk_id", MAX_ID)
        _clean(staff, "staff", 64)
        if language is not None and language not in ("zh", "en"):
            raise InvalidFeedback("language must be zh or en")
        passage = _passage_key(label, doc_id, chunk_id, start, end)
        at = time.time() if now is None else now
        with self._lock:
            try:
                with self._conn:  # one transaction: all of it or nothing
                    self._conn.execute(
                        "INSERT INTO questions (query_key, text, language, first_seen) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (query_key) DO UPDATE SET "
                        "text = coalesce(excluded.text, questions.text), "
                        "language = coalesce(excluded.language, questions.language)",
                        (key, text if keep_text else None, language, at),
                    )
                    self._conn.execute(
                        "INSERT INTO judgements (time, query_key, language, passage, doc_id, "
                        "chunk_id, start, end, label, staff, index_version) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (staff, query_key, passage) DO UPDATE SET "
                        "time = excluded.time, label = excluded.label, "
                        "language = excluded.language, doc_id = excluded.doc_id, "
                        "chunk_id = excluded.chunk_id, start = excluded.start, "
                        "end = excluded.end, index_version = excluded.index_version",
                        (
                            at,
                            key,
                            language,
                            passage,
                            doc_id,
                            chunk_id,
                            start,
                            end,
                            label,
                            staff,
                            index_version,
                        ),
                    )
                    saved = self._conn.execute(
                        "SELECT text IS NOT NULL FROM questions WHERE query_key = ?", (key,)
                    ).fetchone()[0]
            except sqlite3.Error as exc:
                raise _unavailable(self.path, exc) from exc
        return Judgement(
            query_key=key,
            label=label,  # type: ignore[arg-type]
            doc_id=doc_id,
            chunk_id=chunk_id,
            start=start,
            end=end,
            language=language,
            staff=staff,
            index_version=index_version,
            time=at,
            question_saved=bool(saved),
        )

    def counts(self) -> dict[str, int]:
        """Judgements stored, by label."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT label, count(*) FROM judgements GROUP BY label"
                ).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(self.path, exc) from exc
        return {label: 0 for label in LABELS} | {str(k): int(n) for k, n in rows}

    def rows(self) -> list[tuple[str, str | None, str | None, str, str | None, str, str, float]]:
        """Every judgement: query_key, text, language, passage, doc_id, label, staff, time."""
        with self._lock:
            try:
                return self._conn.execute(
                    "SELECT j.query_key, q.text, coalesce(q.language, j.language), j.passage, "
                    "j.doc_id, j.label, j.staff, j.time FROM judgements j "
                    "JOIN questions q USING (query_key) ORDER BY j.time, j.id"
                ).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(self.path, exc) from exc


# -- export -------------------------------------------------------------------------------


@dataclass
class ExportReport:
    questions: int = 0  # judged questions in the store
    exported: int = 0  # written to queries.jsonl
    answerable: int = 0  # with at least one relevant document
    unanswerable: int = 0  # "none of these answers", nothing judged helpful
    negatives_only: int = 0  # only not-helpful passages: kept, not scored by `medcite eval`
    skipped_no_text: int = 0  # the text was never saved
    qrels: int = 0
    out: Path | None = None
    judgements: dict[str, int] = field(default_factory=dict)


def _grades(
    rows: list[tuple[str, str | None, str | None, str, str | None, str, str, float]],
) -> tuple[dict[str, dict[str, int]], set[str]]:
    """Per question: a grade per judged document, and the questions someone said none of
    the passages answers.

    A passage is relevant when more staff keys marked it helpful than not helpful (a tie:
    the latest mark decides); a document is relevant when any of its passages is."""
    votes: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    doc_of: dict[tuple[str, str], str] = {}
    none: set[str] = set()
    for key, _text, _lang, passage, doc_id, label, _staff, at in rows:
        if label == "none":
            none.add(key)
            continue
        votes[(key, passage)].append((at, label))
        doc_of[(key, passage)] = doc_id or ""
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    for (key, passage), marks in votes.items():
        helpful = sum(label == "helpful" for _, label in marks)
        unhelpful = len(marks) - helpful
        grade = int(helpful > unhelpful or (helpful == unhelpful and max(marks)[1] == "helpful"))
        doc = doc_of[(key, passage)]
        grades[key][doc] = max(grades[key].get(doc, 0), grade)
    return grades, none


def export_beir(store: FeedbackStore, out: Path) -> ExportReport:
    """Write ``queries.jsonl`` and ``qrels.tsv`` (BEIR; `medcite eval` takes them) to ``out``.

    Only questions whose text was saved are written; their id is the question's key. A
    question judged "none of these answers" with no passage judged helpful is written with
    ``"answerable": false`` (an abstention test case). Both files are replaced atomically."""
    rows = store.rows()
    grades, none = _grades(rows)
    text_of: dict[str, str | None] = {}
    lang_of: dict[str, str | None] = {}
    report = ExportReport(out=out)
    for key, text, lang, *_rest, label, _staff, _at in rows:
        text_of[key] = text
        lang_of[key] = lang
        report.judgements[label] = report.judgements.get(label, 0) + 1
    report.questions = len(text_of)
    queries: list[str] = []
    qrels: list[str] = []
    for key in text_of:
        text = text_of[key]
        if not text:
            report.skipped_no_text += 1
            continue
        docs = grades.get(key, {})
        answerable = any(g > 0 for g in docs.values())
        line: dict[str, object] = {"_id": key, "text": text}
        if lang_of[key]:
            line["metadata"] = {"language": lang_of[key]}
        if answerable:
            report.answerable += 1
        elif key in none:
            line["answerable"] = False
            report.unanswerable += 1
        else:
            report.negatives_only += 1
        queries.append(json.dumps(line, ensure_ascii=False))
        for doc, grade in sorted(docs.items()):
            qrels.append(f"{key}\t{doc}\t{grade}")
    report.exported = len(queries)
    report.qrels = len(qrels)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "queries.jsonl", "".join(q + "\n" for q in queries))
        _write_atomic(
            out / "qrels.tsv", "query-id\tcorpus-id\tscore\n" + "".join(q + "\n" for q in qrels)
        )
    except OSError as exc:
        raise FeedbackError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
    return report


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
