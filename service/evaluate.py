"""Retrieval evaluation on BEIR-format sets (trec_eval measures via ir-measures)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.errors import IndexMismatch, IndexNotFound, MedciteError
from index.fusion import FusionMethod
from index.store import check_compatible, load_index, read_manifest

if TYPE_CHECKING:
    from service.settings import Settings

LOG = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
METHODS: tuple[FusionMethod, ...] = ("bm25", "dense", "convex", "rrf")


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                queries[str(row["id"] if "id" in row else row["_id"])] = str(row["text"])
            except (ValueError, KeyError) as exc:
                raise MedciteError(f"{path}:{n}: not a query line ({exc})") from exc
    return queries


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
    corpus: Path, settings: Settings, index_dir: Path | None, *, progress: bool
) -> tuple[Path, Any]:
    """Reuse the index in ``index_dir`` when it matches corpus and settings; else build it."""
    from index.build import corpus_fingerprint
    from ingest import load
    from service.cli import run_ingest  # the same ingest as `medcite ingest`

    if index_dir is None:
        key = hashlib.sha256(str(corpus.resolve()).encode()).hexdigest()[:16]
        index_dir = settings.cache_dir / "eval" / key
    settings = settings.model_copy(update={"index_dir": index_dir})
    loaded = load([corpus])
    want = corpus_fingerprint(loaded)
    try:
        manifest = read_manifest(index_dir)
        if manifest["corpus"]["fingerprint"] != want:
            raise IndexMismatch("corpus changed")
        if (
            manifest["lexical"]["k1"] != settings.bm25_k1
            or manifest["lexical"]["b"] != settings.bm25_b
        ):
            raise IndexMismatch("BM25 parameters changed")
        if manifest["chunker"] != settings.chunking().as_dict():
            raise IndexMismatch("chunker changed")
        reuse = True
    except (IndexNotFound, IndexMismatch, KeyError) as exc:
        LOG.info("building the evaluation index in %s (%s)", index_dir, exc)
        reuse = False
    if not reuse:
        run_ingest([corpus], settings, quiet=not progress)
    return index_dir, settings


def evaluate(
    corpus: Path,
    queries_path: Path,
    qrels_path: Path,
    *,
    settings: Settings,
    index_dir: Path | None = None,
    methods: Sequence[str] = ("convex",),
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    import ir_measures
    from ir_measures import RR, R, nDCG

    from index.cache import EmbeddingCache, embed_cached
    from index.embed import load_embedder, set_threads
    from index.search import rank_documents
    from ingest.language import detect_language

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MedciteError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    qrels = load_qrels(qrels_path)
    queries = {q: t for q, t in load_queries(queries_path).items() if q in qrels and t.strip()}
    if limit is not None:
        queries = dict(list(queries.items())[:limit])
    if not queries:
        raise MedciteError("no query has a relevance judgement: nothing to evaluate")
    index_dir, settings = ensure_index(corpus, settings, index_dir, progress=progress)
    set_threads(settings.threads)
    embedder = load_embedder(settings.model, cache_dir=settings.cache_dir)
    index = load_index(index_dir)
    check_compatible(index.manifest, model_name=embedder.name, dim=embedder.dim)
    qids = list(queries)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    bar = _bar(len(qids), "queries", progress)
    try:
        qvecs, _ = embed_cached(
            embedder,
            [queries[q] for q in qids],
            kind="query",
            cache=cache,
            progress=lambda n: bar.update(n),
        )
    finally:
        bar.close()
        cache.close()
    base = settings.search(embedder.name)
    languages = {q: detect_language(queries[q]) for q in qids}
    report: dict[str, Any] = {
        "queries": len(qids),
        "documents": index.manifest["counts"]["documents"],
        "chunks": index.manifest["counts"]["chunks"],
        "index_dir": str(index_dir),
        "methods": {},
    }
    measures = {"ndcg@10": nDCG @ 10, "recall@10": R @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10}

    def score(sub: list[str], run: dict[str, dict[str, float]]) -> dict[str, float]:
        values = ir_measures.calc_aggregate(
            list(measures.values()), {q: qrels[q] for q in sub}, {q: run[q] for q in sub}
        )
        # A query with nothing retrieved counts as 0, as in BEIR.
        return {name: round(float(values.get(m, 0.0)), 4) for name, m in measures.items()}

    for method in methods:
        run_settings = dataclasses.replace(base, fusion=method)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        run: dict[str, dict[str, float]] = {}
        for i, q in enumerate(qids):
            ranked = rank_documents(index, qvecs[i], queries[q], k=100, settings=run_settings)
            # trec_eval orders by score (ties by doc id): rank-based scores keep our order.
            run[q] = {doc: float(len(ranked) - r) for r, (doc, _) in enumerate(ranked)}
        seconds = time.perf_counter() - t0
        entry: dict[str, Any] = score(qids, run)
        per_language: dict[str, Any] = {}
        for lang in sorted(set(languages.values())):
            sub = [q for q in qids if languages[q] == lang]
            per_language[lang] = {"queries": len(sub)} | score(sub, run)
        entry["per_language"] = per_language
        entry["ms_per_query"] = round(1000 * seconds / len(qids), 2)
        report["methods"][method] = entry
    first = report["methods"][methods[0]]
    report.update({m: first[m] for m in METRICS})
    report["per_language"] = first["per_language"]
    report["method"] = methods[0]
    return report
