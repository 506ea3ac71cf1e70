"""Fit the relevance model (P(relevant) per passage) and show that it transfers across corpora.

    python bench/calibrate_relevance.py [--evaldata ../shared/evaldata] [--work DIR]
                                        [--per-set 4000] [--add DIR ...] [--write | --out FILE]
    python bench/calibrate_relevance.py --report [--all]   # figures through /search

What it does, in order:
1. Indexes (or reuses, in --work) every development corpus: the bundled corpus/, the BEIR
   sets zh_toyhom_im, zh_kuake_qtr and en_medquad_lite, each BEIR set again with some of its
   topics removed (en_medquad_lite: a quarter of its titles, every document of each; the
   Chinese sets, which have no titles: the rare words of some questions, every document
   holding one; see removed_terms): the questions of those topics become unanswerable. And
   any set of your own given with --add DIR (a BEIR folder; see own_set).
2. Collects, through the same code as ``/search`` (:func:`index.search.score_candidates`),
   the features of the top candidates of every question, labelled by the judgements:
   answerable questions (up to --per-set per set), off-topic questions
   (bench/data/offtopic_eval.jsonl, split in two halves: "fit" and "held-out") against every
   index, removed-topic MedQuAD questions, and health questions the bundled corpus does not
   answer.
3. Leave one corpus out: fits on the other corpora (and the "fit" half of the off-topic
   questions), picks the threshold there, and reports on the corpus left out (and the
   held-out half): answered rate, abstention per kind, ECE, per language pair. The
   regularisation of P(answerable) is chosen the same way, among QUESTION_C_GRID: the one
   whose held-out sets score best against the goals.
4. Fits the shipped model on every corpus (still without the held-out off-topic half) and,
   with --write, stores it in index/relevance.json for the model; with --out FILE, in a file
   of its own that MEDCITE_RELEVANCE_MODEL=FILE serves.

--report fits nothing: with the relevance model the service loads (index/relevance.json, or
MEDCITE_RELEVANCE_MODEL), it scores every set through the search function `/search` runs:
answered rate and gated nDCG@10 / Recall@10 / ECE (`medcite eval`), the same ungated
(`--no-gate`), and the abstention on each kind of unanswerable question (only the held-out
off-topic half). --all uses every answerable question of a set, not --per-set of them.

When to run it on your own corpus: the shipped model already measures every index against
off-topic probes when it is loaded, so a new corpus needs no labels. Run this (with your own
judged questions: --add DIR) when you change the embedding model, or when `medcite eval` on
judged questions of your corpus shows an answered rate or abstention far from the table in
the README.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / "data"
TOP = 20  # candidates per question used for fitting (best fused first)


@dataclass
class QuestionSet:
    name: str
    corpus: Path
    answerable: dict[str, str]
    qrels: dict[str, dict[str, int]]
    # kind -> {qid: text}; kinds: offtopic-fit, offtopic-heldout, removed-topic, health
    unanswerable: dict[str, dict[str, str]] = field(default_factory=dict)
    index_name: str = ""


@dataclass
class Example:
    """One question's top candidates."""

    set: str
    kind: str  # "answerable" or an unanswerable kind
    qid: str
    qlang: str
    x: np.ndarray  # [n, features]
    y: np.ndarray  # [n] judged relevant
    plang: list[str]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def offtopic_halves() -> tuple[dict[str, str], dict[str, str]]:
    rows = read_jsonl(DATA / "offtopic_eval.jsonl")
    fit = {r["id"]: r["text"] for r in rows if int(r["id"].rsplit("-", 1)[1]) % 2 == 0}
    held = {r["id"]: r["text"] for r in rows if int(r["id"].rsplit("-", 1)[1]) % 2 == 1}
    return fit, held


def sample(d: dict[str, str], n: int, seed: int = 13) -> dict[str, str]:
    keys = sorted(d)
    random.Random(seed).shuffle(keys)
    return {k: d[k] for k in sorted(keys[:n])}


