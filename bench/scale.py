"""Index build, load and search at scale, on synthetic chunks, each step in a fresh process.

    python bench/scale.py --chunks N [--work DIR] [--queries 200] [--dim 384] [--seed 0]
                          [--keep] [--no-model] [--no-hnsw-probe] [--max-rss-gb G]

Chunks: the bundled corpus (``corpus/``) is read through medcite's own ingest (``load`` and
``chunk_documents``) and split into sentences; N synthetic chunks are then made of those
sentences, a quarter of their words replaced by words drawn from a Zipf law over the
corpus's own words (ranked by frequency) extended with made-up words, so the vocabulary
keeps growing with N as a real corpus's does. Languages, chunk lengths (tokens), chunks per
document, titles and sections follow the corpus's proportions.

Vectors are NOT the real model's: it cannot embed a million chunks here in reasonable time.
A deterministic, fast embedder stands in (character bigrams hashed into 4096 buckets, times
a fixed Gaussian projection to --dim, L2-normalised): vectors follow the text (chunks that
share sentences are close), but their geometry is not e5's, so the ANN recall is that of
these vectors. The output says so (``vectors``).

The index is built through the product's own path (``index.build.build_index``, which
embeds, builds BM25 and FAISS and writes a version), with the synthetic chunks handed in
through its ``chunker`` hook (the product's chunking time is not included). Steps, each in
a fresh child process so RSS figures are clean:

- build: wall time and peak RSS (``ru_maxrss``), generation of the chunks excluded from
  the time (reported apart) but not from the peak RSS (an ingest holds its sources too).
  Above 50k chunks, two small probe builds first give an extrapolated peak; a build whose
  extrapolated peak is over --max-rss-gb is refused, and a child over it is killed.
- load: ``load_index`` wall time ("index ready", model excluded) and peak RSS.
- serve: the RSS after ``load_index``, the real model (unless --no-model; RSS only, its
  vectors are not used), the lexicon and one search; then the index work of --queries
  searches (``search`` with a precomputed query vector: candidates, fusion, relevance
  scoring; query encoding excluded), p50/p99, on one thread as served; then the recall@100
  of each FAISS partition against an exact inner-product search over the same vectors
  ("exact" when flat). A flat partition (under BuildSettings.hnsw_threshold, 200k chunks)
  also gets the product's HNSW (``store.build_faiss``) built over its vectors, on all
  cores, to report the recall and build time it would have at 1M (--no-hnsw-probe: not).

A JSON object with every figure goes to stdout and to DIR/scale.json; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from medcite.ingest import Language

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
VECTORS_NOTE = (
    "synthetic: hashed character bigrams x fixed Gaussian projection (not the real model; "
    "ANN recall is measured on these vectors)"
)
PROBE_SIZES = (5_000, 20_000)
PROBE_ABOVE = 50_000
BUCKETS = 4096
QUESTION_CHARS = {"zh": 24, "en": 80}


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- the stand-in embedder


class FastEmbedder:
    """Deterministic and vectorised: bigram counts (4096 buckets) x a seeded projection."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        import numpy as np

        self.name = f"scale-bigram-{dim}"
        self.dim = dim
        rng = np.random.default_rng(1_000_003 + seed)
        self._projection = rng.standard_normal((BUCKETS, dim)).astype(np.float32)

    def embed(self, texts: Any, *, kind: str) -> Any:
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 256
        for at in range(0, len(texts), step):
            batch = [t.lower() for t in texts[at : at + step]]
            joined = "\x00".join(batch)
            codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
            lengths = np.fromiter((len(t) for t in batch), dtype=np.int64, count=len(batch))
            row_of = np.repeat(np.arange(len(batch)), lengths + 1)[: codes.size]
            a, b = codes[:-1], codes[1:]
            keep = (a != 0) & (b != 0)
            h = (a * np.uint64(0x9E3779B1) ^ (b * np.uint64(0x85EBCA77))) % np.uint64(BUCKETS)
            counts = np.bincount(
                row_of[:-1][keep] * BUCKETS + h[keep].astype(np.int64),
                minlength=len(batch) * BUCKETS,
            ).reshape(len(batch), BUCKETS)
            vec = counts.astype(np.float32) @ self._projection
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            empty = norms[:, 0] == 0
            vec[empty] = 1.0
            norms[empty] = np.sqrt(self.dim)
            out[at : at + len(batch)] = vec / norms
        return out


