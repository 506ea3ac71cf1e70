"""Ingest throughput: local vs. Ray with 1 and 2 embedding workers, same corpus, one run.

    python bench/ray_ingest.py [--records 400] [--model default]

The corpus is the first N records of ../shared/evaldata/zh_toyhom_im (short doctor answers;
skipped when ../shared is absent) or the bundled corpus/ with --corpus. Every run starts
with an empty embedding cache, so each one embeds every passage. Ray runs on a local
cluster started for the run (one CPU per worker), as `medcite ingest --engine ray` does
without --address.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
TOYHOM = REPO.parent / "shared" / "evaldata" / "zh_toyhom_im" / "corpus.jsonl"


def ingest(corpus: Path, model: str, tmp: Path, name: str, extra: list[str]) -> dict[str, float]:
    exe = Path(sys.executable).parent / "medcite"
    env = dict(
        os.environ,
        MEDCITE_MODEL=model,
        MEDCITE_INDEX_DIR=str(tmp / f"index-{name}"),
        MEDCITE_CACHE_DIR=str(tmp / f"cache-{name}"),
    )
    models = Path.home() / ".cache" / "medcite" / "models"
    if models.is_dir():  # the converted default model, not a cache of embeddings
        (tmp / f"cache-{name}").mkdir()
        (tmp / f"cache-{name}" / "models").symlink_to(models)
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(exe), "ingest", str(corpus), "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - t0
    report = json.loads(out.stdout)
    return {"chunks": report["chunks"], "embedded": report["embedded"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        corpus = args.corpus
        if corpus is None:
            if not TOYHOM.is_file():
                raise SystemExit(f"{TOYHOM} is absent: pass --corpus")
            corpus = tmp / "toyhom.jsonl"
            with TOYHOM.open(encoding="utf-8") as src:
                corpus.write_text("".join(next(src) for _ in range(args.records)), "utf-8")
        runs = {
            "local": [],
            "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
            "ray, 2 workers": ["--engine", "ray", "--workers", "2"],
        }
        results = {}
        for n, (name, extra) in enumerate(runs.items()):
            results[name] = ingest(corpus, args.model, tmp, str(n), extra)
        base = results["local"]["seconds"]
        print(f"{'engine':<16} {'passages':>9} {'seconds':>8} {'passages/s':>11} {'vs local':>9}")
        for name, r in results.items():
            print(
                f"{name:<16} {r['embedded']:>9.0f} {r['seconds']:>8.1f} "
                f"{r['embedded'] / r['seconds']:>11.1f} {base / r['seconds']:>9.2f}"
            )


if __name__ == "__main__":
    main()
