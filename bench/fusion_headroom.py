"""How much any fusion of two runs could gain: per-query oracles over TREC run files.

    python bench/fusion_headroom.py QRELS RUN_BM25 RUN_DENSE [RUN_FUSED]

Prints nDCG@10 of each run; of the per-query oracle that picks, for every query, the better
of the two single runs (an upper bound for choosing or weighting per query between them);
and of the "union oracle": the relevant documents found in either run's top 100, ranked
first (an upper bound for any re-ranking of the two candidate lists). Runs come from
`medcite eval --run-file`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import ir_measures

    from medcite.service.evaluate import load_qrels

    parser = argparse.ArgumentParser()
    parser.add_argument("qrels", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    qrels = load_qrels(args.qrels)
    measure = ir_measures.parse_measure("nDCG@10")

    def read_run(path: Path) -> dict[str, dict[str, float]]:
        run: dict[str, dict[str, float]] = {}
        for line in path.read_text("utf-8").splitlines():
            qid, _, doc, _, score, _ = line.split()
            run.setdefault(qid, {})[doc] = float(score)
        return run

    def per_query(run: dict[str, dict[str, float]]) -> dict[str, float]:
        out = {q: 0.0 for q in run}
        for m in ir_measures.iter_calc([measure], qrels, run):
            out[m.query_id] = float(m.value)
        return out

    runs = {p.name: read_run(p) for p in args.runs}
    scores = {name: per_query(run) for name, run in runs.items()}
    names = list(runs)
    qids = sorted(set.intersection(*(set(s) for s in scores.values())) & set(qrels))
    for name in names:
        print(f"{name:<40} nDCG@10 {statistics.mean(scores[name][q] for q in qids):.4f}")
    a, b = names[0], names[1]
    best = statistics.mean(max(scores[a][q], scores[b][q]) for q in qids)
    print(f"{'per-query oracle of ' + a + ' / ' + b:<40} nDCG@10 {best:.4f}")
    union: dict[str, dict[str, float]] = {}
    for q in qids:
        found = set(runs[a][q]) | set(runs[b][q])
        relevant = [d for d in found if qrels[q].get(d, 0) > 0]
        relevant.sort(key=lambda d: -qrels[q][d])
        union[q] = {d: float(len(relevant) - i) for i, d in enumerate(relevant)}
    ceiling = per_query(union)
    print(
        f"{'union oracle (top 100 of both)':<40} nDCG@10 "
        f"{statistics.mean(ceiling.get(q, 0.0) for q in qids):.4f}"
    )
    print(f"{len(qids)} queries")


if __name__ == "__main__":
    main()
