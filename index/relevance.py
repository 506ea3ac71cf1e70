"""Relevance as a calibrated probability: P(relevant) for each candidate passage.

The ranking decides the order; this module decides what a number means. Every candidate
of a search gets features (below); a question-level logistic model turns the features of
its best candidates into P(answerable), the probability that the corpus answers the
question at all, and a passage-level one turns each candidate's into P(relevant |
answerable). A passage's ``score`` is their product, P(relevant): comparable across
questions, languages and corpora, and never 1.0 because a passage was admitted alone. The
service abstains when P(answerable) is under one threshold; passages, whatever their
language, are ordered by their score.

Corpus-aware without labels from the user: a raw cosine means different things in different
corpora (and language pairs), so the dense features are measured against *probe levels*:
how high a bank of off-topic questions (``index/probes.jsonl``, both languages) scores
against this very index, per (question language -> passage language). The levels are
computed when an index is loaded (:func:`probe_levels`), so a user's own corpus is
calibrated the moment it is served.

The coefficients are fitted by ``bench/calibrate_relevance.py`` on the development sets and
stored, as plain numbers, in ``index/relevance.json`` per embedding model.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medcite.index.errors import RelevanceModelError

LOG = logging.getLogger(__name__)

# Probe levels per "qlang->plang": mean, standard deviation and 95th percentile of the best
# cosine each probe question of language qlang reaches in partition plang.
PROBE_STATS = ("mean", "std", "p95")

FEATURES: tuple[str, ...] = (
    "dense_over_p95",  # cosine minus the pair's off-topic 95th percentile
    "dense_z",  # (cosine - off-topic mean) / off-topic std, for the pair
    "dense_gap",  # cosine minus the question's best cosine (<= 0)
    "dense_spread",  # cosine minus the median cosine of its partition's candidates
    "lexical_rel",  # BM25 / the question's best BM25 (0 when nothing matched)
    "lexical_match",  # 1 when BM25 matched at all
    "coverage",  # share of the question's lexical tokens found in the passage
    "fused",  # convex fused score (min-max within the question)
    "same_language",  # passage language == question language
    "query_tokens",  # log(1 + lexical tokens in the question)
    "fused_rank",  # log(rank by fused score)
    "window_over_p95",  # best sentence window (a sentence and its neighbours) minus p95
    "sentence_gain",  # best single sentence's cosine minus the chunk's
)


@dataclass(frozen=True)
class ProbeLevels:
    """Off-topic score levels of one index: ``levels["zh->en"] = (mean, std, p95)``."""

    levels: Mapping[str, tuple[float, float, float]]
    probes: int = 0

    def of(self, pair: str) -> tuple[float, float, float]:
        # A pair without probes (no probe of that language): a neutral level.
        return self.levels.get(pair, (0.8, 0.03, 0.85))


@dataclass(frozen=True)
class Probe:
    text: str
    language: str


def load_probes() -> list[Probe]:
    """The shipped off-topic probe bank (both languages)."""
    text = resources.files("medcite.index").joinpath("probes.jsonl").read_text("utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Probe(str(row["text"]), str(row["lang"])))
    return out


def probe_levels(
    vectors: np.ndarray,
    rows_by_language: Mapping[str, np.ndarray],
    probe_vectors: np.ndarray,
    probe_languages: Sequence[str],
    *,
    block: int = 65_536,
) -> ProbeLevels:
    """Best cosine of every probe in every partition (exact, in blocks of chunk rows), then
    its mean, std and 95th percentile per (probe language -> partition language)."""
    langs = np.asarray(probe_languages)
    levels: dict[str, tuple[float, float, float]] = {}
    pv = np.ascontiguousarray(probe_vectors, dtype=np.float32)
    for plang, rows in sorted(rows_by_language.items()):
        if rows.size == 0:
            continue
        best = np.full(pv.shape[0], -np.inf, dtype=np.float32)
        for start in range(0, rows.size, block):
            part = np.asarray(vectors[rows[start : start + block]], dtype=np.float32)
            best = np.maximum(best, (part @ pv.T).max(axis=0))
        for qlang in sorted(set(langs.tolist())):
            b = best[langs == qlang].astype(np.float64)
            levels[f"{qlang}->{plang}"] = (
                float(b.mean()),
                float(max(b.std(), 1e-3)),
                float(np.percentile(b, 95)),
            )
    return ProbeLevels(levels, probes=int(pv.shape[0]))


# The question's features: those of its best candidate by fused score, and the maximum of
# each over its five best (ranked by fused score).
QUESTION_TOP = 5
QUESTION_FEATURES: tuple[str, ...] = tuple(f"top:{f}" for f in FEATURES) + tuple(
    f"max{QUESTION_TOP}:{f}" for f in FEATURES
)


def question_features(x: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """The :data:`QUESTION_FEATURES` row of one question from its candidates' features."""
    if x.shape[0] == 0:
        return np.zeros(len(QUESTION_FEATURES), dtype=np.float64)
    order = np.argsort(-fused, kind="stable")[:QUESTION_TOP]
    return np.concatenate([x[order[0]], x[order].max(axis=0)])


