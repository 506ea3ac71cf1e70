from collections.abc import Sequence
from pathlib import Path

import numpy as np
from support import all_at_once

from medcite.index.cache import EmbeddingCache, embed_cached
from medcite.index.embed import HashingEmbedder, Kind


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(16)
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        self.seen.extend(texts)
        return super().embed(texts, kind=kind)


def test_second_run_embeds_nothing_and_vectors_match(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first, n1 = embed_cached(emb, ["a b", "c d", "a b"], kind="passage", cache=cache)
    assert n1 == 2  # the duplicate text is embedded once
    second, n2 = embed_cached(emb, ["c d", "a b"], kind="passage", cache=cache)
    assert n2 == 0
    assert np.array_equal(second, first[[1, 0]])
    assert emb.seen == ["a b", "c d"]
    cache.close()


def test_kind_and_model_are_part_of_the_key(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = CountingEmbedder()
    embed_cached(emb, ["x"], kind="passage", cache=cache)
    _, n = embed_cached(emb, ["x"], kind="query", cache=cache)
    assert n == 1
    _, n = embed_cached(HashingEmbedder(32), ["x"], kind="passage", cache=cache)
    assert n == 1
    cache.close()


def test_progress_counts_every_text(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    done: list[int] = []
    embed_cached(
        CountingEmbedder(),
        list("abcde"),
        kind="passage",
        cache=cache,
        batch_size=2,
        progress=done.append,
    )
    embed_cached(
        CountingEmbedder(),
        list("abcdef"),
        kind="passage",
        cache=cache,
        batch_size=2,
        progress=done.append,
    )
    assert sum(done) == 11
    cache.close()


def test_caches_opened_at_once_on_a_new_path_all_open(tmp_path: Path) -> None:
    # Two builds started together share one cache file. Switching the new file to WAL is not
    # covered by SQLite's busy handler: without the retry, about one round in twelve lost an
    # opener to "database is locked".
    for round_ in range(40):
        path = tmp_path / str(round_) / "embeddings.sqlite"
        errors = all_at_once(lambda path=path: EmbeddingCache(path).close())
        assert errors == [], (round_, errors)
