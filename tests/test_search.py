"""Hybrid search over a real FAISS + BM25 index (fast: fake embedder, tiny corpus)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import hand_model

from medcite.index.build import BuildSettings, build_index
from medcite.index.embed import HashingEmbedder
from medcite.index.errors import EmptyQuery, QueryTooLong
from medcite.index.lexicon import Lexicon
from medcite.index.search import SearchSettings, rank_documents, search
from medcite.index.store import LoadedIndex, load_index
from medcite.ingest import load
from medcite.ingest.types import ChunkSettings

ARTICLES = {
    "pregnancy.txt": "Back pain in pregnancy\n\nBack pain is common in pregnancy. The growing "
    "uterus shifts the centre of gravity. Relaxin loosens the joints of the pelvis.\n",
    "miscarriage.txt": "Back pain after miscarriage\n\nAfter a miscarriage the uterus contracts. "
    "The contractions can cause lower back pain. Rest and warmth help.\n",
    "teeth.txt": "Healthy teeth\n\nBrush your teeth twice a day. Floss once a day.\n",
    "zh.txt": "流产后腰疼\n\n流产后子宫收缩可能引起腰疼。注意休息，保持温暖。\n",
}
EMB = HashingEmbedder(64)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LoadedIndex:
    root = tmp_path_factory.mktemp("corpus")
    for name, text in ARTICLES.items():
        (root / name).write_text(text, encoding="utf-8")
    out = tmp_path_factory.mktemp("idx")
    build_index(
        load([root]),
        EMB,
        index_dir=out,
        settings=BuildSettings(chunking=ChunkSettings(max_tokens=12)),
        cache=None,
    )
    return load_index(out)


OPEN = SearchSettings(max_per_doc=50, near_duplicate_cosine=1.01)


def test_dense_ranking_matches_brute_force(lexicon: Lexicon, index: LoadedIndex) -> None:
    query = "uterus contractions back pain"
    result = search(
        index,
        EMB,
        query,
        k=50,
        language="en",
        settings=replace(OPEN, fusion="dense"),
        lexicon=lexicon,
    )
    qv = EMB.embed([query], kind="query")[0]
    rows = [i for i, c in enumerate(index.chunks) if c.language == "en"]
    expected = sorted(rows, key=lambda r: -float(index.vectors[r] @ qv))
    assert [h.row for h in result.hits] == expected
    assert [h.score for h in result.hits] == pytest.approx(
        [float(index.vectors[r] @ qv) for r in expected], abs=1e-5
    )


def test_bm25_ranks_the_lexical_match_first(lexicon: Lexicon, index: LoadedIndex) -> None:
    result = search(
        index, EMB, "floss teeth", k=3, settings=replace(OPEN, fusion="bm25"), lexicon=lexicon
    )
    assert result.hits[0].chunk.source == "teeth.txt"
    assert result.hits[0].lexical > 0


def test_hits_carry_exact_spans(lexicon: Lexicon, index: LoadedIndex) -> None:
    result = search(index, EMB, "back pain", k=10, settings=OPEN, lexicon=lexicon)
    assert result.answerable and result.hits
    for hit in result.hits:
        c = hit.chunk
        assert index.sources[c.source].text[c.start : c.end] == c.text


def test_per_document_limit_and_language_filter(lexicon: Lexicon, index: LoadedIndex) -> None:
    result = search(
        index, EMB, "back pain", k=50, settings=replace(OPEN, max_per_doc=1), lexicon=lexicon
    )
    docs = [h.chunk.doc_id for h in result.hits]
    assert len(docs) == len(set(docs))
    zh = search(index, EMB, "back pain", k=50, language="zh", settings=OPEN, lexicon=lexicon)
    assert zh.hits and {h.chunk.language for h in zh.hits} == {"zh"}


def test_near_identical_passages_are_not_repeated(lexicon: Lexicon, index: LoadedIndex) -> None:
    result = search(
        index,
        EMB,
        "back pain",
        k=50,
        settings=replace(OPEN, near_duplicate_cosine=0.0),
        lexicon=lexicon,
    )
    assert len(result.hits) == 1


def test_abstains_when_p_answerable_is_under_the_threshold(
    lexicon: Lexicon, index: LoadedIndex
) -> None:
    # P(answerable) = sigmoid(top:fused): the best candidate's fused score is 1.0 -> 0.73.
    model = hand_model(0.5, question={"top:fused": 1.0}, fused=1.0)
    result = search(
        index, EMB, "back pain", k=5, settings=replace(OPEN, relevance=model), lexicon=lexicon
    )
    assert result.answerable and result.p_answerable == pytest.approx(1 / (1 + np.exp(-1)))
    strict = replace(OPEN, relevance=model, min_relevance=0.99)
    result = search(index, EMB, "back pain", k=5, settings=strict, lexicon=lexicon)
    assert not result.answerable and result.hits == ()
    assert result.p_answerable is not None and result.p_answerable < 0.99
    # Abstention switched off: the passages are shown all the same.
    result = search(
        index, EMB, "back pain", k=5, settings=replace(strict, abstain=False), lexicon=lexicon
    )
    assert result.answerable and result.hits


def test_scores_are_p_answerable_times_p_relevant_best_first(
    lexicon: Lexicon, index: LoadedIndex
) -> None:
    model = hand_model(0.1, question={"intercept": 1.0}, dense_gap=8.0, fused=2.0, intercept=-1.0)
    result = search(
        index,
        EMB,
        "back pain uterus",
        k=50,
        settings=replace(OPEN, relevance=model),
        lexicon=lexicon,
    )
    p_answerable = 1 / (1 + np.exp(-1.0))
    assert result.p_answerable == pytest.approx(p_answerable)
    scores = [h.score for h in result.hits]
    assert scores and all(0.0 < s < p_answerable for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert index.probes is not None  # measured by the first search with a model
    assert {"en->en", "en->zh", "zh->en", "zh->zh"} <= set(index.probes.levels)


def test_the_model_decides_which_languages_are_shown(lexicon: Lexicon, index: LoadedIndex) -> None:
    # P(relevant | answerable) 0.99 for same-language passages, 0.007 for the others: they
    # rank last, and with k=3 an English question shows only English passages.
    model = hand_model(0.5, same_language=10.0, intercept=-5.0)
    settings = replace(OPEN, relevance=model)
    result = search(index, EMB, "back pain uterus", k=3, settings=settings, lexicon=lexicon)
    assert result.answerable and {h.chunk.language for h in result.hits} == {"en"}
    everything = search(index, EMB, "back pain uterus", k=50, settings=settings, lexicon=lexicon)
    languages = [h.chunk.language for h in everything.hits]
    assert "zh" in languages and languages.index("zh") > languages.count("en") - 1
    # The other language rated likely relevant (> 0.5): its best passage takes the last of
    # the k places even when the question's language fills them.
    model = hand_model(0.5, same_language=3.0, intercept=0.5)  # en 0.97, zh 0.62
    result = search(
        index,
        EMB,
        "back pain uterus",
        k=3,
        settings=replace(OPEN, relevance=model),
        lexicon=lexicon,
    )
    assert [h.chunk.language for h in result.hits] == ["en", "en", "zh"]


def test_both_languages_are_merged_when_both_clear(lexicon: Lexicon, index: LoadedIndex) -> None:
    result = search(index, EMB, "back pain uterus", k=50, settings=OPEN, lexicon=lexicon)
    assert {h.chunk.language for h in result.hits} == {"en", "zh"}


def test_bad_queries_raise_domain_errors(lexicon: Lexicon, index: LoadedIndex) -> None:
    with pytest.raises(EmptyQuery):
        search(index, EMB, "  \n ", settings=OPEN, lexicon=lexicon)
    with pytest.raises(QueryTooLong):
        search(index, EMB, "pain " * 500, settings=OPEN, lexicon=lexicon)
    # punctuation only: no lexical tokens, still a valid (dense) search
    assert search(index, EMB, "?!", settings=OPEN, lexicon=lexicon).query == "?!"


def test_rank_documents_groups_chunks_by_doc(lexicon: Lexicon, index: LoadedIndex) -> None:
    qv = EMB.embed(["back pain"], kind="query")[0]
    ranked = rank_documents(index, EMB, qv, "back pain", k=10, settings=OPEN, lexicon=lexicon)
    docs = [d for d, _ in ranked]
    assert len(docs) == len(set(docs)) == len(ARTICLES)
    assert np.all(np.diff([s for _, s in ranked]) <= 1e-9)


@pytest.mark.parametrize(("boost", "first"), [(0, "rest.txt"), (3, "warmth.txt")])
def test_title_boost_ranks_the_titled_topic_first(
    lexicon: Lexicon, tmp_path: Path, boost: int, first: str
) -> None:
    """A word in a document's title counts ``1 + boost`` times in each of its chunks."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "warmth.txt").write_text(
        "Warmth\n\nA hot water bottle on the lower back eases cramps after a miscarriage.\n",
        encoding="utf-8",
    )
    (root / "rest.txt").write_text(
        "Rest\n\nRest helps. Warmth helps. Warmth and rest.\n", encoding="utf-8"
    )
    out = tmp_path / "idx"
    build_index(
        load([root]), EMB, index_dir=out, settings=BuildSettings(bm25_title_boost=boost), cache=None
    )
    built = load_index(out)
    assert built.manifest.lexical.title_boost == boost
    result = search(
        built, EMB, "warmth", k=2, settings=replace(OPEN, fusion="bm25"), lexicon=lexicon
    )
    assert result.hits[0].chunk.source == first