def question_sets(
    evaldata: Path, work: Path, per_set: int, added: list[Path] | None = None
) -> list[QuestionSet]:
    from medcite.service.evaluate import load_qrels, load_queries

    fit, held = offtopic_halves()
    sets = []
    bundled = read_jsonl(DATA / "bundled_questions.jsonl")
    seed_dev = evaldata / "seed_dev_queries.jsonl"
    extra = read_jsonl(seed_dev) if seed_dev.is_file() else []
    answer = {r["id"]: r["text"] for r in bundled + extra if r.get("relevant")}
    qrels = {r["id"]: {f: 1 for f in r["relevant"]} for r in bundled + extra if r.get("relevant")}
    health = {r["id"]: r["text"] for r in bundled + extra if r.get("relevant") == []}
    for r in read_jsonl(DATA / "abstention_dev.jsonl"):
        if not r["relevant_languages"]:
            health[r["id"]] = r["text"]
    sets.append(
        QuestionSet(
            "bundled",
            REPO / "corpus",
            answer,
            qrels,
            {"offtopic-fit": fit, "offtopic-heldout": held, "health": health},
        )
    )
    for name, qrels_file in (
        ("zh_toyhom_im", "qrels.tsv"),
        ("zh_kuake_qtr", "qrels_binary.tsv"),
        ("en_medquad_lite", "qrels.tsv"),
    ):
        folder = evaldata / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} is absent", file=sys.stderr)
            continue
        q = load_queries(folder / "queries.jsonl")
        judged = load_qrels(folder / qrels_file)
        texts = {k: v for k, v in q.texts.items() if k in judged and v.strip()}
        sets.append(
            QuestionSet(
                name,
                folder / "corpus.jsonl",
                sample(texts, per_set),
                judged,
                {"offtopic-fit": fit, "offtopic-heldout": held},
            )
        )
        if name == "en_medquad_lite":
            sets.append(removed_topics(folder, judged, texts, work, fit, held))
        else:
            sets.append(removed_terms(name, folder, judged, texts, work, per_set))
    sets += [own_set(folder, per_set, fit, held) for folder in added or []]
    return sets