# ---------------------------------------------------------------- synthetic corpus

_EN_WORD = re.compile(r"[A-Za-z]+")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def corpus_statistics(tokenizer: Any) -> dict[str, Any]:
    """Sentences (as word lists), word ranks, chunk lengths, titles and sections of the
    bundled corpus, per language, read through medcite's ingest."""
    from medcite.ingest import ChunkSettings, chunk_documents, load, split_sentences

    loaded = load([ROOT / "corpus"], root=ROOT / "corpus")
    chunks = chunk_documents(loaded, ChunkSettings(), tokenizer)
    sources = {s.source: s.text for s in loaded.sources}
    stats: dict[str, Any] = {}
    for lang in ("zh", "en"):
        docs = [d for d in loaded.documents if d.language == lang]
        own = [c for c in chunks if c.language == lang]
        if not own:
            continue
        sentences: list[list[str]] = []
        freq: dict[str, int] = {}
        for c in own:
            for a, b in split_sentences(sources[c.source], c.start, c.end, lang):
                text = sources[c.source][a:b]
                words = tokenizer.cut(text) if lang == "zh" else text.split(" ")
                sentences.append(words)
                for w in words:
                    if _is_word(w, lang):
                        freq[w] = freq.get(w, 0) + 1
        per_doc = [sum(1 for c in own if c.doc_id == d.doc_id) for d in docs]
        stats[lang] = {
            "share": len(docs) / len(loaded.documents),  # chunks follow chunks_per_doc
            "sentences": sentences,
            "sentence_tokens": [sum(1 for w in s if _is_word(w, lang)) for s in sentences],
            "ranked": sorted(freq, key=lambda w: (-freq[w], w)),
            "chunk_tokens": [c.n_tokens for c in own],
            "chunks_per_doc": [n for n in per_doc if n] or [1],
            "titles": [d.title for d in docs],
            "sections": [c.section for c in own],
            "chars": sorted({ch for s in sentences for w in s for ch in w if _HAN.match(ch)}),
        }
    return stats


def _is_word(word: str, lang: str) -> bool:
    return bool(_HAN.search(word)) if lang == "zh" else bool(_EN_WORD.fullmatch(word))


def _made_up(rank: int, lang: str, chars: list[str]) -> str:
    """A deterministic word for a Zipf rank past the corpus's vocabulary."""
    syllables = ("ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "du", "ga", "zo")
    out = []
    n = rank
    alphabet = chars if lang == "zh" and chars else syllables
    while True:
        out.append(alphabet[n % len(alphabet)])
        n //= len(alphabet)
        if not n:
            break
    return "".join(out)


def synthetic_load(n_chunks: int, seed: int, tokenizer: Any) -> tuple[Any, list[Any]]:
    """A LoadResult of synthetic documents and exactly ``n_chunks`` chunks of them."""
    import numpy as np

    from medcite.ingest import Chunk, Document, FileReport, LoadResult, Segment, SourceText

    stats = corpus_statistics(tokenizer)
    rng = np.random.default_rng(seed)
    langs = sorted(stats)
    shares = np.array([stats[lang]["share"] for lang in langs])
    sources: list[SourceText] = []
    documents: list[Document] = []
    chunks: list[Chunk] = []
    made = 0
    doc_no = 0
    last_report = time.perf_counter()
    while made < n_chunks:
        lang = cast("Language", langs[int(rng.choice(len(langs), p=shares / shares.sum()))])
        st = stats[lang]
        sep = "" if lang == "zh" else " "
        want = min(
            int(st["chunks_per_doc"][rng.integers(len(st["chunks_per_doc"]))]), n_chunks - made
        )
        doc_id = f"syn{doc_no:07d}"
        source = f"synthetic/{doc_id}.txt"
        title_words = list(st["sentences"][rng.integers(len(st["sentences"]))][:4])
        title = st["titles"][rng.integers(len(st["titles"]))] + sep + sep.join(title_words)
        section = st["sections"][rng.integers(len(st["sections"]))]
        parts: list[str] = []
        spans: list[tuple[int, int, int]] = []
        at = 0
        for _ in range(want):
            target = int(st["chunk_tokens"][rng.integers(len(st["chunk_tokens"]))])
            sentences: list[str] = []
            tokens = 0
            while tokens < target or not sentences:
                k = int(rng.integers(len(st["sentences"])))
                size = st["sentence_tokens"][k]
                if sentences and tokens + size > target and target - tokens < size / 2:
                    break  # closer to the target without it
                words = list(st["sentences"][k])
                swap = rng.random(len(words)) < 0.25
                ranks = rng.zipf(1.3, size=len(words)) - 1
                for i in np.flatnonzero(swap).tolist():
                    if _is_word(words[i], lang):
                        r = int(ranks[i])
                        words[i] = (
                            st["ranked"][r]
                            if r < len(st["ranked"])
                            else _made_up(r, lang, st["chars"])
                        )
                sentences.append(sep.join(words).strip())
                tokens += size
            text = sep.join(s for s in sentences if s)
            spans.append((at, at + len(text), tokens))
            parts.append(text)
            at += len(text) + 1
        body = "\n".join(parts)
        sources.append(SourceText(source=source, text=body, encoding="utf-8", kind="text"))
        documents.append(
            Document(
                doc_id=doc_id,
                source=source,
                title=title,
                language=lang,
                segments=(Segment(0, len(body), section),),
            )
        )
        for ordinal, (a, b, tokens) in enumerate(spans):
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_id}::{ordinal}",
                    doc_id=doc_id,
                    source=source,
                    text=body[a:b],
                    start=a,
                    end=b,
                    section=section,
                    language=lang,
                    n_tokens=max(tokens, 1),
                )
            )
        made += want
        doc_no += 1
        if time.perf_counter() - last_report > 10:
            log(f"  generated {made:,}/{n_chunks:,} chunks")
            last_report = time.perf_counter()
    reports = tuple(
        FileReport(path=s.source, status="ingested", encoding="utf-8", documents=1) for s in sources
    )
    return LoadResult(tuple(sources), tuple(documents), reports), chunks


