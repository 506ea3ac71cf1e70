"""Retrieval evaluation on BEIR-format sets (trec_eval measures via ir-measures)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medcite.index.embed import Embedder
from medcite.index.errors import IndexMismatch, IndexNotFound, MedciteError
from medcite.index.fusion import FusionMethod
from medcite.index.manifest import ManifestInvalid, check_compatible
from medcite.index.store import LoadedIndex, current_version, load_index, read_manifest

if TYPE_CHECKING:
    from medcite.index.lexicon import Lexicon
    from medcite.index.retrieve import Backend
    from medcite.index.search import SearchSettings
    from medcite.service.settings import Settings

LOG = logging.getLogger(__name__)

# Our metric names -> trec_eval measures as ir-measures spells them.
IR_MEASURES = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "RR@10"}
METRICS = tuple(IR_MEASURES)
METHODS: tuple[FusionMethod, ...] = ("bm25", "dense", "convex", "rrf")


@dataclass(frozen=True)
class QuerySet:
    """Queries by id, those marked unanswerable, and judgements given inline.

    A query line may carry ``"relevant": [ids]`` (the seed development set's form): an
    empty list marks it unanswerable, a non-empty one judges those ids relevant.
    """

    texts: dict[str, str]
    unanswerable: set[str]
    inline_qrels: dict[str, dict[str, int]]


def load_queries(path: Path) -> QuerySet:
    texts: dict[str, str] = {}
    unanswerable: set[str] = set()
    inline: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qid = str(row["id"] if "id" in row else row["_id"])
                texts[qid] = str(row["text"])
                relevant = row.get("relevant")
                if relevant is not None and not isinstance(relevant, list):
                    raise TypeError('"relevant" must be a list of ids')
            except (ValueError, KeyError, TypeError) as exc:
                raise MedciteError(f"{path}:{n}: not a query line ({exc})") from exc
            if row.get("answerable") is False or relevant == []:
                unanswerable.add(qid)
            elif relevant:
                inline[qid] = {str(d): 1 for d in relevant}
    return QuerySet(texts, unanswerable, inline)


def write_trec_run(path: Path, run: dict[str, dict[str, float]], tag: str) -> None:
    """TREC run format: ``qid Q0 docid rank score tag``, best first."""
    with path.open("w", encoding="utf-8") as fh:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: -kv[1])
            for rank, (doc, score) in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def compare_runs(
    run_a: Path, run_b: Path, qrels_path: Path, *, metric: str = "ndcg@10"
) -> dict[str, Any]:
    """Paired comparison of two TREC runs on the same qrels (two-sided paired t-test)."""
    import ir_measures
    from scipy import stats

    measure = ir_measures.parse_measure(IR_MEASURES[metric])
    qrels = load_qrels(qrels_path)
    values = []
    for path in (run_a, run_b):
        try:
            run = ir_measures.read_trec_run(str(path))  # type: ignore[no-untyped-call]
            per_query = {
                m.query_id: float(m.value) for m in ir_measures.iter_calc([measure], qrels, run)
            }
        except (OSError, ValueError) as exc:
            raise MedciteError(f"cannot read run {path}: {exc}") from exc
        values.append(per_query)
    qids = sorted(set(qrels))
    a = [values[0].get(q, 0.0) for q in qids]
    b = [values[1].get(q, 0.0) for q in qids]
    test = stats.ttest_rel(b, a)
    return {
        "metric": metric,
        "queries": len(qids),
        "a": round(sum(a) / len(qids), 4),
        "b": round(sum(b) / len(qids), 4),
        "delta": round((sum(b) - sum(a)) / len(qids), 4),
        "b_better": sum(y > x for x, y in zip(a, b, strict=True)),
        "a_better": sum(x > y for x, y in zip(a, b, strict=True)),
        "p_value": None if test.pvalue != test.pvalue else round(float(test.pvalue), 6),
    }


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id, corpus-id, score`` (TSV with header); only score > 0 is kept."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (n == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue
            try:
                qid, did, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise MedciteError(f"{path}:{n}: not a qrels line ({exc})") from exc
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    return qrels


def _bar(total: int, label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, file=sys.stderr, disable=not enabled)


def ensure_index(
    corpus: Path,
    settings: Settings,
    index_dir: Path | None,
    *,
    embedder: Embedder,
    progress: bool,
    backend: Backend | None = None,
) -> Path:
    """Reuse the index in ``index_dir`` when it matches corpus, model and settings; else
    build it there with the same code as ``medcite ingest``."""
    from medcite.index.build import corpus_fingerprint
    from medcite.ingest import load
    from medcite.service.pipeline import run_ingest  # the same ingest as `medcite ingest`

    if index_dir is None:
        key = hashlib.sha256(str(corpus.resolve()).encode()).hexdigest()[:16]
        index_dir = settings.cache_dir / "eval" / key
    settings = settings.model_copy(update={"index_dir": index_dir})
    loaded = load([corpus], follow_external_symlinks=settings.follow_external_symlinks)
    want = corpus_fingerprint(loaded)
    try:
        check_compatible(
            read_manifest(index_dir),
            model_name=embedder.name,
            dim=embedder.dim,
            build=settings.build(),
            fingerprint=want,
        )
        reuse = True
    except (IndexNotFound, IndexMismatch, ManifestInvalid) as exc:
        LOG.info("building the evaluation index in %s (%s)", index_dir, exc)
        reuse = False
    if not reuse:
        run_ingest(
            [corpus],
            settings,
            quiet=not progress,
            loaded=loaded,
            embedder=embedder,
            backend=backend,
        )
    return index_dir


def _judged_unit(
    index: LoadedIndex, qrels: dict[str, dict[str, int]]
) -> Callable[[str], str] | None:
    """``None`` when judgements name documents; a doc id -> source file map when they name
    the source files the documents came from (the seed development set judges files)."""
    judged = {d for docs in qrels.values() for d in docs}
    source_of = {doc_id: doc.source for doc_id, doc in index.documents.items()}
    sources = set(source_of.values())
    # A page split into several documents keeps its file name as the first one's id, so
    # judging files is told apart by *every* judged id being a file the index holds.
    if judged <= sources:
        return source_of.__getitem__
    return None


def expected_calibration_error(
    probabilities: Sequence[float], labels: Sequence[int], bins: int = 10
) -> float | None:
    """ECE: |mean P - share relevant| per equal-width bin, weighted by the bin's size."""
    if not probabilities:
        return None
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += abs(float(p[mask].mean()) - float(y[mask].mean())) * int(mask.sum())
    return round(total / p.size, 4)


def evaluate(
    corpus: Path,
    queries_path: Path,
    qrels_path: Path | None,
    *,
    settings: Settings,
    index_dir: Path | None = None,
    methods: Sequence[str] = ("convex",),
    limit: int | None = None,
    progress: bool = False,
    run_file: Path | None = None,
    gate: bool = True,
) -> dict[str, Any]:
    """Score what ``/search`` returns (``gate``: the default), or the ranking alone.

    With the gate, every query goes through :func:`index.search.search` with k=10, exactly
    as ``POST /search`` runs it (relevance model, abstention, other-language rule,
    de-duplication, per-document limit); an abstention scores 0, and the answered rate on
    answerable queries is reported beside the metrics."""
    from medcite.index.embed import load_embedder, set_threads
    from medcite.index.lexicon import load_lexicon

    _check_methods(methods)
    queries, unanswerable, qrels = _questions_to_score(queries_path, qrels_path, limit)
    embedder = load_embedder(settings.model, cache_dir=settings.cache_dir, runtime=settings.runtime)
    backend = settings.backend()
    try:
        index_dir = ensure_index(
            corpus, settings, index_dir, embedder=embedder, progress=progress, backend=backend
        )
        set_threads(settings.threads)
        return evaluate_loaded(
            _load_published(index_dir, backend),
            embedder,
            queries,
            unanswerable,
            qrels,
            settings,
            methods,
            lexicon=load_lexicon(expand=any(m.endswith("+expand") for m in methods)),
            progress=progress,
            run_file=run_file,
            gate=gate,
        )
    finally:
        if backend is not None:
            backend.close()


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m.removesuffix("+expand") not in METHODS]
    if unknown:
        raise MedciteError(
            f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}, "
            "each optionally with +expand (cross-lingual query expansion)"
        )


