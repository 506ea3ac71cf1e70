"""Index load time and resident memory, each step measured in a fresh process.

    python bench/index_load.py [--index-dir D ...] [--runs 5]

For every index folder: the median wall time of `load_index` alone, of the model alone and
of the whole engine (model + index + dictionary, as `medcite serve` does before it accepts
requests), and the peak RSS of a process after imports, after `load_index`, and after the
whole engine. Without --index-dir, the configured index (`MEDCITE_INDEX_DIR`) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy, faiss, bm25s, torch, sentence_transformers  # imports are not load time
import medcite.index.store
import medcite.service.engine
import medcite.service.settings
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
step, folder = sys.argv[1], Path(sys.argv[2])
out = {"imports_rss_mb": rss_mb()}
t0 = time.perf_counter()
if step == "index":
    idx = medcite.index.store.load_index(folder)
    out["chunks"] = len(idx.chunks)
elif step == "model":
    from medcite.index.embed import load_embedder
    s = medcite.service.settings.Settings(index_dir=folder)
    load_embedder(s.model, cache_dir=s.cache_dir)
else:
    medcite.service.engine.load_engine(medcite.service.settings.Settings(index_dir=folder))
out["seconds"] = time.perf_counter() - t0
out["rss_mb"] = rss_mb()
print(json.dumps(out))
"""


def measure(step: str, folder: Path, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, step, str(folder)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {k: statistics.median(r[k] for r in results) for k in results[0]}
    return summary


def main() -> None:
    from medcite.service.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, action="append")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    folders = args.index_dir or [Settings().index_dir]
    print(
        f"{'index':<40} {'chunks':>7} {'index s':>8} {'model s':>8} {'engine s':>9} "
        f"{'RSS imports':>12} {'+index':>8} {'engine':>8}  (MB, medians of {args.runs})"
    )
    for folder in folders:
        idx = measure("index", folder, args.runs)
        model = measure("model", folder, args.runs)
        engine = measure("engine", folder, args.runs)
        print(
            f"{str(folder)[-40:]:<40} {idx['chunks']:>7.0f} {idx['seconds']:>8.3f} "
            f"{model['seconds']:>8.2f} {engine['seconds']:>9.2f} "
            f"{idx['imports_rss_mb']:>12.0f} {idx['rss_mb']:>8.0f} {engine['rss_mb']:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