# ---------------------------------------------------------------- child steps


def step_build(index_dir: Path, n: int, dim: int, seed: int) -> dict[str, Any]:
    from medcite.index.build import BuildSettings, build_index
    from medcite.index.store import read_manifest
    from medcite.index.tokenize import Tokenizer

    out: dict[str, Any] = {"imports_rss_mb": rss_mb()}
    tokenizer = Tokenizer()
    t0 = time.perf_counter()
    loaded, chunks = synthetic_load(n, seed, tokenizer)
    out["generate_seconds"] = time.perf_counter() - t0
    out["generated_rss_mb"] = current_rss_mb()
    log(f"  {len(chunks):,} chunks in {len(loaded.documents):,} documents generated")
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - shown[0] > 10 or done == total:
            log(f"  embedded {done:,}/{total:,} texts")
            shown[0] = time.perf_counter()
        if done == total:
            log("  embedding done; BM25 tokens, BM25, FAISS, write and checksums follow")

    done = threading.Event()

    def heartbeat() -> None:  # BM25, FAISS and the write report no progress of their own
        while not done.wait(30):
            log(f"  building: {time.perf_counter() - t0:.0f} s, RSS {current_rss_mb():,.0f} MB")

    t0 = time.perf_counter()
    threading.Thread(target=heartbeat, daemon=True).start()
    report = build_index(
        loaded,
        FastEmbedder(dim, seed),
        index_dir=index_dir,
        settings=BuildSettings(),
        cache=None,
        progress=progress,
        chunker=lambda _load, _settings: chunks,
        tokenizer=tokenizer,
    )
    out["build_seconds"] = time.perf_counter() - t0
    done.set()
    out["embed_seconds"] = report.embed_seconds
    out["peak_rss_mb"] = rss_mb()
    out["chunks"] = report.chunks
    out["documents"] = report.documents
    out["sentences"] = report.sentences
    manifest = read_manifest(index_dir)
    out["partitions"] = {
        lang: {"chunks": p.chunks, "type": p.type} for lang, p in manifest.partitions.items()
    }
    out["index_bytes"] = sum(f.stat().st_size for f in report.path.rglob("*") if f.is_file())
    return out


