"""The on-disk index: atomic versions, manifest checks, cache reuse (fast: fake embedder)."""

from pathlib import Path

import numpy as np
import pytest

from index.build import BuildSettings, build_index
from index.cache import EmbeddingCache
from index.embed import HashingEmbedder
from index.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from index.store import check_compatible, current_version, load_index, read_manifest
from ingest import load
from ingest.types import ChunkSettings

EN = (
    "Back pain in pregnancy\n\nBack pain is common in pregnancy. The growing uterus shifts "
    "the centre of gravity. Rest on a firm bed and keep a good posture.\n"
)
ZH = (
    "流产后腰疼怎么办\n\n流产后腰疼多与子宫收缩有关。注意休息，避免劳累。"
    "如果疼痛加重，请及时就医。\n"
)
EXTRA = "Headache after birth\n\nA headache after giving birth is often due to dehydration.\n"


def make_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "en.txt").write_text(EN, encoding="utf-8")
    (root / "zh.txt").write_text(ZH, encoding="utf-8")
    return root


def build(corpus: Path, index_dir: Path, cache: EmbeddingCache | None = None, **kw):  # type: ignore[no-untyped-def]
    return build_index(
        load([corpus]),
        HashingEmbedder(32),
        index_dir=index_dir,
        settings=BuildSettings(chunking=ChunkSettings(max_tokens=64)),
        cache=cache,
        **kw,
    )


def test_built_index_loads_with_exact_spans(tmp_path: Path) -> None:
    report = build(make_corpus(tmp_path / "c"), tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    assert len(index.chunks) == report.chunks > 0
    assert index.vectors.shape == (report.chunks, 32)
    assert set(index.partitions) == {"en", "zh"}
    for chunk in index.chunks:
        assert index.sources[chunk.source].text[chunk.start : chunk.end] == chunk.text
    manifest = read_manifest(tmp_path / "idx")
    assert manifest["model"] == {"name": "hashing-32", "dim": 32, "normalized": True}
    assert manifest["chunker"] == {"max_tokens": 64, "overlap_sentences": 0}
    assert manifest["counts"]["chunks"] == report.chunks


def test_reingest_embeds_nothing_and_a_new_file_only_itself(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = build(corpus, tmp_path / "idx", cache)
    assert first.embedded == first.chunks
    again = build(corpus, tmp_path / "idx", cache)
    assert again.embedded == 0 and again.reused == first.chunks
    (corpus / "extra.txt").write_text(EXTRA, encoding="utf-8")
    more = build(corpus, tmp_path / "idx", cache)
    extra_chunks = sum(c.source == "extra.txt" for c in load_index(tmp_path / "idx").chunks)
    assert more.embedded == extra_chunks > 0
    cache.close()


def test_missing_index_is_reported(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="medcite ingest"):
        load_index(tmp_path / "nothing")


def test_mismatched_model_or_chunker_is_refused(tmp_path: Path) -> None:
    build(make_corpus(tmp_path / "c"), tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx")
    with pytest.raises(IndexMismatch, match="built with model 'hashing-32'"):
        check_compatible(manifest, model_name="intfloat/multilingual-e5-small", dim=384)
    with pytest.raises(IndexMismatch, match="chunked with"):
        check_compatible(
            manifest, model_name="hashing-32", dim=32, chunking=ChunkSettings(max_tokens=200)
        )
    check_compatible(manifest, model_name="hashing-32", dim=32, chunking=ChunkSettings(64))
    # An index whose BM25 tokens came from another tokenizer would match queries wrongly.
    manifest["lexical"]["tokenizer"] = "jieba-search+snowball-en/0"
    with pytest.raises(IndexMismatch, match=r"tokenizer 'jieba-search.*medcite ingest"):
        check_compatible(manifest, model_name="hashing-32", dim=32)


def test_truncated_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    build(make_corpus(tmp_path / "c"), tmp_path / "idx")
    version = tmp_path / "idx" / str(current_version(tmp_path / "idx"))
    vectors = version / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-7])
    with pytest.raises(IndexCorrupt, match="rebuild"):
        load_index(tmp_path / "idx")


def test_crash_before_publish_keeps_previous_version_live(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    build(corpus, tmp_path / "idx")
    live = current_version(tmp_path / "idx")
    before = load_index(tmp_path / "idx")
    (corpus / "extra.txt").write_text(EXTRA, encoding="utf-8")

    def crash(_: Path) -> None:
        raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        build(corpus, tmp_path / "idx", before_publish=crash)
    assert current_version(tmp_path / "idx") == live
    assert len(load_index(tmp_path / "idx").chunks) == len(before.chunks)
    build(corpus, tmp_path / "idx")  # the next ingest completes and cleans up
    after = load_index(tmp_path / "idx")
    assert len(after.chunks) > len(before.chunks)
    versions = [p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith("v-")]
    assert len(versions) == 2  # the live one and its predecessor
    assert not np.shares_memory(after.vectors, before.vectors)


def test_partitions_switch_to_hnsw_above_the_threshold(tmp_path: Path) -> None:
    build_index(
        load([make_corpus(tmp_path / "c")]),
        HashingEmbedder(32),
        index_dir=tmp_path / "idx",
        settings=BuildSettings(chunking=ChunkSettings(max_tokens=8), hnsw_threshold=2),
        cache=None,
    )
    index = load_index(tmp_path / "idx")
    kinds = {lang: p["type"] for lang, p in index.manifest["partitions"].items()}
    assert set(kinds.values()) <= {"hnsw", "flat"} and "hnsw" in kinds.values()
    for lang, part in index.partitions.items():
        if kinds[lang] == "hnsw":
            assert "HNSW" in type(part.faiss_index).__name__
            # exact on a tiny partition: the nearest neighbour of a stored vector is itself
            _, ids = part.faiss_index.search(np.asarray(index.vectors[part.rows[:1]]), 1)
            assert ids[0][0] == 0
