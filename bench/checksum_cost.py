"""What checking an index file's checksum costs at load and reload (index.store).

    python bench/checksum_cost.py [--vectors 200000] [--dim 384] [--runs 3] [--json]

Writes a vectors.npy of N x dim float32 (in slices: this process never holds it whole),
then measures, median of --runs:

- ``verify``: :func:`index.store.file_checksum` (sha256, streamed) with the file in the page
  cache (a reload soon after an ingest) and evicted from it (posix_fadvise DONTNEED after
  fsync: a first start after a reboot; the host may still cache it), in seconds and GB/s,
  and the peak RSS of a fresh process that only verifies, over one that only imports
  (memory stays flat: the file is read in chunks);
- ``np.load``: reading the file into memory, which the server does anyway (no mmap), for
  scale;
- blake2b on the same warm file, the other candidate.

It then extrapolates to 1M vectors of dim 384 (1.5 GB; an index of that size also holds its
sentence vectors and FAISS copies, each checked the same way, so multiply by its size).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medcite.index.store import file_checksum

TARGET = 1_000_000 * 384 * 4  # bytes of 1M float32 vectors of dim 384


def write_vectors(path: Path, n: int, dim: int) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        out[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    out.flush()
    del out
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def verify_rss_growth_mb(path: Path) -> float:
    """Peak RSS of a fresh process verifying ``path`` minus that of one only importing."""

    def peak(verify: bool) -> float:
        code = (
            "import resource, sys\n"
            "from pathlib import Path\n"
            "from medcite.index.store import file_checksum\n"
            + ("file_checksum(Path(sys.argv[1]))\n" if verify else "")
            + "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])

    return peak(verify=True) - peak(verify=False)


def timed(run: Callable[[], object], before: Callable[[], None], runs: int) -> float:
    seconds = []
    for _ in range(runs):
        before()
        t0 = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def blake2b(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="Where to write the file.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "vectors.npy"
        write_vectors(path, args.vectors, args.dim)
        size = path.stat().st_size
        rss_growth = verify_rss_growth_mb(path)
        cases = {
            "verify_warm": timed(lambda: file_checksum(path), lambda: warm(path), args.runs),
            "verify_cold": timed(lambda: file_checksum(path), lambda: evict(path), args.runs),
        }
        cases["blake2b_warm"] = timed(lambda: blake2b(path), lambda: warm(path), args.runs)
        cases["np_load_warm"] = timed(lambda: np.load(path), lambda: warm(path), args.runs)
        cases["np_load_cold"] = timed(lambda: np.load(path), lambda: evict(path), args.runs)
    report = {
        "vectors": args.vectors,
        "dim": args.dim,
        "file_gb": round(size / 1e9, 3),
        "verify_peak_rss_growth_mb": round(rss_growth, 1),
        "cases": {
            name: {
                "seconds": round(s, 3),
                "gb_per_s": round(size / 1e9 / s, 2),
                "seconds_at_1m_x_384": round(TARGET / (size / s), 2),
            }
            for name, s in cases.items()
        },
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(
        f"{args.vectors} x {args.dim} float32 = {report['file_gb']} GB; peak RSS grew "
        f"{report['verify_peak_rss_growth_mb']} MB while verifying"
    )
    print(f"{'case':<14} {'seconds':>8} {'GB/s':>7} {'s at 1M x 384 (1.54 GB)':>25}")
    for name, c in report["cases"].items():
        print(f"{name:<14} {c['seconds']:>8} {c['gb_per_s']:>7} {c['seconds_at_1m_x_384']:>25}")


if __name__ == "__main__":
    main()
