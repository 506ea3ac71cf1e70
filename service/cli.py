"""The ``medcite`` command. Heavy libraries are imported inside the commands."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from medcite.index.errors import MedciteError
from medcite.service.pipeline import run_ingest
from medcite.service.settings import Settings

LOG = logging.getLogger(__name__)

INDEX_DIR = click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Index directory (default: MEDCITE_INDEX_DIR, else ~/.local/share/medcite/index).",
)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic ValidationError from a bad env var or option
        raise click.ClickException(f"invalid settings: {exc}") from exc


def _pin_threads(n: int) -> None:
    """Must run before torch/faiss load: OpenMP reads these at start-up."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Domain errors become one line on stderr and exit code 2."""
    try:
        yield
    except MedciteError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def main(verbose: bool) -> None:
    """medcite: cited passages from medical articles for health questions."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@INDEX_DIR
@click.option(
    "--model", default=None, help="Embedding model (default: offline multilingual-e5-small)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where passages are embedded: this process, or a Ray cluster (medcite[scale]).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster address (ray://host:10001 or host:6379); default RAY_ADDRESS, else a "
    "local Ray started for this run.",
)
@click.option("--workers", type=int, default=2, show_default=True, help="Ray embedding actors.")
@click.option(
    "--follow-symlinks",
    is_flag=True,
    default=None,
    help="Follow symbolic links that lead outside the corpus folder (default: skip and "
    "report them; MEDCITE_FOLLOW_EXTERNAL_SYMLINKS).",
)
def ingest(
    paths: tuple[Path, ...],
    index_dir: Path | None,
    model: str | None,
    as_json: bool,
    engine: str,
    address: str | None,
    workers: int,
    follow_symlinks: bool | None,
) -> None:
    """Read articles (.txt .md .html .pdf .docx, BEIR corpus.jsonl) and build the index."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.BadParameter(f"no such file or directory: {', '.join(missing)}")
    settings = _settings(index_dir=index_dir, model=model, follow_external_symlinks=follow_symlinks)
    with _domain_errors():
        embedder = None
        chunker = None
        if engine == "ray":
            from medcite.index.embed import load_embedder
            from medcite.index.ray_embed import RayEmbedder

            embedder = RayEmbedder(
                load_embedder(settings.model, cache_dir=settings.cache_dir),
                model=settings.model,
                cache_dir=settings.cache_dir,
                address=address,
                workers=workers,
                batch_size=settings.embed_batch_size,
            )
            chunker = embedder.chunk_documents
            # One Ray job per 1,024 uncached passages (the cache is written after each).
            settings = settings.model_copy(update={"embed_batch_size": 1024})
        report = run_ingest(list(paths), settings, embedder=embedder, chunker=chunker)
    rate = report.embedded / report.embed_seconds if report.embedded and report.embed_seconds else 0
    if as_json:
        click.echo(
            json.dumps(
                {
                    "index": str(report.path),
                    "files": [r.__dict__ for r in report.reports],
                    "documents": report.documents,
                    "chunks": report.chunks,
                    "sentences": report.sentences,
                    "embedded": report.embedded,
                    "reused": report.reused,
                    "seconds": round(report.seconds, 2),
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        return
    for r in report.reports:
        if r.status != "ingested" or r.reason:
            click.echo(f"{r.status:>8}  {r.path}: {r.reason}", err=True)
    ok = sum(r.status == "ingested" for r in report.reports)
    click.echo(
        f"indexed {ok}/{report.files} files, {report.documents} documents, {report.chunks} "
        f"passages, {report.sentences} sentences ({report.embedded} texts embedded, "
        f"{report.reused} from cache"
        + (f", {rate:.1f} texts/s" if rate else "")
        + f") in {report.seconds:.1f}s -> {settings.index_dir}"
    )


@main.command()
@click.argument("query")
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--language", type=click.Choice(["zh", "en"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON as POST /search.")
@INDEX_DIR
def search(query: str, k: int, language: str | None, as_json: bool, index_dir: Path | None) -> None:
    """Search the index and print cited passages."""
    _pin_threads(1)
    settings = _settings(index_dir=index_dir)
    from medcite.service.engine import load_engine
    from medcite.service.schemas import to_response

    with _domain_errors():
        engine = load_engine(settings)
        t0 = time.perf_counter()
        result = engine.search(query, k=k, language=language)
        response = to_response(result, engine.index, (time.perf_counter() - t0) * 1000)
    if as_json:
        click.echo(response.model_dump_json(indent=1))
        return
    if response.urgent_notice:
        click.echo(f"!! {response.urgent_notice}\n")
    if not response.answerable:
        click.echo(response.message)
    for p in response.passages:
        byline = ", ".join(x for x in (p.author, p.institution, p.date) if x)
        click.echo(f"[{p.rank}] {p.title}" + (f" — {byline}" if byline else ""))
        where = f"{p.source} [{p.start}:{p.end}]" + _page_label(p.page_start, p.page_end)
        click.echo(f"    {where}" + (f" § {p.section}" if p.section else ""))
        click.echo("    " + " ".join(p.text.split())[:400])
    click.echo(f"\n{response.disclaimer}")


def _page_label(first: int | None, last: int | None) -> str:
    """The pages of a PDF passage, " p. 3" or " pp. 3-4"; "" for other sources."""
    if first is None:
        return ""
    return f" p. {first}" if last in (None, first) else f" pp. {first}-{last}"


@main.command()
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Proxies whose X-Forwarded-For is believed, comma-separated IPs or networks, '*' "
    "for any (default: MEDCITE_FORWARDED_ALLOW_IPS, else none: the client is the peer).",
)
@INDEX_DIR
def serve(
    host: str | None, port: int | None, forwarded_allow_ips: str | None, index_dir: Path | None
) -> None:
    """Serve the API (builds the index from corpus/ first when there is none)."""
    _pin_threads(1)
    settings = _settings(
        index_dir=index_dir, host=host, port=port, forwarded_allow_ips=forwarded_allow_ips
    )
    import uvicorn

    from medcite.index.store import current_version
    from medcite.service.app import create_app
    from medcite.service.engine import load_engine
    from medcite.service.server import server_config

    with _domain_errors():
        if current_version(settings.index_dir) is None:
            if settings.corpus_dir is None:
                raise click.ClickException(
                    f"no index in {settings.index_dir} and no corpus/ to build one from: "
                    "run `medcite ingest PATH` first"
                )
            click.echo(f"no index yet: building one from {settings.corpus_dir}", err=True)
            run_ingest([settings.corpus_dir], settings)
        engine = load_engine(settings)
    click.echo(f"serving on http://{settings.host}:{settings.port} (API docs at /docs)", err=True)
    from medcite.service.ops import configure_logging

    configure_logging(json_logs=settings.log_json)
    config = server_config(
        create_app(settings, engine=engine),
        host=settings.host,
        port=settings.port,
        limits=settings.server_limits(),
    )
    uvicorn.Server(config).run()


@main.command(name="eval")
@click.option("--corpus", "corpus", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--queries", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--qrels",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Judgements (BEIR qrels.tsv). Optional when query lines carry "relevant" lists.',
)
@INDEX_DIR
@click.option(
    "--methods",
    default=None,
    help="Comma-separated retrievers to score side by side: bm25,dense,convex,rrf, each "
    "optionally with +expand (cross-lingual query expansion); default: the configured one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N queries.")
@click.option(
    "--run-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the ranking as a TREC run (one file per method when several).",
)
@click.option(
    "--no-gate",
    is_flag=True,
    help="Score the ranking alone (top 100 documents, no abstention, no relevance model) "
    "instead of what /search returns.",
)
def eval_command(
    corpus: Path,
    queries: Path,
    qrels: Path | None,
    index_dir: Path | None,
    methods: str | None,
    as_json: bool,
    limit: int | None,
    run_file: Path | None,
    no_gate: bool,
) -> None:
    """Score what /search returns on a BEIR-format set: answered rate, nDCG@10, Recall@10,
    MRR@10, calibration error; with --no-gate the ranking alone (and Recall@100).

    --corpus is a BEIR corpus.jsonl or any folder `medcite ingest` takes. Queries marked
    "answerable": false (or with an empty "relevant" list) are scored for abstention.
    When the judgements name source files rather than documents, files are ranked.
    """
    _pin_threads(1)
    settings = _settings(index_dir=index_dir)
    from medcite.service.evaluate import evaluate

    default = settings.fusion + ("+expand" if settings.expand else "")
    method_list = [m.strip() for m in (methods or default).split(",") if m.strip()]
    with _domain_errors():
        report = evaluate(
            corpus,
            queries,
            qrels,
            settings=settings,
            index_dir=index_dir,
            methods=method_list,
            limit=limit,
            progress=sys.stderr.isatty(),
            run_file=run_file,
            gate=not no_gate,
        )
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
        return
    what = (
        f"through /search (k={report['k']}, min relevance {report['min_relevance']})"
        if report["gate"]
        else "ranking only, no gate"
    )
    click.echo(f"{report['queries']} queries, {report['documents']} documents, {what}")

    def cell(value: float | None) -> str:
        return f"{value:>8.4f}" if value is not None else f"{'-':>8}"

    click.echo(
        f"{'method':<14} {'answered':>8} {'nDCG@10':>8} {'R@10':>8} {'R@100':>8} "
        f"{'MRR@10':>8} {'ECE':>8}"
    )
    for name, m in report["methods"].items():
        click.echo(
            f"{name:<14} {cell(m.get('answered'))} {cell(m['ndcg@10'])} {cell(m['recall@10'])} "
            f"{cell(m['recall@100'])} {cell(m['mrr@10'])} {cell(m.get('ece'))}"
        )
        if "abstention" in m:
            a = m["abstention"]
            click.echo(
                f"{'':<14} abstained on {a['abstained']}/{a['unanswerable_queries']} "
                f"unanswerable queries ({a['rate']:.2%})"
            )


@main.command()
@click.argument("run_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--qrels", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--metric",
    default="ndcg@10",
    show_default=True,
    type=click.Choice(["ndcg@10", "recall@10", "recall@100", "mrr@10"]),
)
@click.option("--json", "as_json", is_flag=True)
def compare(run_a: Path, run_b: Path, qrels: Path, metric: str, as_json: bool) -> None:
    """Compare two TREC runs per query (paired two-sided t-test): is B better than A?"""
    from medcite.service.evaluate import compare_runs

    with _domain_errors():
        result = compare_runs(run_a, run_b, qrels, metric=metric)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(
        f"{metric} over {result['queries']} queries: A {result['a']:.4f}, B {result['b']:.4f}, "
        f"delta {result['delta']:+.4f}, p = {result['p_value']} "
        f"(B better on {result['b_better']}, A better on {result['a_better']})"
    )


@main.group()
def judgements() -> None:
    """Staff judgements given on the search page (POST /feedback)."""


@judgements.command(name="export")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for queries.jsonl and qrels.tsv (replaced if present).",
)
@click.option(
    "--feedback-path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The feedback store (default: MEDCITE_FEEDBACK_PATH, else "
    "~/.local/share/medcite/feedback.sqlite).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def export_judgements(out: Path, feedback_path: Path | None, as_json: bool) -> None:
    """Write the judgements as a BEIR set (queries.jsonl + qrels.tsv) for `medcite eval`.

    Only questions whose text was saved (as a test case, or with MEDCITE_LOG_QUERIES) are
    written; helpful is grade 1, not helpful 0, and "none of these answers" with nothing
    helpful is a query with "answerable": false.
    """
    from medcite.service.feedback import FeedbackStore, export_beir

    settings = _settings(feedback_path=feedback_path)
    with _domain_errors():
        store = FeedbackStore(settings.feedback_path, readonly=True)
        try:
            report = export_beir(store, out)
        finally:
            store.close()
    if as_json:
        summary = {k: v for k, v in report.__dict__.items() if k != "out"}
        click.echo(json.dumps(summary | {"out": str(out)}, indent=1))
        return
    click.echo(
        f"exported {report.exported} of {report.questions} judged questions to {out} "
        f"({report.answerable} answerable, {report.unanswerable} unanswerable, "
        f"{report.negatives_only} with only not-helpful passages; {report.qrels} qrels)"
    )
    if report.skipped_no_text:
        click.echo(
            f"skipped {report.skipped_no_text} questions whose text was not saved "
            "(save the question as a test case when judging it)",
            err=True,
        )
    if not report.answerable:
        click.echo(
            "note: no question has a helpful passage yet: `medcite eval` needs one", err=True
        )


if __name__ == "__main__":
    main()