def own_set(folder: Path, per_set: int, fit: dict[str, str], held: dict[str, str]) -> QuestionSet:
    """A user's judged questions on their own corpus (--add DIR): a BEIR folder with
    corpus.jsonl (or a folder of articles in corpus/), queries.jsonl and qrels.tsv, where a
    query marked ``"answerable": false`` (or judged by ``"relevant": []``) is one the corpus
    cannot answer. Its file names are the index's; ids in qrels.tsv are document ids."""
    from medcite.service.evaluate import load_qrels, load_queries

    corpus = folder / "corpus.jsonl"
    if not corpus.is_file():
        corpus = folder / "corpus"
    if not corpus.exists() or not (folder / "queries.jsonl").is_file():
        raise SystemExit(f"--add {folder}: needs corpus.jsonl (or corpus/) and queries.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels = dict(queries.inline_qrels)
    if (folder / "qrels.tsv").is_file():
        qrels.update(load_qrels(folder / "qrels.tsv"))
    answerable = {
        q: t
        for q, t in queries.texts.items()
        if q in qrels and q not in queries.unanswerable and t.strip()
    }
    unanswerable = {q: queries.texts[q] for q in sorted(queries.unanswerable)}
    kinds = {"offtopic-fit": fit, "offtopic-heldout": held}
    if unanswerable:
        kinds["health"] = unanswerable
    return QuestionSet(f"own_{folder.name}", corpus, sample(answerable, per_set), qrels, kinds)


def removed_terms(
    name: str,
    folder: Path,
    qrels: dict[str, dict[str, int]],
    texts: dict[str, str],
    work: Path,
    per_set: int,
    share: float = 0.5,
    max_removed: float = 0.3,
) -> QuestionSet:
    """A Chinese set without some of its questions' topics, for a corpus with no titles to
    remove topics by. Of half the questions (seeded), one whose words (jieba, two characters
    or more) are each either generic (held by over 15% of the documents) or rare (at most
    2%) and that shares a rare word with its judged answer has its topic removed: every
    document holding any of its rare words anywhere goes. A question with a common but
    specific word (高血压 in an internal-medicine corpus) is skipped: its topic cannot be
    removed without removing the corpus. Questions naming a removed word are unanswerable;
    the others stay answerable while an answer of theirs is left. At most ``max_removed``
    of the documents go."""
    from medcite.index.tokenize import Tokenizer

    out = work / f"{name}_removed"
    corpus = out / "corpus.jsonl"
    made = out / "questions.json"  # the split, kept with the corpus it belongs to
    if corpus.is_file() and made.is_file():
        split = json.loads(made.read_text("utf-8"))
        return QuestionSet(
            f"{name}_removed",
            corpus,
            sample({q: texts[q] for q in split["answerable"]}, per_set),
            qrels,
            {"removed-topic": {q: texts[q] for q in split["removed-topic"]}},
        )
    docs = read_jsonl(folder / "corpus.jsonl")
    text_of = {d.get("_id", d.get("id")): f"{d.get('title', '')}\n{d['text']}" for d in docs}
    tokenizer = Tokenizer()
    words = {
        q: sorted({w for w in tokenizer.tokens(t, bigrams=False) if len(w) >= 2})
        for q, t in texts.items()
    }
    all_words = sorted({w for ws in words.values() for w in ws})
    holders: dict[str, set[str]] = {w: set() for w in all_words}
    for d, body in text_of.items():
        for w in all_words:
            if w in body:
                holders[w].add(d)
    df = {w: len(h) for w, h in holders.items()}
    rare, generic = max(2, int(0.02 * len(docs))), 0.15 * len(docs)

    def eligible(q: str) -> bool:
        return not any(rare < df[w] <= generic for w in words[q])

    qids = sorted(texts)
    random.Random(11).shuffle(qids)
    removed: set[str] = set()
    gone_docs: set[str] = set()
    for q in qids[: int(len(qids) * share)]:
        if not eligible(q):
            continue
        answers = [text_of[d] for d, g in qrels[q].items() if g > 0 and d in text_of]
        topical = [w for w in words[q] if 0 < df[w] <= rare]
        if not any(w in a for w in topical for a in answers):
            continue
        more = set().union(*(holders[w] for w in topical)) - gone_docs
        if len(gone_docs) + len(more) > max_removed * len(docs):
            continue
        removed.update(topical)
        gone_docs |= more
    kept = [d for d in docs if d.get("_id", d.get("id")) not in gone_docs]
    kept_ids = {d.get("_id", d.get("id")) for d in kept}
    # Unanswerable: every rare word of the question went, and no specific one stays. A
    # question naming a removed word but keeping another is neither.
    named = {q for q, t in texts.items() if any(w in t for w in removed)}
    gone = {
        q: t
        for q, t in texts.items()
        if q in named and eligible(q) and all(w in removed for w in words[q] if 0 < df[w] <= rare)
    }
    stay = {
        q: t
        for q, t in texts.items()
        if q not in named and any(g > 0 and d in kept_ids for d, g in qrels[q].items())
    }
    out.mkdir(parents=True, exist_ok=True)
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in kept), "utf-8")
    made.write_text(json.dumps({"answerable": sorted(stay), "removed-topic": sorted(gone)}))
    print(
        f"{name}_removed: {len(removed)} topic words, {len(docs) - len(kept)} of {len(docs)} "
        f"documents removed, {len(gone)} questions unanswerable, {len(stay)} answerable",
        file=sys.stderr,
    )
    return QuestionSet(
        f"{name}_removed", corpus, sample(stay, per_set), qrels, {"removed-topic": gone}
    )


