"""Tune retrieval on a BEIR development set: many variants scored over one loaded index.

    python bench/tune_retrieval.py ../shared/evaldata/zh_toyhom_im [--limit 1000]

The index is the one `medcite eval` builds (same cache folder), so the first run embeds
the corpus and later runs embed nothing. Every variant is scored from the same query
vectors and the same full score matrices, so the figures are comparable side by side.
Scoring is a vectorised twin of the ranking in ``index.search.score_candidates``
(candidates = top-N dense and top-N BM25 per partition, fused, grouped by document: what
`medcite eval --no-gate` scores); the variant the product ships is then checked with
`medcite eval` itself.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medcite.index.build import build_bm25, passage_text
from medcite.index.cache import EmbeddingCache, embed_cached
from medcite.index.embed import load_embedder, set_threads
from medcite.index.fusion import minmax, ranks
from medcite.index.store import load_index
from medcite.index.tokenize import Tokenizer
from medcite.service.evaluate import ensure_index, load_qrels, load_queries
from medcite.service.settings import Settings

_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def bigram_tokens(base: Tokenizer, text: str) -> list[str]:
    """Current tokens plus Chinese character bigrams (a common strong baseline for zh BM25)."""
    out = base.tokens(text)
    for run in _HAN_RUN.findall(text):
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def _cedict_jieba(base: Tokenizer) -> Callable[[str], list[str]]:
    """jieba with every CC-CEDICT word it lacks added (a dictionary-derived user lexicon)."""
    import jieba

    from medcite.index.expand import load_dictionary
    from medcite.index.tokenize import ZH_STOPWORDS

    tk = jieba.Tokenizer()
    tk.initialize()
    for word in load_dictionary().zh_to_en:
        if len(word) >= 2 and not tk.FREQ.get(word):
            tk.add_word(word, freq=10)

    def tokens(text: str) -> list[str]:
        out = [t for t in base.tokens(_HAN_RUN.sub(" ", text))]
        for run in _HAN_RUN.findall(text.lower()):
            out.extend(t for t in tk.lcut_for_search(run) if t not in ZH_STOPWORDS)
        return out

    return tokens


TOKENIZER_NAMES = ("jieba", "jieba+bigram", "jieba+cedict")


def make_tokenizer(name: str, base: Tokenizer) -> Callable[[str], list[str]]:
    if name == "jieba":
        return base.tokens
    if name == "jieba+bigram":
        return lambda text: bigram_tokens(base, text)
    if name == "jieba+cedict":
        return _cedict_jieba(base)
    raise ValueError(f"unknown tokenizer {name!r}; choose from {', '.join(TOKENIZER_NAMES)}")


def metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    import ir_measures

    names = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "mrr@10": "RR@10", "recall@100": "R@100"}
    ms = {k: ir_measures.parse_measure(v) for k, v in names.items()}
    agg = ir_measures.calc_aggregate(list(ms.values()), qrels, run)
    return {k: round(float(agg.get(m, 0.0)), 4) for k, m in ms.items()}


class Bench:
    def __init__(self, dataset: Path, limit: int | None) -> None:
        settings = Settings()
        set_threads(settings.threads)
        self.embedder = load_embedder(settings.model, cache_dir=settings.cache_dir)
        index_dir = ensure_index(
            dataset / "corpus.jsonl", settings, None, embedder=self.embedder, progress=True
        )
        self.index = load_index(index_dir)
        qrels = load_qrels(dataset / "qrels.tsv")
        queries = load_queries(dataset / "queries.jsonl").texts
        self.queries = {q: t for q, t in queries.items() if q in qrels and t.strip()}
        if limit:
            self.queries = dict(list(self.queries.items())[:limit])
        self.qrels = {q: qrels[q] for q in self.queries}
        self.qids = list(self.queries)
        cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
        try:
            self.qvecs, _ = embed_cached(
                self.embedder, [self.queries[q] for q in self.qids], kind="query", cache=cache
            )
        finally:
            cache.close()
        chunks = self.index.chunks
        docs = self.index.documents
        self.texts = [passage_text(c, docs[c.doc_id]) for c in chunks]
        self.titles = [docs[c.doc_id].title for c in chunks]
        self.doc_of = np.array([c.doc_id for c in chunks], dtype=object)
        self.vectors = np.asarray(self.index.vectors, dtype=np.float32)
        self.dense = self.qvecs @ self.vectors.T  # queries x chunks
        self._lex: dict[tuple[object, ...], np.ndarray] = {}
        self._base = Tokenizer()
        self._tokenizers: dict[str, Callable[[str], list[str]]] = {}
        self._bm25: dict[tuple[object, ...], tuple[object, list[list[str]]]] = {}

    def tokenizer(self, name: str) -> Callable[[str], list[str]]:
        if name not in self._tokenizers:
            self._tokenizers[name] = make_tokenizer(name, self._base)
        return self._tokenizers[name]

    def lexical(
        self,
        tokenizer_name: str = "jieba",
        k1: float = 0.9,
        b: float = 0.4,
        title_repeat: int = 0,
    ) -> np.ndarray:
        key = (tokenizer_name, k1, b, title_repeat)
        if key not in self._lex:
            tok = self.tokenizer(tokenizer_name)
            corpus = [
                tok(t) + (tok(title) * title_repeat if title_repeat else [])
                for t, title in zip(self.texts, self.titles, strict=True)
            ]
            bm25 = build_bm25(corpus, k1=k1, b=b)
            self._bm25[key] = (bm25, corpus)
            self._lex[key] = np.stack(
                [
                    np.asarray(bm25.get_scores(tok(self.queries[q])), dtype=np.float32)
                    for q in self.qids
                ]
            )
        return self._lex[key]

    def run(
        self,
        *,
        method: str = "convex",
        weight: float = 0.8,
        rrf_k: int = 60,
        candidates: int = 100,
        second: float = 0.0,
        prf: tuple[int, float] | None = None,
        norm: str = "minmax",
        ref_n: int = 100,
        rm3: tuple[int, int] | None = None,
        fprf: tuple[int, float] | None = None,
        **lex: object,
    ) -> dict[str, dict[str, float]]:
        lexical_all = self.lexical(**lex)  # type: ignore[arg-type]
        if rm3 is not None or fprf is not None:
            # Second pass: feedback from the first pass's fused top chunks.
            first = self.run(method=method, weight=weight, candidates=candidates, **lex)
            return self._feedback(first, rm3, fprf, weight, candidates, lex)
        dense_all = self.dense
        if prf is not None:
            m, beta = prf
            top = np.argpartition(-dense_all, m, axis=1)[:, :m]
            q2 = self.qvecs + beta * self.vectors[top].mean(axis=1)
            q2 /= np.linalg.norm(q2, axis=1, keepdims=True)
            dense_all = q2 @ self.vectors.T
        run: dict[str, dict[str, float]] = {}
        for i, q in enumerate(self.qids):
            d_all, l_all = dense_all[i], lexical_all[i]
            n = min(candidates, d_all.size)
            dr = np.argpartition(-d_all, n - 1)[:n]
            lr = np.argpartition(-l_all, n - 1)[:n]
            lr = lr[l_all[lr] > 0]
            rows = np.unique(np.concatenate([dr, lr]))
            d, lx = d_all[rows], l_all[rows]
            if method == "dense":
                f = d
            elif method == "bm25":
                f = lx
            elif method == "rrf":
                f = 1.0 / (rrf_k + ranks(d)) + np.where(lx > 0, 1.0 / (rrf_k + ranks(lx)), 0)
            elif norm == "minmax":
                f = weight * minmax(d) + (1 - weight) * minmax(lx)
            elif norm == "zscore":
                zd = (d - d.mean()) / (d.std() + 1e-9)
                zl = (lx - lx.mean()) / (lx.std() + 1e-9)
                f = weight * zd + (1 - weight) * zl
            elif norm == "ref":  # pool-independent: dense from its ref_n-th score, BM25 / max
                d_ref = float(np.partition(d_all, -ref_n)[-ref_n])
                d_top = float(d_all.max())
                nd = np.clip((d - d_ref) / max(d_top - d_ref, 1e-9), 0, None)
                nl = lx / max(float(l_all.max()), 1e-9)
                f = weight * nd + (1 - weight) * nl
            elif norm == "maxnorm":  # dense raw cosine, BM25 / its max
                f = weight * d + (1 - weight) * (lx / (lx.max() + 1e-9))
            else:
                raise ValueError(norm)
            order = np.argsort(-f, kind="stable")
            best: dict[str, float] = {}
            seconds: dict[str, float] = {}
            for r, s in zip(rows[order].tolist(), f[order].tolist(), strict=True):
                doc = self.doc_of[r]
                if doc not in best:
                    best[doc] = s
                elif doc not in seconds:
                    seconds[doc] = s
            scores = {doc: s + second * seconds.get(doc, 0.0) for doc, s in best.items()}
            top = sorted(scores.items(), key=lambda kv: -kv[1])[:100]
            run[q] = {doc: float(len(top) - r) for r, (doc, _) in enumerate(top)}
        return run

    def _feedback(
        self,
        first: dict[str, dict[str, float]],
        rm3: tuple[int, int] | None,
        fprf: tuple[int, float] | None,
        weight: float,
        candidates: int,
        lex: dict[str, object],
    ) -> dict[str, dict[str, float]]:
        """RM3-style BM25 expansion and/or a dense Rocchio step from the top documents of
        the first fused ranking, then one more convex fusion."""
        import math
        from collections import Counter

        key = (
            lex.get("tokenizer_name", "jieba"),
            lex.get("k1", 0.9),
            lex.get("b", 0.4),
            lex.get("title_repeat", 0),
        )
        bm25, corpus = self._bm25[key]
        tok = self.tokenizer(str(key[0]))
        n_docs = len(corpus)
        df: Counter[str] = Counter()
        if rm3 is not None:
            for toks in corpus:
                df.update(set(toks))
        rows_of: dict[str, list[int]] = {}
        for r, d in enumerate(self.doc_of.tolist()):
            rows_of.setdefault(d, []).append(r)
        run: dict[str, dict[str, float]] = {}
        for i, q in enumerate(self.qids):
            top_docs = list(first[q])[: (rm3 or fprf or (0,))[0]]  # type: ignore[index]
            fb_rows = [r for d in top_docs for r in rows_of[d][:1]]
            d_all = self.dense[i]
            if fprf is not None:
                qv = self.qvecs[i] + fprf[1] * self.vectors[fb_rows].mean(axis=0)
                qv = qv / np.linalg.norm(qv)
                d_all = self.vectors @ qv
            l_all = self._lex[key][i]
            if rm3 is not None:
                q_tokens = tok(self.queries[q])
                weights: Counter[str] = Counter()
                for r in fb_rows:
                    toks = corpus[r]
                    for t, c in Counter(toks).items():
                        if t not in q_tokens:
                            weights[t] += c / len(toks) * math.log(n_docs / (1 + df[t]))
                extra = [t for t, _ in weights.most_common(rm3[1])]
                l_all = np.asarray(bm25.get_scores(q_tokens + extra), dtype=np.float32)  # type: ignore[attr-defined]
            n = min(candidates, d_all.size)
            dr = np.argpartition(-d_all, n - 1)[:n]
            lr = np.argpartition(-l_all, n - 1)[:n]
            rows = np.unique(np.concatenate([dr, lr[l_all[lr] > 0]]))
            f = weight * minmax(d_all[rows]) + (1 - weight) * minmax(l_all[rows])
            order = np.argsort(-f, kind="stable")
            best: dict[str, float] = {}
            for r, sc in zip(rows[order].tolist(), f[order].tolist(), strict=True):
                best.setdefault(self.doc_of[r], float(sc))
            top = list(best)[:100]
            run[q] = {doc: float(len(top) - k) for k, doc in enumerate(top)}
        return run

    def score(self, **kw: object) -> dict[str, float]:
        return metrics(self.qrels, self.run(**kw))  # type: ignore[arg-type]


GRID: list[dict[str, object]] = [
    {"method": "bm25"},
    {"method": "dense"},
    {"method": "convex", "weight": 0.8},
    {"method": "rrf", "rrf_k": 60},
    {"method": "rrf", "rrf_k": 20},
    *({"method": "convex", "weight": w} for w in (0.5, 0.6, 0.7, 0.9)),
    *({"method": "convex", "weight": w, "norm": "zscore"} for w in (0.5, 0.6, 0.7, 0.8)),
    *({"method": "bm25", "k1": k1, "b": b} for k1 in (0.6, 1.2, 1.5) for b in (0.4, 0.75)),
    {"method": "bm25", "tokenizer_name": "jieba+bigram"},
    {"method": "bm25", "tokenizer_name": "jieba+cedict"},
    {"method": "bm25", "title_repeat": 2},
    {"method": "convex", "weight": 0.8, "second": 0.1},
    {"method": "convex", "weight": 0.8, "second": 0.3},
    {"method": "dense", "prf": (3, 0.5)},
    {"method": "convex", "weight": 0.8, "prf": (3, 0.5)},
    {"method": "convex", "weight": 0.8, "title_repeat": 3},
    *(
        {"method": "convex", "weight": 0.8, "title_repeat": 3, "rm3": (m, t)}
        for m, t in ((3, 10), (5, 20))
    ),
    *(
        {"method": "convex", "weight": 0.8, "title_repeat": 3, "fprf": (m, beta)}
        for m, beta in ((3, 0.3), (5, 0.5))
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--grid", help="JSON list of variants (default: the built-in grid)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    bench = Bench(args.dataset, args.limit)
    print(
        f"# {args.dataset.name}: {len(bench.qids)} queries, {len(bench.index.chunks)} chunks, "
        f"loaded in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    grid = json.loads(args.grid) if args.grid else GRID
    for variant in grid:
        if "prf" in variant and variant["prf"] is not None:
            variant["prf"] = tuple(variant["prf"])  # type: ignore[arg-type]
        m = bench.score(**variant)
        print(
            json.dumps(variant, ensure_ascii=False),
            " ".join(f"{k}={v:.4f}" for k, v in m.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
