"""Paths and helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcite.service.testing import served

if TYPE_CHECKING:
    from medcite.index.lexicon import Lexicon

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"


def cache_dir() -> Path:
    """Where the converted default model and embedding cache live during tests."""
    return Path(os.environ.get("MEDCITE_TEST_CACHE") or Path.home() / ".cache" / "medcite")


def all_at_once(action: Callable[[], object], threads: int = 8) -> list[BaseException]:
    """Run ``action`` in ``threads`` threads released together; what each raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        try:
            action()
        except BaseException as exc:  # returned, not a thread warning
            errors.append(exc)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return errors


@contextmanager
def one_at_a_time(name: str) -> Iterator[None]:
    """Hold a machine-wide lock while the block runs: the test workers (pytest -n) never run
    two of these blocks at once (a Ray cluster each, which would fight over ports and CPUs)."""
    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / f"medcite-tests-{name}.lock"):
        yield


@contextmanager
def ray_cluster(nodes: int) -> Iterator[Any]:
    """A real Ray cluster of ``nodes`` nodes on this machine (one CPU and a 100 MB object store
    each), never two at once across test workers; shut down after the block.

    Started again once when a node does not come up: with other test workers busy, a raylet
    has failed to register ("The current node timed out during startup", no raylet log), for
    a reason not found. A likely one: Ray chooses its ports before its processes bind them,
    so a server another worker starts in between can take one; a second start chooses again."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"object_store_memory": 100 * 1024 * 1024, "num_cpus": 1}
    with one_at_a_time("ray"):
        for attempt in (1, 2):
            cluster = None
            try:
                cluster = Cluster(
                    initialize_head=True, head_node_args={**node, "include_dashboard": False}
                )
                for _ in range(nodes - 1):
                    cluster.add_node(**node)
                cluster.wait_for_nodes()
                break
            except Exception:
                if ray.is_initialized():
                    ray.shutdown()
                if cluster is not None:
                    cluster.shutdown()
                if attempt == 2:
                    raise
        assert cluster is not None
        try:
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


@cache
def shared_lexicon() -> Lexicon:
    """One tokenizer and CC-CEDICT expander for the whole test session (about 3 s to load):
    what an engine loads, shared by the tests' engines (the ``lexicon`` fixture)."""
    from medcite.index.lexicon import load_lexicon

    return load_lexicon(expand=True)


@contextmanager
def serve(env: dict[str, str], log: Path, timeout: float = 180) -> Iterator[str]:
    """``medcite serve`` in a subprocess on a free loopback port, until it is ready (the
    launcher the benches use, offline)."""
    with served({"HF_HUB_OFFLINE": "1", **env}, log, timeout) as server:
        yield server.base


# --- the shared tiny index (the fake embedder, two short articles) ---------------------------

TINY_DIM = 64
TINY_MODEL = f"hashing-{TINY_DIM}"  # the name HashingEmbedder(TINY_DIM) gives itself
TINY_ARTICLES = {
    "a.txt": "Back pain after miscarriage\n\nThe uterus contracts after a miscarriage. ",
    "b.txt": "Teeth\n\nBrush your teeth twice a day.\n",
}