def removed_topics(
    folder: Path,
    qrels: dict[str, dict[str, int]],
    texts: dict[str, str],
    work: Path,
    fit: dict[str, str],
    held: dict[str, str],
) -> QuestionSet:
    """en_medquad_lite without a quarter of the questions' topics (every document of the
    title): those questions are unanswerable; the others stay answerable."""
    docs = read_jsonl(folder / "corpus.jsonl")
    title = {d["_id"] if "_id" in d else d["id"]: d.get("title", "") for d in docs}
    topics = sorted({title[d] for q in texts for d in qrels[q] if d in title})
    random.Random(7).shuffle(topics)
    removed = set(topics[: len(topics) // 4])
    out = work / "en_medquad_lite_removed"
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    kept = [d for d in docs if d.get("title", "") not in removed]
    if not corpus.is_file():
        corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in kept), "utf-8")
    gone = {q: t for q, t in texts.items() if any(title.get(d) in removed for d in qrels[q])}
    stay = {q: t for q, t in texts.items() if q not in gone}
    return QuestionSet(
        "en_medquad_lite_removed",
        corpus,
        stay,
        qrels,
        {"removed-topic": gone, "offtopic-fit": fit, "offtopic-heldout": held},
    )


def collect(qs: QuestionSet, work: Path, settings: Any, embedder: Any) -> list[Example]:
    from medcite.index.cache import EmbeddingCache, embed_cached
    from medcite.index.lexicon import load_lexicon
    from medcite.index.relevance import FEATURES, QUESTION_FEATURES, Logistic, RelevanceModel
    from medcite.index.search import ensure_probe_levels, score_candidates
    from medcite.index.store import load_index
    from medcite.ingest.language import detect_language
    from medcite.service.evaluate import _judged_unit, ensure_index

    index_dir = ensure_index(
        qs.corpus, settings, work / f"index-{qs.name}", embedder=embedder, progress=True
    )
    index = load_index(index_dir)
    unit = _judged_unit(index, qs.qrels) or (lambda d: d)

    def flat(names: tuple[str, ...]) -> Logistic:
        n = len(names)
        return Logistic(names, (0.0,) * n, (1.0,) * n, (0.0,) * n, 0.0)

    # A model that scores everything alike: candidates stay in fused order.
    neutral = RelevanceModel(flat(FEATURES), flat(QUESTION_FEATURES), 0.5)
    search_settings = dataclasses.replace(settings.search(embedder.name), relevance=neutral)
    lexicon = load_lexicon(expand=search_settings.expand)
    batches: list[tuple[str, dict[str, str]]] = [("answerable", qs.answerable)]
    batches += sorted(qs.unanswerable.items())
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    examples = []
    try:
        ensure_probe_levels(index, embedder, cache)
        for kind, questions in batches:
            qids = list(questions)
            vectors, _ = embed_cached(
                embedder, [questions[q] for q in qids], kind="query", cache=cache
            )
            for q, qv in zip(qids, vectors, strict=True):
                text = questions[q].strip()
                qlang = detect_language(text)
                scored = score_candidates(
                    index,
                    embedder,
                    qv,
                    text,
                    qlang,
                    language=None,
                    settings=search_settings,
                    lexicon=lexicon,
                    candidates=search_settings.candidates,
                )
                assert scored.features is not None
                rows = scored.rows[:TOP].tolist()
                judged = qs.qrels.get(q, {}) if kind == "answerable" else {}
                y = np.array([int(judged.get(unit(index.chunks[r].doc_id), 0) > 0) for r in rows])
                examples.append(
                    Example(
                        qs.name,
                        kind,
                        q,
                        qlang,
                        scored.features[:TOP],
                        y,
                        [index.chunks[r].language for r in rows],
                    )
                )
    finally:
        cache.close()
    return examples


