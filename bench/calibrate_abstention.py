"""Calibrate the abstention thresholds on development questions and print the trade-off.

For every development question and every language partition of the index, the best dense
cosine is a positive example when the question has a relevant document in that language
and a negative one otherwise. Per (question language -> passage language) the threshold
maximising balanced accuracy (ties: the midpoint of the widest gap) is chosen.

    python bench/calibrate_abstention.py [--index-dir D] [--write]

Without --index-dir the bundled corpus/ is indexed into the cache first. Development
questions: bench/data/abstention_dev.jsonl (ours) plus ../shared/evaldata/seed_dev_queries.jsonl
when present. --write stores the thresholds in index/calibration.json for the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "bench" / "data" / "abstention_dev.jsonl"
SEED_DEV = REPO.parent / "shared" / "evaldata" / "seed_dev_queries.jsonl"


def dev_questions(index) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = [json.loads(line) for line in DEV.read_text("utf-8").splitlines() if line.strip()]
    if SEED_DEV.is_file():
        lang_of = {d.source: d.language for d in index.documents.values()}
        for line in SEED_DEV.read_text("utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                langs = sorted({lang_of[s] for s in q["relevant"] if s in lang_of})
                rows.append({"id": q["id"], "text": q["text"], "relevant_languages": langs})
    return rows


def choose(pos: list[float], neg: list[float]) -> tuple[float, float, float]:
    """Threshold maximising (TPR + TNR) / 2; returns (threshold, tpr, tnr)."""
    if not pos:
        return 1.01, 0.0, 1.0  # nothing ever relevant in this direction: never admit
    if not neg:
        return min(pos) - 0.01, 1.0, 1.0
    cuts = sorted(set(pos + neg))
    best = (-1.0, 0.0, 0.0, 0.0, 0.0)  # score, threshold, tpr, tnr, gap
    for lo, hi in zip([cuts[0] - 0.02, *cuts], [*cuts, cuts[-1] + 0.02], strict=True):
        t = (lo + hi) / 2
        tpr = sum(p >= t for p in pos) / len(pos)
        tnr = sum(n < t for n in neg) / len(neg)
        score = (tpr + tnr) / 2
        if score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and hi - lo > best[4]):
            best = (score, t, tpr, tnr, hi - lo)
    return round(best[1], 4), best[2], best[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from index.embed import load_embedder, set_threads
    from index.store import load_index
    from ingest.language import detect_language
    from service.cli import run_ingest
    from service.settings import Settings

    set_threads(1)
    settings = Settings()
    index_dir = args.index_dir or settings.cache_dir / "calibration-index"
    if args.index_dir is None:
        run_ingest([REPO / "corpus"], settings.model_copy(update={"index_dir": index_dir}))
    index = load_index(index_dir)
    embedder = load_embedder(index.model_name, cache_dir=settings.cache_dir)
    questions = dev_questions(index)
    vectors = embedder.embed([q["text"] for q in questions], kind="query")
    examples: dict[str, tuple[list[float], list[float]]] = {}
    table = []
    for q, qv in zip(questions, vectors, strict=True):
        qlang = detect_language(q["text"])
        row = {"id": q["id"], "text": q["text"], "relevant": q["relevant_languages"]}
        for lang, part in sorted(index.partitions.items()):
            scores, _ = part.faiss_index.search(qv[None, :], 1)
            best = float(scores[0][0])
            row[lang] = round(best, 4)
            pos, neg = examples.setdefault(f"{qlang}->{lang}", ([], []))
            (pos if lang in q["relevant_languages"] else neg).append(best)
        table.append(row)
    print(f"{'id':<5} {'relevant':<8} {'zh':>7} {'en':>7}  question")
    for row in table:
        print(
            f"{row['id']:<5} {','.join(row['relevant']) or '-':<8} {row.get('zh', 0):>7.4f} "
            f"{row.get('en', 0):>7.4f}  {row['text']}"
        )
    thresholds = {}
    print(f"\n{'pair':<7} {'pos':>4} {'neg':>4} {'threshold':>9} {'TPR':>6} {'TNR':>6}")
    for pair, (pos, neg) in sorted(examples.items()):
        t, tpr, tnr = choose(pos, neg)
        thresholds[pair] = t
        print(f"{pair:<7} {len(pos):>4} {len(neg):>4} {t:>9.4f} {tpr:>6.2f} {tnr:>6.2f}")
    # Query-level: answerable iff some partition is admitted.
    answerable = [q for q in table if q["relevant"]]
    unanswerable = [q for q in table if not q["relevant"]]

    def admitted(row: dict) -> bool:  # type: ignore[type-arg]
        qlang = detect_language(row["text"])
        return any(row[lang] >= thresholds[f"{qlang}->{lang}"] for lang in index.partitions)

    kept = sum(admitted(r) for r in answerable)
    abstained = sum(not admitted(r) for r in unanswerable)
    print(
        f"\nanswerable kept {kept}/{len(answerable)}, "
        f"unanswerable abstained {abstained}/{len(unanswerable)}"
    )
    print("\ntrade-off (one global offset added to every threshold):")
    print(f"{'offset':>7} {'kept':>6} {'abstained':>10}")
    for offset in (-0.03, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03):
        shifted = {k: v + offset for k, v in thresholds.items()}

        def adm(row: dict, shifted: dict = shifted) -> bool:  # type: ignore[type-arg]
            qlang = detect_language(row["text"])
            return any(row[lang] >= shifted[f"{qlang}->{lang}"] for lang in index.partitions)

        print(
            f"{offset:>+7.2f} {sum(adm(r) for r in answerable):>3}/{len(answerable):<2} "
            f"{sum(not adm(r) for r in unanswerable):>6}/{len(unanswerable)}"
        )
    if args.write:
        path = REPO / "index" / "calibration.json"
        data = json.loads(path.read_text("utf-8"))
        data.setdefault("models", {})[index.model_name] = {
            "thresholds": thresholds,
            "calibrated": time.strftime("%Y-%m-%d"),
            "questions": len(table),
            "corpus": "corpus/ (bundled seed articles)",
        }
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", "utf-8")
        print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
