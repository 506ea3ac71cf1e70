"""``medcite eval`` on a tiny BEIR set with hand-computed metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main


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


def test_bm25_metrics_match_hand_computation(tmp_path: Path) -> None:
    corpus, queries, qrels = write_set(tmp_path / "set")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(main, [*args, "--methods", "bm25", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # q1 "apple": d1 first -> nDCG 1, MRR 1. q2 "banana": d2 (not relevant), d3, d1 (no match).
    ndcg_q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert report["queries"] == 2  # q3 has no judgement; q2's grade-0 line is ignored
    assert report["ndcg@10"] == pytest.approx((1 + ndcg_q2) / 2, abs=1e-4)
    assert report["recall@10"] == pytest.approx(1.0)
    assert report["recall@100"] == pytest.approx(1.0)
    assert report["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert report["per_language"]["en"]["queries"] == 2
    # The second run reuses the index built by the first.
    again = CliRunner().invoke(main, [*args, "--methods", "bm25,dense"], env=env)
    assert again.exit_code == 0, again.output
    assert "bm25" in again.stdout and "dense" in again.stdout


def test_run_files_compare_and_abstention_figures(tmp_path: Path) -> None:
    corpus, queries, qrels = write_set(tmp_path / "set")
    with queries.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "q4", "text": "weather tomorrow", "answerable": False}) + "\n")
    env = {
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        # A gate nothing clears: every query abstains.
        "MEDCITE_THRESHOLDS": '{"en->en": 1.5}',
    }
    run = tmp_path / "run.txt"
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(
        main, [*args, "--methods", "bm25,dense", "--run-file", str(run), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["abstention"] == {
        "answerable_queries": 2,
        "unanswerable_queries": 1,
        "abstained_on_answerable": 2,
        "abstained_on_unanswerable": 1,
        "precision": pytest.approx(1 / 3, abs=1e-4),
        "recall": 1.0,
    }
    bm25_run = tmp_path / "run.bm25.txt"
    lines = bm25_run.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "d1", "1", lines[0].split()[4], "medcite-bm25"]
    assert {line.split()[0] for line in lines} == {"q1", "q2"}

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
    args = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--json"]
    result = CliRunner().invoke(main, [*args, "--methods", "bm25"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unit"] == "source"
    assert report["queries"] == 2
    # q1: a.txt first. q2 "banana": b.txt (not relevant), c.txt, then a.txt (no match).
    ndcg_q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert report["ndcg@10"] == pytest.approx((1 + ndcg_q2) / 2, abs=1e-4)
    assert report["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert report["abstention"]["unanswerable_queries"] == 1


def test_eval_needs_judgements(tmp_path: Path) -> None:
    corpus, queries, _ = write_set(tmp_path / "set")
    env = {"MEDCITE_MODEL": "hashing-32", "MEDCITE_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(
        main, ["eval", "--corpus", str(corpus), "--queries", str(queries)], env=env
    )
    assert result.exit_code != 0
    assert "no judgements" in result.output
    assert "Traceback" not in result.output