def collect_cached(qs: QuestionSet, work: Path, settings: Any, embedder: Any) -> list[Example]:
    """:func:`collect`, kept in ``work`` per set and reused while the questions, the features
    and the index version are the same (delete the file to force a new collection)."""
    import hashlib
    import pickle

    from medcite.index.relevance import FEATURES

    key = hashlib.sha256(
        json.dumps(
            [sorted(qs.answerable.items()), sorted(qs.unanswerable.items()), FEATURES]
        ).encode()
    ).hexdigest()[:16]
    path = work / f"features-{qs.name}-{key}.pkl"
    index_dir = work / f"index-{qs.name}"
    version = (
        (index_dir / "CURRENT").read_text().strip() if (index_dir / "CURRENT").is_file() else ""
    )
    if path.is_file():
        stored_version, examples = pickle.loads(path.read_bytes())
        if stored_version == version:
            return list(examples)
    examples = collect(qs, work, settings, embedder)
    version = (index_dir / "CURRENT").read_text().strip()
    path.write_bytes(pickle.dumps((version, examples)))
    return examples


DROPPED: set[str] = set()  # --drop: features the model must not use (coefficient 0)


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    groups: list[str],
    vocabulary: Any,
    *,
    c: float = 1.0,
    balance: bool = False,
) -> Any:
    """Logistic regression on standardised features (inverse regularisation strength ``c``);
    each set (group) weighs the same, and with ``balance`` each label within a set weighs the
    same too. Features in DROPPED (or derived from them) are held at 0: no weight, no effect."""
    from sklearn.linear_model import LogisticRegression

    from medcite.index.relevance import Logistic

    x = x.copy()
    dropped = [i for i, f in enumerate(vocabulary) if f.split(":")[-1] in DROPPED]
    x[:, dropped] = 0.0
    keys = [(g, int(label)) if balance else (g, 0) for g, label in zip(groups, y, strict=True)]
    count: dict[tuple[str, int], int] = defaultdict(int)
    for k in keys:
        count[k] += 1
    w = np.array([1.0 / count[k] for k in keys])
    w *= w.size / w.sum()
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    mean[dropped] = 0.0
    scale[dropped] = 1.0
    clf = LogisticRegression(C=c, max_iter=5000)
    clf.fit((x - mean) / scale, y, sample_weight=w)
    return Logistic(
        tuple(vocabulary),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in clf.coef_[0]),
        float(clf.intercept_[0]),
    )


def fused_of(e: Example) -> np.ndarray:
    from medcite.index.relevance import FEATURES

    return e.x[:, FEATURES.index("fused")]


# The question model's regularisation is chosen among these by leaving one corpus out.
QUESTION_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def fit(examples: list[Example], threshold: float = 0.5, question_c: float = 0.1) -> Any:
    """Both parts: P(relevant | answerable) from the candidates of answerable questions,
    P(answerable) from every question's best candidates. The second gives each kind of
    question within a set the same weight (answerable, off-topic, removed-topic, other
    health): how many questions of each unanswerable kind a set has (off-topic ones we
    wrote, topics we removed) is our choice, not a property of the corpus, so it must not
    move the boundary; and the few removed-topic questions must not be drowned by the many
    easy off-topic ones."""
    from medcite.index.relevance import (
        FEATURES,
        QUESTION_FEATURES,
        RelevanceModel,
        question_features,
    )

    answerable = [e for e in examples if e.kind == "answerable" and e.y.size]
    passage = fit_logistic(
        np.concatenate([e.x for e in answerable]),
        np.concatenate([e.y for e in answerable]),
        [e.set for e in answerable for _ in range(e.y.size)],
        FEATURES,
    )
    question = fit_logistic(
        np.stack([question_features(e.x, fused_of(e)) for e in examples]),
        np.array([int(e.kind == "answerable") for e in examples]),
        [f"{e.set}/{goal_kind(e.kind)}" for e in examples],
        QUESTION_FEATURES,
        c=question_c,
        balance=True,
    )
    return RelevanceModel(passage, question, threshold, fitted_on=time.strftime("%Y-%m-%d"))


def p_answerable(e: Example, model: Any) -> float:
    return float(model.answerable(e.x, fused_of(e))) if e.y.size else 0.0