def write_tiny_corpus(root: Path, extra: str = "") -> Path:
    """:data:`TINY_ARTICLES` in ``root``; ``extra`` continues a.txt's paragraph."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in TINY_ARTICLES.items():
        (root / name).write_text(text + extra if name == "a.txt" else text, encoding="utf-8")
    return root


def build_tiny_index(root: Path) -> Path:
    """The tiny corpus indexed with ``HashingEmbedder(TINY_DIM)`` and default build settings in
    ``root/index`` (its articles in ``root/corpus``); the index folder."""
    from medcite.index.build import BuildSettings, build_index
    from medcite.index.embed import HashingEmbedder
    from medcite.ingest import load

    out = root / "index"
    corpus = write_tiny_corpus(root / "corpus")
    build_index(
        load([corpus]),
        HashingEmbedder(TINY_DIM),
        index_dir=out,
        settings=BuildSettings(),
        cache=None,
    )
    return out


def tiny_settings(index_dir: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    """Service settings for the tiny index: the fake model, no abstention, then ``overrides``."""
    from medcite.service.settings import Settings

    return Settings(**{"index_dir": index_dir, "model": TINY_MODEL, "abstain": False} | overrides)


def tiny_engine(index_dir: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    """An engine on the tiny index with the fake embedder (settings as :func:`tiny_settings`)."""
    from medcite.index.embed import HashingEmbedder
    from medcite.index.store import load_index
    from medcite.service.engine import Engine

    embedder = HashingEmbedder(TINY_DIM)
    settings = tiny_settings(index_dir, **overrides)
    lexicon = shared_lexicon()
    return Engine(
        load_index(index_dir),
        embedder,
        settings.search(embedder.name),
        tokenizer=lexicon.tokenizer,
        expander=lexicon.expander,
    )


def hand_model(threshold: float = 0.5, question: dict[str, float] | None = None, **coef: float):  # type: ignore[no-untyped-def]
    """A hand-made relevance model: ``coef`` on raw candidate features for P(relevant |
    answerable) (``intercept`` among them), ``question`` likewise on the question features
    (``top:<feature>``, ``max5:<feature>``) for P(answerable); every embedding model gets it."""
    from medcite.index.relevance import FEATURES, QUESTION_FEATURES, Logistic, RelevanceModel

    def logistic(names: tuple[str, ...], given: dict[str, float]) -> Logistic:
        n = len(names)
        return Logistic(
            names,
            (0.0,) * n,
            (1.0,) * n,
            tuple(given.get(f, 0.0) for f in names),
            given.get("intercept", 0.0),
        )

    return RelevanceModel(
        logistic(FEATURES, coef),
        logistic(QUESTION_FEATURES, question or {"intercept": 20.0}),
        threshold,
    )


def write_relevance_model(
    path: Path, threshold: float = 0.5, question: dict[str, float] | None = None, **coef: float
) -> Path:
    """:func:`hand_model` as a MEDCITE_RELEVANCE_MODEL file."""
    import json

    model = hand_model(threshold, question, **coef)
    path.write_text(json.dumps({"models": {"intfloat/multilingual-e5-small": model.to_json()}}))
    return path


# --- PDFs built in the tests (reportlab) ---------------------------------------------------

HEADER = "Heart Health Review, Vol. 12"
HEADINGS = [None, "Salt and blood pressure", "Exercise"]
PAGES_EN = [
    [
        "High blood pressure often has no symptoms at all, so adults should have it",
        "measured at least once a year by a nurse or a doctor.",
        "A reading above 140 over 90 on two separate days is called hypertension.",
    ],
    [
        "Eating less salt lowers blood pressure within a few weeks. Adults should keep",
        "their salt below five grams a day, and most of it hides in bread and cheese.",
    ],
    [
        "Walking briskly for thirty minutes on most days lowers blood pressure and helps",
        "the heart. Swimming and cycling work as well as walking does.",
    ],
]


def build_pdf(
    pages: list[list[str]],
    *,
    headings: list[str | None] | None = None,
    header: str | None = HEADER,
    font: str = "Helvetica",
    title: str | None = None,
    author: str | None = None,
    encrypt: str | None = None,
) -> bytes:
    """A PDF with one text line per string, a running header, headings in 16 pt and the page
    number ("Page N of M") at the foot of every page."""
    from reportlab.pdfgen import canvas

    if font != "Helvetica":
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont(font))
    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=1, encrypt=encrypt)  # invariant: created 2000-01-01
    if title:
        c.setTitle(title)
    if author:
        c.setAuthor(author)
    for n, lines in enumerate(pages, start=1):
        if header:
            c.setFont(font, 9)
            c.drawString(72, 800, header)
        y = 760
        heading = (headings or [])[n - 1] if headings else None
        if heading:
            c.setFont(font, 16)
            c.drawString(72, y, heading)
            y -= 24
        c.setFont(font, 11)
        for line in lines:
            c.drawString(72, y, line)
            y -= 15
        c.setFont(font, 9)
        c.drawString(280, 40, f"Page {n} of {len(pages)}")
        c.showPage()
    c.save()
    return buf.getvalue()
