"""Embedding cache keyed by model + kind + content hash (SQLite, safe under kill -9)."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medcite.index.embed import Embedder, Kind
from medcite.index.sqlitelock import while_locked

LOG = logging.getLogger(__name__)


def _key(model: str, kind: str, text: str) -> bytes:
    return hashlib.sha256(f"{model}\x00{kind}\x00{text}".encode()).digest()


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        db = self._db
        while_locked(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone(), timeout_s=60)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, dim INTEGER, vec BLOB)"
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def get_many(self, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i : i + 500])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT key, vec FROM vectors WHERE dim = ? AND key IN ({marks})", [dim, *part]
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, dim, vec) VALUES (?, ?, ?)",
                [(k, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes()) for k, v in items],
            )


def embed_cached(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    kind: Kind,
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Embed ``texts``, reusing cached vectors; returns (vectors, number newly embedded).

    Each batch is written to the cache as soon as it is embedded, so an interrupted run
    resumes where it stopped.
    """
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    keys = [_key(embedder.name, kind, t) for t in texts]
    found = cache.get_many(keys, embedder.dim) if cache is not None else {}
    todo: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        if key in found:
            out[i] = found[key]
        else:
            todo.setdefault(key, []).append(i)
    if progress is not None and len(texts) - sum(map(len, todo.values())):
        progress(len(texts) - sum(map(len, todo.values())))
    # Similar lengths share a batch: the model pads every text to the batch's longest.
    pending = sorted(todo.items(), key=lambda item: len(texts[item[1][0]]))
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        vectors = embedder.embed([texts[rows[0]] for _, rows in batch], kind=kind)
        for (_, rows), vec in zip(batch, vectors, strict=True):
            out[rows] = vec
        if cache is not None:
            cache.put_many([(key, vec) for (key, _), vec in zip(batch, vectors, strict=True)])
        if progress is not None:
            progress(sum(len(rows) for _, rows in batch))
    return out, len(pending)