def rates(examples: list[Example], model: Any, threshold: float) -> dict[str, dict[str, float]]:
    """Answered rate (answerable) and abstention rate (every other kind), per set."""
    out: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        hit = p_answerable(e, model) >= threshold
        out[e.set][e.kind].append(hit if e.kind == "answerable" else not hit)
    return {s: {k: round(sum(v) / len(v), 4) for k, v in kinds.items()} for s, kinds in out.items()}


GOALS = {"answerable": 0.95, "offtopic": 0.90, "removed-topic": 0.70, "health": 0.70}


def goal_kind(kind: str) -> str:
    """The key of :data:`GOALS` for an example kind (both off-topic halves are "offtopic")."""
    return "offtopic" if kind.startswith("offtopic") else kind


def choose_threshold(examples: list[Example], model: Any) -> float:
    """The threshold that meets the most goals (answered 95% of answerable; abstained on 90%
    of off-topic, 70% of removed-topic and other-health questions; each set and kind counts
    once) and, among those, maximises the mean over sets of the sum over kinds of the rate
    against its goal, each capped at the goal; ties: the lower."""
    best: tuple[int, float, float] = (-1, -1.0, 0.0)
    p = {id(e): p_answerable(e, model) for e in examples}
    for t in np.round(np.arange(0.01, 0.99, 0.005), 4).tolist():
        per_set: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for e in examples:
            hit = p[id(e)] >= t
            kind = goal_kind(e.kind)
            per_set[e.set][kind].append(hit if kind == "answerable" else not hit)
        met = 0
        scores = []
        for kinds in per_set.values():
            rate = {k: float(np.mean(v)) for k, v in kinds.items() if v}
            met += sum(r >= GOALS[k] for k, r in rate.items())
            scores.append(sum(min(r / GOALS[k], 1.0) for k, r in rate.items()))
        score = float(np.mean(scores))
        if (met, score) > (best[0], best[1] + 1e-9):
            best = (met, score, t)
    return best[2]


def goal_score(rates_of_set: dict[str, float]) -> float:
    """Mean over kinds of a set's rate against its goal, each capped at the goal (1.0: every
    goal met); the off-topic "fit" half is not scored."""
    scores = [
        min(v / GOALS[goal_kind(k)], 1.0) for k, v in rates_of_set.items() if k != "offtopic-fit"
    ]
    return float(np.mean(scores)) if scores else 0.0