@dataclass(frozen=True)
class Logistic:
    """A logistic regression over standardised, named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def probability(self, x: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
        """P(1) of each row of ``x``, whose columns are ``vocabulary``."""
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        cols = [vocabulary.index(f) for f in self.features]
        z = (x[:, cols] - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = np.clip(z @ np.asarray(self.coef) + self.intercept, -20.0, 20.0)
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], vocabulary: Sequence[str]) -> Logistic:
        features = tuple(str(f) for f in data["features"])
        unknown = [f for f in features if f not in vocabulary]
        if unknown:
            raise ValueError(f"unknown features {unknown}")
        model = cls(
            features=features,
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
        )
        if not (len(model.mean) == len(model.scale) == len(model.coef) == len(features)):
            raise ValueError("features, mean, scale and coef differ in length")
        values = (*model.mean, *model.scale, *model.coef, model.intercept)
        if not all(math.isfinite(v) for v in values) or 0.0 in model.scale:
            raise ValueError("a coefficient is not finite, or a scale is zero")
        return model


@dataclass(frozen=True)
class RelevanceModel:
    """P(relevant) of a passage = P(the corpus answers the question) x P(this passage is a
    relevant one | it does): two logistic models, and the abstention threshold on the first.

    Split this way because the two are learnt from different evidence: whether a question
    is answerable at all from answerable vs. unanswerable questions (off-topic, removed
    topics), which passage answers from the judgements of answerable ones. A development
    set that judges one answer per question (most do) says little about the first."""

    passage: Logistic  # over FEATURES, per candidate
    question: Logistic  # over QUESTION_FEATURES, per question
    threshold: float  # abstain when P(answerable) is below this
    fitted_on: str = ""

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(relevant | the question is answerable) of each candidate row of ``x``."""
        return self.passage.probability(x, FEATURES)

    def answerable(self, x: np.ndarray, fused: np.ndarray) -> float:
        """P(the corpus answers the question), from its candidates' features."""
        q = question_features(x, fused)[None, :]
        return float(self.question.probability(q, QUESTION_FEATURES)[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "passage": self.passage.to_json(),
            "question": self.question.to_json(),
            "threshold": self.threshold,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RelevanceModel:
        model = cls(
            passage=Logistic.from_json(data["passage"], FEATURES),
            question=Logistic.from_json(data["question"], QUESTION_FEATURES),
            threshold=float(data["threshold"]),
            fitted_on=str(data.get("fitted_on", "")),
        )
        if not 0.0 <= model.threshold <= 1.0:
            raise ValueError(f"threshold {model.threshold} is not a probability")
        return model


DEFAULT_MODEL_KEY = "intfloat/multilingual-e5-small"


def load_relevance_model(model_name: str, path: Path | None = None) -> RelevanceModel:
    """The fitted relevance model for ``model_name``, from ``path`` (a file written by
    bench/calibrate_relevance.py) or the shipped index/relevance.json.

    A model without a fit of its own gets the default model's: its dense features are
    relative to probe levels measured with the model in use, so they carry over (refit with
    bench/calibrate_relevance.py). Raises RelevanceModelError for an unusable file."""
    try:
        if path is None:
            text = resources.files("medcite.index").joinpath("relevance.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        models = json.loads(text)["models"]
        found = models.get(model_name)
        if found is None:
            key = DEFAULT_MODEL_KEY if DEFAULT_MODEL_KEY in models else sorted(models)[0]
            LOG.warning(
                "no relevance model fitted for %r: using the one fitted for %s "
                "(bench/calibrate_relevance.py fits one)",
                model_name,
                key,
            )
            found = models[key]
        return RelevanceModel.from_json(found)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        where = path if path is not None else "index/relevance.json"
        raise RelevanceModelError(
            f"the relevance model {where} cannot be used ({type(exc).__name__}: {exc}); "
            "write one with bench/calibrate_relevance.py --out FILE"
        ) from exc


def candidate_features(
    *,
    dense: np.ndarray,
    lexical: np.ndarray,
    fused: np.ndarray,
    languages: Sequence[str],
    query_language: str,
    coverage: np.ndarray,
    query_tokens: int,
    probes: ProbeLevels,
    window_best: np.ndarray,
    sentence_best: np.ndarray,
) -> np.ndarray:
    """The :data:`FEATURES` matrix of one question's candidates (aligned arrays)."""
    n = dense.size
    x = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return x
    d = dense.astype(np.float64)
    langs = np.asarray(languages)
    mean = np.empty(n)
    std = np.empty(n)
    p95 = np.empty(n)
    spread = np.empty(n)
    for lang in set(langs.tolist()):
        mask = langs == lang
        m, s, p = probes.of(f"{query_language}->{lang}")
        mean[mask], std[mask], p95[mask] = m, s, p
        spread[mask] = d[mask] - float(np.median(d[mask]))
    top_lex = float(lexical.max())
    order = np.argsort(-fused, kind="stable")
    rank = np.empty(n)
    rank[order] = np.arange(1, n + 1)
    x[:, 0] = d - p95
    x[:, 1] = (d - mean) / std
    x[:, 2] = d - d.max()
    x[:, 3] = spread
    x[:, 4] = lexical / top_lex if top_lex > 0 else 0.0
    x[:, 5] = lexical > 0
    x[:, 6] = coverage
    x[:, 7] = fused
    x[:, 8] = langs == query_language
    x[:, 9] = math.log1p(query_tokens)
    x[:, 10] = np.log(rank)
    x[:, 11] = window_best - p95
    x[:, 12] = sentence_best - d
    return x


def coverage(query_tokens: Iterable[str], passage_tokens: Collection[str]) -> float:
    """Share of the question's distinct lexical tokens that the passage holds."""
    wanted = set(query_tokens)
    if not wanted:
        return 0.0
    return sum(t in passage_tokens for t in wanted) / len(wanted)