def step_load(index_dir: Path) -> dict[str, Any]:
    import bm25s  # noqa: F401  (imports are not load time)
    import faiss  # noqa: F401
    import numpy  # noqa: F401

    from medcite.index.store import load_index

    out: dict[str, Any] = {"imports_rss_mb": rss_mb()}
    t0 = time.perf_counter()
    index = load_index(index_dir)
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = rss_mb()
    out["rss_mb"] = current_rss_mb()
    out["chunks"] = len(index.chunks)
    return out


def step_serve(
    index_dir: Path, dim: int, seed: int, queries: int, with_model: bool, hnsw_probe: bool
) -> dict[str, Any]:
    import numpy as np

    from medcite.index.embed import set_threads
    from medcite.index.lexicon import load_lexicon
    from medcite.index.relevance import load_relevance_model
    from medcite.index.search import SearchSettings, search
    from medcite.index.store import load_index
    from medcite.ingest import split_sentences

    set_threads(1)
    out: dict[str, Any] = {"imports_rss_mb": rss_mb()}
    t0 = time.perf_counter()
    index = load_index(index_dir)
    out["index_seconds"] = time.perf_counter() - t0
    embedder = FastEmbedder(dim, seed)
    out["model_included"] = False
    if with_model:
        try:
            from medcite.index.embed import DEFAULT_MODEL, load_embedder
            from medcite.service.settings import Settings

            t0 = time.perf_counter()
            model = load_embedder(DEFAULT_MODEL, cache_dir=Settings().cache_dir)
            model.embed(["query warm-up"], kind="query")
            out["model_seconds"] = time.perf_counter() - t0
            out["model_included"] = True
        except Exception as exc:  # report without the model rather than fail the run
            out["model_error"] = f"{type(exc).__name__}: {exc}"
    t0 = time.perf_counter()
    lexicon = load_lexicon(expand=True)
    out["lexicon_seconds"] = time.perf_counter() - t0
    settings = SearchSettings(relevance=load_relevance_model(embedder.name))

    rng = np.random.default_rng(seed + 1)
    texts: list[str] = []
    for row in rng.choice(len(index.chunks), size=queries, replace=queries > len(index.chunks)):
        chunk = index.chunks[int(row)]
        spans = split_sentences(chunk.text, 0, None, chunk.language) or [(0, len(chunk.text))]
        a, b = spans[int(rng.integers(len(spans)))]
        texts.append(chunk.text[a:b][: QUESTION_CHARS[chunk.language]].strip() or chunk.text[:20])
    vectors = embedder.embed(texts, kind="query")

    t0 = time.perf_counter()
    search(index, embedder, texts[0], settings=settings, lexicon=lexicon, query_vector=vectors[0])
    out["first_search_ms"] = (time.perf_counter() - t0) * 1000
    out["serving_peak_rss_mb"] = rss_mb()
    out["serving_rss_mb"] = current_rss_mb()
    log(f"  serving RSS {out['serving_rss_mb']:.0f} MB; timing {queries} searches")

    times: list[float] = []
    for i, (text, qv) in enumerate(zip(texts, vectors, strict=True)):
        t0 = time.perf_counter()
        search(index, embedder, text, settings=settings, lexicon=lexicon, query_vector=qv)
        times.append((time.perf_counter() - t0) * 1000)
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{queries} searches")
    out["work_p50_ms"] = float(np.percentile(times, 50))
    out["work_p99_ms"] = float(np.percentile(times, 99))
    out["work_mean_ms"] = float(np.mean(times))

    # ANN recall@100 of each partition's FAISS index vs exact inner product; a flat
    # (exact) partition also gets the product's HNSW built over its vectors, to measure
    # the recall it would have past the threshold.
    from medcite.index.store import build_faiss

    retriever: Any = index.retriever
    recall: dict[str, Any] = {}
    vecs = np.asarray(index.vectors)
    for lang, part in retriever.partitions.items():
        kind = type(part.faiss_index).__name__
        m = min(100, int(part.rows.size))
        sub = vecs[part.rows]
        if "HNSW" in kind:
            measured = ann_recall(part.faiss_index, sub, vectors, m)
            recall[lang] = {"type": kind, "exact": False, **measured}
            continue
        entry: dict[str, Any] = {"type": kind, "recall": 1.0, "exact": True, "k": m}
        if hnsw_probe:
            import faiss

            threads = os.cpu_count() or 1
            faiss.omp_set_num_threads(threads)
            log(f"  building the product's HNSW over the {sub.shape[0]:,} {lang} vectors")
            t0 = time.perf_counter()
            hnsw = build_faiss(sub, hnsw_threshold=0)
            seconds = time.perf_counter() - t0
            faiss.omp_set_num_threads(1)
            entry["hnsw_if_over_threshold"] = {
                **ann_recall(hnsw, sub, vectors, m),
                "build_seconds": seconds,
                "build_threads": threads,
            }
            del hnsw
        recall[lang] = entry
    out["recall"] = recall
    return out