def ece_by_pair(examples: list[Example], model: Any, threshold: float) -> dict[str, Any]:
    """ECE of P(relevant) over the ten best passages of answered answerable questions (what
    /search shows, before de-duplication), per language pair."""
    from medcite.service.evaluate import expected_calibration_error

    by_pair: dict[str, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    for e in examples:
        pa = p_answerable(e, model)
        if e.kind != "answerable" or pa < threshold:
            continue
        rel = model.probability(e.x)
        for i in np.argsort(-rel, kind="stable")[:10].tolist():
            for pair in (f"{e.qlang}->{e.plang[i]}", "all"):
                by_pair[pair][0].append(pa * float(rel[i]))
                by_pair[pair][1].append(int(e.y[i]))
    return {
        pair: {"passages": len(ps), "ece": expected_calibration_error(ps, ys)}
        for pair, (ps, ys) in sorted(by_pair.items())
    }


def report_through_search(
    evaldata: Path,
    work: Path,
    per_set: int,
    wanted: set[str] | None,
    settings: Any,
    embedder: Any,
    added: list[Path],
) -> None:
    """Every figure through the search function of ``/search`` (see --report)."""
    from medcite.index.cache import EmbeddingCache, embed_cached
    from medcite.index.lexicon import load_lexicon
    from medcite.index.search import search
    from medcite.index.store import load_index
    from medcite.service.evaluate import ensure_index, evaluate_loaded

    method = settings.fusion + ("+expand" if settings.expand else "")
    search_settings = settings.search(embedder.name)
    lexicon = load_lexicon(expand=search_settings.expand)
    out: dict[str, Any] = {"min_relevance": search_settings.threshold, "sets": {}}
    for qs in question_sets(evaldata, work, per_set, added):
        if wanted is not None and qs.name not in wanted:
            continue
        index_dir = ensure_index(
            qs.corpus, settings, work / f"index-{qs.name}", embedder=embedder, progress=True
        )
        index = load_index(index_dir)
        row: dict[str, Any] = {"answerable_questions": len(qs.answerable)}
        for gate in (True, False):
            r = evaluate_loaded(
                index,
                embedder,
                qs.answerable,
                {},
                qs.qrels,
                settings,
                [method],
                lexicon=lexicon,
                gate=gate,
            )
            keys = ("answered", "ndcg@10", "recall@10", "mrr@10", "ece") if gate else METRICS
            row["gated" if gate else "ungated"] = {k: r.get(k) for k in keys}
            if gate:
                row["by_language"] = r["per_language"]
        cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
        try:
            for kind, questions in sorted(qs.unanswerable.items()):
                if kind == "offtopic-fit":
                    continue
                texts = list(questions.values())
                vectors, _ = embed_cached(embedder, texts, kind="query", cache=cache)
                abstained = sum(
                    not search(
                        index,
                        embedder,
                        t,
                        k=10,
                        settings=search_settings,
                        lexicon=lexicon,
                        query_vector=v,
                    ).answerable
                    for t, v in zip(texts, vectors, strict=True)
                )
                row[f"abstained on {kind}"] = {
                    "questions": len(texts),
                    "rate": round(abstained / len(texts), 4),
                }
        finally:
            cache.close()
        out["sets"][qs.name] = row
        print(f"{qs.name}: {json.dumps(row)}", flush=True)
    path = work / "report_through_search.json"
    path.write_text(json.dumps(out, indent=1), "utf-8")
    print(f"wrote {path}", file=sys.stderr)


METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaldata", type=Path, default=REPO.parent / "shared" / "evaldata")
    parser.add_argument("--work", type=Path, default=None, help="indexes and feature cache")
    parser.add_argument(
        "--per-set", type=int, default=4000, help="answerable questions per set, at most"
    )
    parser.add_argument(
        "--sets", default=None, help="comma-separated set names to use (default: all found)"
    )
    parser.add_argument("--write", action="store_true", help="update index/relevance.json")
    parser.add_argument("--out", type=Path, help="write the model to this file instead")
    parser.add_argument("--report", action="store_true", help="measure through /search")
    parser.add_argument(
        "--drop",
        default="",
        help="comma-separated features to fit without (e.g. window_over_p95,sentence_gain "
        "to measure what the sentence windows add)",
    )
    parser.add_argument("--all", action="store_true", help="--report on every question")
    parser.add_argument(
        "--add",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="your own judged corpus, one more set (BEIR folder: corpus.jsonl or corpus/, "
        "queries.jsonl, qrels.tsv); repeatable",
    )
    args = parser.parse_args()

    from medcite.index.embed import load_embedder, set_threads
    from medcite.service.settings import Settings

    set_threads(1)
    settings = Settings()
    work = args.work or settings.cache_dir / "calibration"
    work.mkdir(parents=True, exist_ok=True)
    embedder = load_embedder(settings.model, cache_dir=settings.cache_dir)
    wanted = set(args.sets.split(",")) if args.sets else None
    DROPPED.update(f for f in args.drop.split(",") if f)
    if args.report:
        per_set = 10**9 if args.all else args.per_set
        report_through_search(args.evaldata, work, per_set, wanted, settings, embedder, args.add)
        return
    examples: list[Example] = []
    for qs in question_sets(args.evaldata, work, args.per_set, args.add):
        if wanted is not None and qs.name not in wanted:
            continue
        t0 = time.perf_counter()
        got = collect_cached(qs, work, settings, embedder)
        examples += got
        print(f"{qs.name}: {len(got)} questions in {time.perf_counter() - t0:.0f} s", flush=True)

    train_kinds = {"answerable", "offtopic-fit", "removed-topic", "health"}
    sets = sorted({e.set for e in examples})
    report: dict[str, Any] = {"leave_one_out": {}, "question_c": {}}

    def held_out(held: str, question_c: float) -> tuple[list[Example], Any, float]:
        group = held.split("_removed")[0]  # the removed-topic variant goes with its corpus
        train = [
            e for e in examples if e.set.split("_removed")[0] != group and e.kind in train_kinds
        ]
        test = [e for e in examples if e.set == held and e.kind != "offtopic-fit"]
        model = fit(train, question_c=question_c)
        return test, model, choose_threshold(train, model)

    print("\nregularisation of P(answerable), by leaving one corpus out (mean goal score):")
    for c in QUESTION_C_GRID:
        scores = []
        for held in sets:
            test, model, threshold = held_out(held, c)
            scores.append(goal_score(rates(test, model, threshold).get(held, {})))
        report["question_c"][str(c)] = round(float(np.mean(scores)), 4)
        print(f"  C={c:<5} {np.mean(scores):.4f} (worst set {min(scores):.4f})", flush=True)
    question_c = max(QUESTION_C_GRID, key=lambda c: (report["question_c"][str(c)], -c))
    report["chosen_question_c"] = question_c
    print(f"  chosen: C={question_c}")

    print("\nleave one corpus out (fit on the others + off-topic 'fit' half):")
    for held in sets:
        test, model, threshold = held_out(held, question_c)
        result = {
            "threshold": threshold,
            "rates": rates(test, model, threshold).get(held, {}),
            "ece": ece_by_pair(test, model, threshold),
        }
        by_lang: dict[str, dict[str, float]] = {}
        for lang in ("en", "zh"):
            sub = [e for e in test if e.qlang == lang]
            if sub:
                by_lang[lang] = rates(sub, model, threshold).get(held, {})
        result["by_question_language"] = by_lang
        report["leave_one_out"][held] = result
        print(f"  {held:<24} threshold {threshold:.3f} {json.dumps(result['rates'])}")
        for lang, r in by_lang.items():
            print(f"  {'':<24} {lang}: {json.dumps(r)}")
        print(f"  {'':<24} ECE {json.dumps({k: v['ece'] for k, v in result['ece'].items()})}")

    final_train = [e for e in examples if e.kind in train_kinds]
    model = fit(final_train, question_c=question_c)
    threshold = choose_threshold(final_train, model)
    model = dataclasses.replace(model, threshold=threshold)
    report["final"] = {
        "threshold": threshold,
        "passage coef": dict(
            zip(model.passage.features, [round(c, 4) for c in model.passage.coef], strict=True)
        ),
        "question coef": dict(
            zip(model.question.features, [round(c, 4) for c in model.question.coef], strict=True)
        ),
        "rates (fit data; off-topic held-out half is held out)": rates(examples, model, threshold),
        "ece": ece_by_pair(examples, model, threshold),
    }
    print(f"\nfinal model: threshold {threshold:.3f} on P(answerable)")
    for name, c in report["final"]["passage coef"].items():
        print(f"  passage  {name:<16} {c:+.4f}")
    for s_name, r in rates(examples, model, threshold).items():
        print(f"  {s_name:<24} {json.dumps(r)}")
    print(f"  ECE {json.dumps({k: v['ece'] for k, v in report['final']['ece'].items()})}")
    (work / "calibration_report.json").write_text(json.dumps(report, indent=1), "utf-8")
    if args.write or args.out:
        path = args.out or REPO / "index" / "relevance.json"
        data = json.loads(path.read_text("utf-8")) if path.is_file() else {"models": {}}
        entry = model.to_json()
        entry["fitted_on"] = (
            f"{time.strftime('%Y-%m-%d')}: " + ", ".join(sets) + " + off-topic 'fit' half"
            "; P(answerable) with each kind of question weighing the same within a set, "
            f"C={question_c} by leaving one corpus out"
        ) + (f"; without the features {', '.join(sorted(DROPPED))}" if DROPPED else "")
        data.setdefault("models", {})[embedder.name] = entry
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", "utf-8")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
