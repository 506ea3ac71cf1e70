"""bench/scale.py end to end at a tiny size: every figure present and sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
N = 2000


@pytest.mark.slow
def test_scale_bench_reports_every_figure(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            *("--chunks", str(N), "--queries", "20", "--work", str(tmp_path), "--no-model"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == json.loads((tmp_path / "scale.json").read_text(encoding="utf-8"))
    assert result["chunks"] == N
    assert result["cpus"] == os.cpu_count()
    assert "not the real model" in result["vectors"]
    build, load, serve, summary = (result[k] for k in ("build", "load", "serve", "summary"))
    assert build["chunks"] == N and load["chunks"] == N
    assert build["sentences"] >= N
    assert {p["type"] for p in build["partitions"].values()} == {"flat"}
    assert sum(p["chunks"] for p in build["partitions"].values()) == N
    for key in ("build_seconds", "index_ready_seconds", "work_p50_ms", "work_p99_ms"):
        assert summary[key] > 0, key
    assert summary["work_p99_ms"] >= summary["work_p50_ms"]
    for key in ("build_peak_rss_mb", "load_peak_rss_mb", "serving_rss_mb"):
        assert 50 < summary[key] < 8000, key
    assert summary["serving_model_included"] is False
    assert 0.0 <= summary["ann_recall_at_100"] <= 1.0
    assert summary["ann_exact"] is True  # flat partitions below the HNSW threshold
    assert set(serve["recall"]) == set(build["partitions"])
    assert not (tmp_path / f"index-{N}").exists()  # removed without --keep