def ann_recall(faiss_index: Any, sub: Any, queries: Any, m: int) -> dict[str, Any]:
    """Recall@m of ``faiss_index`` (over the rows ``sub``) against exact inner product."""
    import faiss
    import numpy as np

    from medcite.index.retrieve import HNSW_EF_SEARCH

    # The efSearch the product searches with (index.retrieve.dense_search), not the file's.
    ef = max(HNSW_EF_SEARCH, m) if isinstance(faiss_index, faiss.IndexHNSW) else None
    params = {} if ef is None else {"params": faiss.SearchParametersHNSW(efSearch=ef)}
    t0 = time.perf_counter()
    _, ann = faiss_index.search(np.ascontiguousarray(queries), m, **params)
    ann_ms = (time.perf_counter() - t0) * 1000 / len(queries)
    exact = np.argpartition(-(queries @ sub.T), m - 1, axis=1)[:, :m]
    hits = [len(set(a.tolist()) & set(e.tolist())) / m for a, e in zip(ann, exact, strict=True)]
    return {
        "recall": float(np.mean(hits)),
        "recall_min": float(np.min(hits)),
        "k": m,
        "ann_ms_per_query": ann_ms,
        "ef_search": ef,
    }


def child_main(argv: list[str]) -> None:
    step, index_dir = argv[0], Path(argv[1])
    if step == "build":
        result = step_build(index_dir, int(argv[2]), int(argv[3]), int(argv[4]))
    elif step == "load":
        result = step_load(index_dir)
    else:
        result = step_serve(
            index_dir, int(argv[2]), int(argv[3]), int(argv[4]), argv[5] == "1", argv[6] == "1"
        )
    print(json.dumps(result))


# ---------------------------------------------------------------- parent


class TooBig(Exception):
    pass


