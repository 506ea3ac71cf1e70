"""kill -9 during ingest: the previous index keeps loading, the next ingest completes.

A real ``medcite ingest`` subprocess (fast fake model) is killed at several moments spread
over its run (start-up, loading, embedding, writing, publishing). After each kill the
index directory must load as a complete version: the old one or the new one, never a
partial one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcite.index.store import current_version, load_index

pytestmark = pytest.mark.slow

TOPICS = ["back pain", "pregnancy", "miscarriage", "fever", "headache", "nutrition"]


def write_corpus(root: Path, n: int, tag: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        body = " ".join(
            f"Sentence {j} of article {i} ({tag}) is about {topic} and its care." for j in range(40)
        )
        (root / f"a{i:04d}.txt").write_text(f"Article {i} on {topic}\n\n{body}\n", "utf-8")


def ingest(corpus: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "medcite"
    return subprocess.Popen(
        [str(exe), "ingest", str(corpus)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_at_several_points_never_leaves_a_partial_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 60, "v1")
    env = {
        "MEDCITE_MODEL": "hashing-64",
        "MEDCITE_INDEX_DIR": str(tmp_path / "idx"),
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
    }
    t0 = time.monotonic()
    assert ingest(corpus, env).wait(timeout=120) == 0
    full_run = time.monotonic() - t0
    old = load_index(tmp_path / "idx")
    old_version, old_chunks = old.path.name, len(old.chunks)

    write_corpus(corpus, 400, "v2")  # a bigger corpus: a longer run to interrupt
    outcomes = []
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.4, 1.8):
        proc = ingest(corpus, env)
        time.sleep(full_run * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        index = load_index(tmp_path / "idx")  # never raises: a complete version is live
        for chunk in index.chunks[:50]:
            assert index.sources[chunk.source].text[chunk.start : chunk.end] == chunk.text
        assert index.vectors.shape[0] == len(index.chunks)
        if index.path.name == old_version:
            assert len(index.chunks) == old_chunks
            outcomes.append("old")
        else:
            assert len(index.chunks) > old_chunks
            outcomes.append("new")
    assert "old" in outcomes  # at least one kill landed before the new version went live

    assert ingest(corpus, env).wait(timeout=300) == 0
    final = load_index(tmp_path / "idx")
    assert current_version(tmp_path / "idx") == final.path.name
    assert len({c.source for c in final.chunks}) == 400
    leftovers = [p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []  # the completed ingest removed what the killed ones left