def _questions_to_score(
    queries_path: Path, qrels_path: Path | None, limit: int | None
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """The judged questions and the unanswerable ones (non-blank, at most ``limit`` of each),
    and the judgements: from ``qrels_path``, else given inline in the queries file."""
    query_set = load_queries(queries_path)
    all_queries, unanswerable_ids = query_set.texts, query_set.unanswerable
    if qrels_path is not None:
        qrels = load_qrels(qrels_path)
    elif query_set.inline_qrels:
        qrels = query_set.inline_qrels
    else:
        raise MedciteError('no judgements: give --qrels, or "relevant" lists in the queries file')
    queries = {q: t for q, t in all_queries.items() if q in qrels and t.strip()}
    unanswerable = {q: all_queries[q] for q in sorted(unanswerable_ids) if all_queries[q].strip()}
    if limit is not None:
        queries = dict(list(queries.items())[:limit])
        unanswerable = dict(list(unanswerable.items())[:limit])
    if not queries:
        raise MedciteError("no query has a relevance judgement: nothing to evaluate")
    return queries, unanswerable, qrels


def _load_published(index_dir: Path, backend: Backend | None) -> LoadedIndex:
    """Load the index, first publishing its files to ``backend`` when they were reused but
    this Milvus has no collection for them yet."""
    try:
        return load_index(index_dir, backend=backend)
    except IndexNotFound:
        if backend is None:
            raise
        version = current_version(index_dir)
        backend.publish(index_dir / str(version))
        return load_index(index_dir, backend=backend)


GATED_K = 10  # passages asked of /search per query when scoring through the gate
UNGATED_K = 100  # documents ranked per query when scoring the ranking alone


@dataclass(frozen=True)
class _Searcher:
    """What every question of an evaluation runs against; ``unit`` as :func:`_judged_unit`."""

    index: LoadedIndex
    embedder: Embedder
    lexicon: Lexicon
    unit: Callable[[str], str] | None


@dataclass(frozen=True)
class _Questions:
    """The judged questions by id, the unanswerable ones' texts, a query vector for each
    (row ``i`` for the ``i``-th) and the language of each judged one."""

    texts: dict[str, str]
    vectors: np.ndarray
    unanswerable: list[str]
    unanswerable_vectors: np.ndarray
    languages: dict[str, str]


@dataclass(frozen=True)
class _MethodRun:
    """One method's ranking per question (scores in rank order, as trec_eval reads them);
    through the gate also whether each question was answered and, for every passage
    returned, its P(relevant) and whether it is judged relevant."""

    run: dict[str, dict[str, float]]
    answered: dict[str, bool] = dataclasses.field(default_factory=dict)
    probabilities: tuple[float, ...] = ()
    labels: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Scorer:
    """trec_eval measures of a run, averaged over some of the judged questions."""

    measures: dict[str, Any]  # our metric name -> ir-measures measure
    qrels: dict[str, dict[str, int]]
    blank: tuple[str, ...]  # metrics reported as None (not measurable at this depth)

    def __call__(self, qids: list[str], run: dict[str, dict[str, float]]) -> dict[str, Any]:
        import ir_measures

        per_query: dict[tuple[str, str], float] = {}
        for m in ir_measures.iter_calc(
            list(self.measures.values()),
            {q: self.qrels[q] for q in qids},
            {q: run[q] for q in qids},
        ):
            per_query[(str(m.measure), m.query_id)] = float(m.value)
        # A query with nothing retrieved (or abstained on) counts as 0, as in BEIR.
        out: dict[str, Any] = {
            name: round(sum(per_query.get((str(m), q), 0.0) for q in qids) / len(qids), 4)
            for name, m in self.measures.items()
        }
        return out | dict.fromkeys(self.blank)


def _scorer(qrels: dict[str, dict[str, int]], gate: bool) -> _Scorer:
    import ir_measures

    measures = {name: ir_measures.parse_measure(spec) for name, spec in IR_MEASURES.items()}
    if gate:
        measures.pop("recall@100")  # /search returns GATED_K passages
        return _Scorer(measures, qrels, blank=("recall@100",))
    return _Scorer(measures, qrels, blank=())


def _embed_questions(
    searcher: _Searcher,
    queries: dict[str, str],
    unanswerable: dict[str, str],
    cache_dir: Path,
    progress: bool,
) -> _Questions:
    """Embed every question (through the embedding cache), measure the index's probe levels
    with the same cache, and tell each judged question's language."""
    from medcite.index.cache import EmbeddingCache, embed_cached
    from medcite.index.search import ensure_probe_levels
    from medcite.ingest.language import detect_language

    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    bar = _bar(len(queries) + len(unanswerable), "queries", progress)
    try:
        vectors, _ = embed_cached(
            searcher.embedder,
            list(queries.values()) + list(unanswerable.values()),
            kind="query",
            cache=cache,
            progress=lambda n: bar.update(n),
        )
        ensure_probe_levels(searcher.index, searcher.embedder, cache)
    finally:
        bar.close()
        cache.close()
    n = len(queries)
    return _Questions(
        texts=queries,
        vectors=vectors[:n],
        unanswerable=list(unanswerable.values()),
        unanswerable_vectors=vectors[n:],
        languages={q: detect_language(text) for q, text in queries.items()},
    )


def _doc_order(docs: list[str], unit: Callable[[str], str] | None) -> dict[str, float]:
    """trec_eval orders by score (ties by doc id): rank-based scores keep our order."""
    unique = list(dict.fromkeys(unit(d) if unit is not None else d for d in docs))
    return {doc: float(len(unique) - r) for r, doc in enumerate(unique)}


def _run_gated(
    searcher: _Searcher,
    questions: _Questions,
    settings: SearchSettings,
    qrels: dict[str, dict[str, int]],
) -> _MethodRun:
    """Every question through ``search`` with k=GATED_K, exactly as ``POST /search``."""
    from medcite.index.search import search

    run: dict[str, dict[str, float]] = {}
    answered: dict[str, bool] = {}
    probabilities: list[float] = []
    labels: list[int] = []
    for i, (q, text) in enumerate(questions.texts.items()):
        result = search(
            searcher.index,
            searcher.embedder,
            text,
            k=GATED_K,
            settings=settings,
            lexicon=searcher.lexicon,
            query_vector=questions.vectors[i],
        )
        answered[q] = result.answerable
        run[q] = _doc_order([h.chunk.doc_id for h in result.hits], searcher.unit)
        for hit in result.hits:
            doc = hit.chunk.doc_id if searcher.unit is None else searcher.unit(hit.chunk.doc_id)
            probabilities.append(hit.score)
            labels.append(int(qrels[q].get(doc, 0) > 0))
    return _MethodRun(run, answered, tuple(probabilities), tuple(labels))


def _run_ungated(
    searcher: _Searcher, questions: _Questions, settings: SearchSettings
) -> _MethodRun:
    """Every question's ranking alone: the top UNGATED_K judged units, no abstention."""
    from medcite.index.search import rank_documents

    run: dict[str, dict[str, float]] = {}
    for i, (q, text) in enumerate(questions.texts.items()):
        ranked = rank_documents(
            searcher.index,
            searcher.embedder,
            questions.vectors[i],
            text,
            k=UNGATED_K,
            settings=settings,
            lexicon=searcher.lexicon,
            unit=searcher.unit,
        )
        run[q] = _doc_order([doc for doc, _ in ranked], searcher.unit)
    return _MethodRun(run)


def _answered_rate(answered: dict[str, bool], qids: list[str]) -> float:
    return round(sum(answered[q] for q in qids) / len(qids), 4)


def _abstention(
    searcher: _Searcher, questions: _Questions, settings: SearchSettings
) -> dict[str, Any]:
    """How many unanswerable questions ``search`` abstains on."""
    from medcite.index.search import search

    texts = questions.unanswerable
    abstained = sum(
        not search(
            searcher.index,
            searcher.embedder,
            text,
            k=1,
            settings=settings,
            lexicon=searcher.lexicon,
            query_vector=questions.unanswerable_vectors[j],
        ).answerable
        for j, text in enumerate(texts)
    )
    return {
        "unanswerable_queries": len(texts),
        "abstained": abstained,
        "rate": round(abstained / len(texts), 4),
    }


def _gate_measures(
    searcher: _Searcher, questions: _Questions, settings: SearchSettings, result: _MethodRun
) -> dict[str, Any]:
    """Answered rate, calibration of P(relevant) (ECE) and, given unanswerable questions,
    the abstention on them."""
    out: dict[str, Any] = {
        "answered": _answered_rate(result.answered, list(questions.texts)),
        "ece": (
            expected_calibration_error(result.probabilities, result.labels)
            if settings.relevance is not None
            else None
        ),
    }
    if questions.unanswerable:
        out["abstention"] = _abstention(searcher, questions, settings)
    return out


def _per_language(
    questions: _Questions, result: _MethodRun, score: _Scorer, gate: bool
) -> dict[str, Any]:
    """The measures (and through the gate the answered rate) per question language."""
    out: dict[str, Any] = {}
    for lang in sorted(set(questions.languages.values())):
        sub = [q for q in questions.texts if questions.languages[q] == lang]
        out[lang] = {"queries": len(sub)} | score(sub, result.run)
        if gate:
            out[lang]["answered"] = _answered_rate(result.answered, sub)
    return out


def _method_settings(base: SearchSettings, method: str) -> SearchSettings:
    """``base`` with the method's fusion and, for ``<fusion>+expand``, query expansion."""
    return dataclasses.replace(
        base,
        fusion=method.removesuffix("+expand"),  # type: ignore[arg-type]
        expand=method.endswith("+expand"),
    )


def _evaluate_method(
    searcher: _Searcher,
    questions: _Questions,
    settings: SearchSettings,
    qrels: dict[str, dict[str, int]],
    score: _Scorer,
    gate: bool,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One method's run and its report entry: the measures, through the gate the answered
    rate, ECE and abstention, the measures per language and the time per question."""
    qids = list(questions.texts)
    t0 = time.perf_counter()
    if gate:
        result = _run_gated(searcher, questions, settings, qrels)
    else:
        result = _run_ungated(searcher, questions, settings)
    seconds = time.perf_counter() - t0
    entry: dict[str, Any] = score(qids, result.run)
    if gate:
        entry |= _gate_measures(searcher, questions, settings, result)
    entry["per_language"] = _per_language(questions, result, score, gate)
    entry["ms_per_query"] = round(1000 * seconds / len(qids), 2)
    return result.run, entry


def _run_path(run_file: Path, method: str, n_methods: int) -> Path:
    """``run_file`` itself for one method, else ``run.<method>.txt`` beside it."""
    return run_file if n_methods == 1 else run_file.with_suffix(f".{method}{run_file.suffix}")


def _report_header(
    index: LoadedIndex, n_queries: int, judged_sources: bool, base: SearchSettings, gate: bool
) -> dict[str, Any]:
    return {
        "queries": n_queries,
        "documents": index.manifest.counts.documents,
        "chunks": index.manifest.counts.chunks,
        "index_dir": str(index.path.parent),
        "unit": "source" if judged_sources else "document",
        "gate": gate,
        "k": GATED_K if gate else UNGATED_K,
        "min_relevance": base.threshold if gate else None,
        "methods": {},
    }


def _headline(report: dict[str, Any], method: str) -> dict[str, Any]:
    """The first method's numbers repeated at the top of ``report``."""
    first = report["methods"][method]
    report.update({m: first[m] for m in METRICS})
    for key in ("answered", "ece", "abstention"):
        if key in first:
            report[key] = first[key]
    report["per_language"] = first["per_language"]
    report["method"] = method
    return report


def evaluate_loaded(
    index: LoadedIndex,
    embedder: Embedder,
    queries: dict[str, str],
    unanswerable: dict[str, str],
    qrels: dict[str, dict[str, int]],
    settings: Settings,
    methods: Sequence[str],
    *,
    lexicon: Lexicon,
    progress: bool = False,
    run_file: Path | None = None,
    gate: bool = True,
) -> dict[str, Any]:
    """Score each of ``methods`` on the judged ``queries`` (through the gate, or the ranking
    alone) and, through the gate, its abstention on ``unanswerable``; the first method's
    numbers are repeated at the top of the report."""
    check_compatible(index.manifest, model_name=embedder.name, dim=embedder.dim)
    searcher = _Searcher(index, embedder, lexicon, _judged_unit(index, qrels))
    questions = _embed_questions(searcher, queries, unanswerable, settings.cache_dir, progress)
    base = settings.search(embedder.name)
    report = _report_header(index, len(queries), searcher.unit is not None, base, gate)
    score = _scorer(qrels, gate)
    for method in methods:
        run_settings = _method_settings(base, method)
        run, entry = _evaluate_method(searcher, questions, run_settings, qrels, score, gate)
        report["methods"][method] = entry
        if run_file is not None:
            path = _run_path(run_file, method, len(methods))
            write_trec_run(path, run, tag=f"medcite-{method}")
            entry["run_file"] = str(path)
    return _headline(report, methods[0])