def run_child(args: list[str], limit_mb: float) -> dict[str, Any]:
    """Run a step in a fresh process; kill it when its RSS goes over ``limit_mb``."""
    env = dict(os.environ)
    if args[0] != "build":  # served with one thread (the default MEDCITE_THREADS)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    killed: list[float] = []

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        mb = int(line.split()[1]) / 1024
                        if mb > limit_mb:
                            killed.append(mb)
                            proc.kill()
            except OSError:
                return
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, _ = proc.communicate()
    watcher.join()
    if killed:
        raise TooBig(f"step {args[0]} killed at {killed[0]:.0f} MB RSS (limit {limit_mb:.0f} MB)")
    if proc.returncode != 0:
        raise SystemExit(f"step {args[0]} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 16_000.0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the built index in --work")
    parser.add_argument("--no-model", action="store_true", help="serving RSS without the model")
    parser.add_argument(
        "--no-hnsw-probe",
        action="store_true",
        help="do not build an HNSW over flat partitions to measure its recall",
    )
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        help="refuse or stop a build above this RSS (default: min(20, 85%% of MemAvailable))",
    )
    args = parser.parse_args()
    if args.chunks < 1 or args.queries < 2:
        parser.error("--chunks must be >= 1 and --queries >= 2")
    limit_mb = args.max_rss_gb * 1024 if args.max_rss_gb else min(20 * 1024, 0.85 * available_mb())
    work = args.work or Path(tempfile.mkdtemp(prefix="medcite-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    index_dir = work / f"index-{args.chunks}"
    shutil.rmtree(index_dir, ignore_errors=True)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "chunks": args.chunks,
        "cpus": os.cpu_count(),
        "dim": args.dim,
        "seed": args.seed,
        "queries": args.queries,
        "vectors": VECTORS_NOTE,
        "chunking": "synthetic chunks handed to build_index (product chunking not timed)",
        "rss_limit_mb": round(limit_mb),
    }

    probes: list[dict[str, Any]] = []
    if args.chunks > PROBE_ABOVE:
        for n in PROBE_SIZES:
            log(f"probe build at {n:,} chunks (for the memory extrapolation)")
            probe_dir = work / f"probe-{n}"
            shutil.rmtree(probe_dir, ignore_errors=True)
            built = run_child(
                ["build", str(probe_dir), str(n), str(args.dim), str(args.seed)], limit_mb
            )
            shutil.rmtree(probe_dir, ignore_errors=True)
            probes.append(
                {
                    "chunks": n,
                    "peak_rss_mb": built["peak_rss_mb"],
                    "seconds": built["build_seconds"],
                }
            )
        (n1, r1), (n2, r2) = [(p["chunks"], p["peak_rss_mb"]) for p in probes]
        slope = (r2 - r1) / (n2 - n1)
        estimate = r2 + slope * (args.chunks - n2)
        seconds = probes[1]["seconds"] * args.chunks / n2
        result["build_probes"] = probes
        result["build_peak_rss_mb_extrapolated"] = round(estimate)
        result["build_kb_per_chunk"] = round(slope * 1024, 2)
        log(
            f"extrapolated build peak RSS at {args.chunks:,} chunks: {estimate / 1024:.1f} GB "
            f"({slope * 1024:.1f} KB per chunk), build time ~{seconds / 60:.0f} min"
        )
        if estimate > limit_mb:
            result["refused"] = (
                f"building {args.chunks:,} chunks through build_index would need about "
                f"{estimate / 1024:.1f} GB RSS, over the {limit_mb / 1024:.1f} GB limit"
            )
            finish(result, work)
            raise SystemExit(1)

    try:
        log(f"build {args.chunks:,} chunks -> {index_dir}")
        built = run_child(
            ["build", str(index_dir), str(args.chunks), str(args.dim), str(args.seed)], limit_mb
        )
        result["build"] = built
        log(
            f"built in {built['build_seconds']:.1f} s, peak RSS {built['peak_rss_mb']:.0f} MB, "
            f"partitions {built['partitions']}"
        )
        log("load_index in a fresh process")
        loaded = run_child(["load", str(index_dir)], limit_mb)
        result["load"] = loaded
        log(f"index ready in {loaded['seconds']:.2f} s, peak RSS {loaded['peak_rss_mb']:.0f} MB")
        log("serving RSS, index work and ANN recall in a fresh process")
        served = run_child(
            [
                "serve",
                str(index_dir),
                str(args.dim),
                str(args.seed),
                str(args.queries),
                "0" if args.no_model else "1",
                "0" if args.no_hnsw_probe else "1",
            ],
            limit_mb,
        )
        result["serve"] = served
    except TooBig as exc:
        result["refused"] = str(exc)
        finish(result, work)
        raise SystemExit(1) from exc
    finally:
        if not args.keep:
            shutil.rmtree(index_dir, ignore_errors=True)

    recalls = [r["recall"] for r in served["recall"].values()]
    hnsw = [
        r if not r["exact"] else r.get("hnsw_if_over_threshold") for r in served["recall"].values()
    ]
    result["summary"] = {
        "build_seconds": round(built["build_seconds"], 2),
        "build_peak_rss_mb": round(built["peak_rss_mb"]),
        "index_ready_seconds": round(loaded["seconds"], 3),
        "load_peak_rss_mb": round(loaded["peak_rss_mb"]),
        "serving_rss_mb": round(served["serving_rss_mb"]),
        "serving_model_included": served["model_included"],
        "work_p50_ms": round(served["work_p50_ms"], 2),
        "work_p99_ms": round(served["work_p99_ms"], 2),
        "ann_recall_at_100": round(min(recalls), 4),
        "ann_exact": all(r["exact"] for r in served["recall"].values()),
        "hnsw_recall_at_100": (round(min(h["recall"] for h in hnsw), 4) if all(hnsw) else None),
    }
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    finish(result, work)


def finish(result: dict[str, Any], work: Path) -> None:
    text = json.dumps(result, indent=1, ensure_ascii=False)
    (work / "scale.json").write_text(text + "\n", encoding="utf-8")
    log(f"wrote {work / 'scale.json'}")
    print(text)


if __name__ == "__main__":
    main()
