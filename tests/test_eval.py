"""``medcite eval`` on a tiny BEIR set with hand-computed metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import write_relevance_model

from medcite.service.cli import main


def write_set(root: Path) -> tuple[Path, Path, Path]:
    root.mkdir()
    docs = [
        {"id": "d1", "title": "alpha", "text": "apple orchard harvest"},
        {"id": "d2", "title": "beta", "text": "banana banana"},
        {"id": "d3", "title": "gamma", "text": "banana fruit yellow peel"},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n", "utf-8")
    queries = [
        {"id": "q1", "text": "apple"},
        {"id": "q2", "text": "banana"},
        {"id": "q3", "text": "x"},
    ]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n", "utf-8")
    (root / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td1\t1\nq2\td3\t1\nq2\td2\t0\n", "utf-8"
    )
    return root / "corpus.jsonl", root / "queries.jsonl", root / "qrels.tsv"


def test_bm25_ranking_metrics_match_hand_computation(tmp_path: Path) -> None:
    corpus, queries, qrels = write_set(tmp_path / "set")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(main, [*args, "--methods", "bm25", "--no-gate", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gate"] is False and "answered" not in report
    # q1 "apple": d1 first -> nDCG 1, MRR 1. q2 "banana": d2 (not relevant), d3, d1 (no match).
    assert report["queries"] == 2  # q3 has no judgement; q2's grade-0 line is ignored
    assert report["ndcg@10"] == pytest.approx((1 + NDCG_Q2) / 2, abs=1e-4)
    assert report["recall@10"] == pytest.approx(1.0)
    assert report["recall@100"] == pytest.approx(1.0)
    assert report["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert report["per_language"]["en"]["queries"] == 2
    # The second run reuses the index built by the first.
    again = CliRunner().invoke(main, [*args, "--methods", "bm25,dense", "--no-gate"], env=env)
    assert again.exit_code == 0, again.output
    assert "bm25" in again.stdout and "dense" in again.stdout


NDCG_Q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
# A hand-made model: a BM25 match makes a passage relevant and a question answerable.
LEXICAL_MATCH: dict[str, Any] = {
    "lexical_match": 10.0,
    "intercept": -5.0,
    "question": {"max5:lexical_match": 10.0, "intercept": -5.0},
}


def test_gated_eval_scores_what_search_returns(tmp_path: Path) -> None:
    """Through the gate: P(relevant | answerable) = sigmoid(10 x lexical_match - 5), 0.9933
    for a passage with a BM25 match and 0.0067 without; P(answerable) the same of the best
    five's max, so the threshold 0.5 answers q1 and q2 and abstains on q4, which matches
    nothing. A passage's score is the product of the two."""
    corpus, queries, qrels = write_set(tmp_path / "set")
    with queries.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "q4", "text": "weather tomorrow", "answerable": False}) + "\n")
    model = write_relevance_model(tmp_path / "model.json", **LEXICAL_MATCH)
    env = {
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_RELEVANCE_MODEL": str(model),
    }
    run = tmp_path / "run.txt"
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(
        main, [*args, "--methods", "bm25,dense", "--run-file", str(run), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gate"] is True and report["k"] == 10 and report["min_relevance"] == 0.5
    assert report["answered"] == 1.0
    assert report["abstention"] == {"unanswerable_queries": 1, "abstained": 1, "rate": 1.0}
    # Ordered by P, then by the fused (BM25) score: q1 d1 first; q2 d2, d3, then d1.
    assert report["ndcg@10"] == pytest.approx((1 + NDCG_Q2) / 2, abs=1e-4)
    assert report["recall@100"] is None  # /search returns 10 passages
    # ECE: bin 0.9 holds q1-d1 (relevant), q2-d2 (not), q2-d3 (relevant); bin 0.0 holds
    # q1-d2, q1-d3 (not) and q2-d1 (relevant); scores are P(answerable) x P(relevant | ...).
    p_hi, p_lo = 1 / (1 + math.exp(-5)), 1 / (1 + math.exp(5))
    ece = (abs(p_hi * p_hi - 2 / 3) + abs(p_hi * p_lo - 1 / 3)) / 2
    assert report["ece"] == pytest.approx(ece, abs=1e-4)
    bm25_run = tmp_path / "run.bm25.txt"
    lines = bm25_run.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "d1", "1", lines[0].split()[4], "medcite-bm25"]
    assert {line.split()[0] for line in lines} == {"q1", "q2"}

    # A threshold nothing reaches: every question abstains and scores 0.
    strict = CliRunner().invoke(
        main, [*args, "--methods", "bm25", "--json"], env=env | {"MEDCITE_MIN_RELEVANCE": "1"}
    )
    assert strict.exit_code == 0, strict.output
    report = json.loads(strict.stdout)
    assert report["answered"] == 0.0 and report["ndcg@10"] == 0.0
    assert report["abstention"]["rate"] == 1.0


def test_run_files_and_compare(tmp_path: Path) -> None:
    corpus, queries, qrels = write_set(tmp_path / "set")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    run = tmp_path / "run.txt"
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(
        main,
        [*args, "--methods", "bm25,dense", "--no-gate", "--run-file", str(run), "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    bm25_run = tmp_path / "run.bm25.txt"
    compared = CliRunner().invoke(
        main,
        [
            "compare",
            str(bm25_run),
            str(tmp_path / "run.dense.txt"),
            "--qrels",
            str(qrels),
            "--json",
        ],
    )
    assert compared.exit_code == 0, compared.output
    out = json.loads(compared.stdout)
    assert out["queries"] == 2
    assert out["a"] == pytest.approx(report["methods"]["bm25"]["ndcg@10"], abs=1e-4)
    assert out["b"] == pytest.approx(report["methods"]["dense"]["ndcg@10"], abs=1e-4)
    assert out["delta"] == pytest.approx(out["b"] - out["a"], abs=1e-4)


def test_index_dir_is_reused_when_it_matches_and_rebuilt_when_not(tmp_path: Path) -> None:
    corpus, queries, qrels = write_set(tmp_path / "set")
    idx = tmp_path / "idx"
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    args += ["--index-dir", str(idx), "--methods", "dense", "--json"]
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}

    def version() -> str:
        return (idx / "CURRENT").read_text().strip()

    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    first = version()
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    assert version() == first  # same corpus, model and settings: reused
    other = CliRunner().invoke(main, args, env=env | {"MEDCITE_MODEL": "hashing-16"})
    assert other.exit_code == 0, other.output
    assert version() != first  # another model: rebuilt there, not refused
    rechunked = env | {"MEDCITE_MODEL": "hashing-16", "MEDCITE_CHUNK_MAX_TOKENS": "32"}
    assert CliRunner().invoke(main, args, env=rechunked).exit_code == 0
    assert (
        json.loads((idx / version() / "manifest.json").read_text())["chunker"]["max_tokens"] == 32
    )


def test_inline_judgements_rank_source_files(tmp_path: Path) -> None:
    """The seed development set's form: folder corpus, "relevant" file lists in the
    query file, no qrels; an empty list is an unanswerable question."""
    corpus = tmp_path / "articles"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Apple orchard harvest.\n", "utf-8")
    (corpus / "b.txt").write_text("Banana banana.\n", "utf-8")
    (corpus / "c.txt").write_text("Banana fruit with a yellow peel.\n", "utf-8")
    queries = tmp_path / "queries.jsonl"
    rows = [
        {"id": "q1", "text": "apple", "relevant": ["a.txt"]},
        {"id": "q2", "text": "banana", "relevant": ["c.txt", "a.txt"]},
        {"id": "q3", "text": "weather tomorrow", "relevant": []},
    ]
    queries.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    env["MEDCITE_RELEVANCE_MODEL"] = str(
        write_relevance_model(tmp_path / "model.json", **LEXICAL_MATCH)
    )
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--json"]
    result = CliRunner().invoke(main, [*args, "--methods", "bm25"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unit"] == "source"
    assert report["queries"] == 2
    # q1: a.txt first. q2 "banana": b.txt (not relevant), c.txt, then a.txt (no match).
    assert report["ndcg@10"] == pytest.approx((1 + NDCG_Q2) / 2, abs=1e-4)
    assert report["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert report["abstention"] == {"unanswerable_queries": 1, "abstained": 1, "rate": 1.0}


def test_eval_needs_judgements(tmp_path: Path) -> None:
    corpus, queries, _ = write_set(tmp_path / "set")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(
        main, ["eval", "--corpus", str(corpus), "--queries", str(queries)], env=env
    )
    assert result.exit_code != 0
    assert "no judgements" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_eval_scores_exactly_what_search_batch_returns(
    tmp_path: Path, seed_index_dir: Path, seed_engine: Any
) -> None:
    """Real model, bundled corpus: the ranking `medcite eval` scores (its TREC run) and its
    answered / abstained counts are those of POST /search/batch with k=10."""
    from fastapi.testclient import TestClient
    from support import CORPUS, REPO, cache_dir

    from medcite.service.app import create_app
    from medcite.service.settings import Settings

    rows = [
        json.loads(line)
        for line in (REPO / "bench" / "data" / "bundled_questions.jsonl").read_text().splitlines()
    ][::3]
    rows += [
        {"id": "off1", "text": "how do I change a flat tyre on my car", "relevant": []},
        {"id": "off2", "text": "红烧肉怎么做好吃", "relevant": []},
    ]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    run = tmp_path / "run.txt"
    env = {"MEDCITE_CACHE_DIR": str(cache_dir())}
    args = ["eval", "--corpus", str(CORPUS), "--queries", str(queries), "--json"]
    args += ["--index-dir", str(seed_index_dir), "--run-file", str(run)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gate"] is True and report["unit"] == "source"
    ranked: dict[str, list[str]] = {}
    for line in run.read_text().splitlines():
        qid, _, doc, rank, _, _ = line.split()
        ranked.setdefault(qid, []).append(doc)
        assert int(rank) == len(ranked[qid])

    settings = Settings(index_dir=seed_index_dir, cache_dir=cache_dir(), rate_limit_per_minute=0)
    with TestClient(create_app(settings, engine=seed_engine)) as client:
        body = {"queries": [{"query": r["text"], "k": 10} for r in rows]}
        response = client.post("/search/batch", json=body)
    assert response.status_code == 200, response.text
    answerable = [r for r in rows if r["relevant"]]
    answered = 0
    abstained = 0
    for row, got in zip(rows, response.json()["results"], strict=True):
        files = list(dict.fromkeys(p["source"] for p in got["passages"]))
        if row["relevant"]:
            answered += got["answerable"]
            assert files == ranked.get(row["id"], []), row["text"]
        else:
            abstained += not got["answerable"]
            assert row["id"] not in ranked
    assert report["answered"] == round(answered / len(answerable), 4)
    assert report["abstention"]["abstained"] == abstained >= 2  # the two off-topic ones
