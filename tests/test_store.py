"""The on-disk index: atomic versions, manifest checks, cache reuse (fast: fake embedder)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medcite.index.build import BuildSettings, build_index, remove_documents
from medcite.index.cache import EmbeddingCache
from medcite.index.embed import HashingEmbedder
from medcite.index.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from medcite.index.manifest import Model
from medcite.index.retrieve import EmbeddedRetriever, dense_search
from medcite.index.store import (
    LoadedIndex,
    build_faiss,
    check_compatible,
    current_version,
    file_checksum,
    load_index,
    read_documents,
    read_manifest,
)
from medcite.ingest import load
from medcite.ingest.types import ChunkSettings

EN = (
    "Back pain in pregnancy\n\nBack pain is common in pregnancy. The growing uterus shifts "
    "the centre of gravity. Rest on a firm bed and keep a good posture.\n"
)
ZH = (
    "流产后腰疼怎么办\n\n流产后腰疼多与子宫收缩有关。注意休息，避免劳累。"
    "如果疼痛加重，请及时就医。\n"
)
EMB = HashingEmbedder(32)
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
    assert manifest.model == Model(name="hashing-32", dim=32, normalized=True)
    assert manifest.chunker == ChunkSettings(max_tokens=64, overlap_sentences=0)
    assert manifest.counts.chunks == report.chunks
    assert manifest == index.manifest


def _texts(index: LoadedIndex, source: str | None = None) -> int:
    """Texts an ingest embeds: every chunk, and each sentence of a chunk of several."""
    counts = np.diff(index.sentence_offsets)
    rows = [r for r, c in enumerate(index.chunks) if source in (None, c.source)]
    return len(rows) + int(sum(counts[r] for r in rows if counts[r] > 1))


def test_reingest_embeds_nothing_and_a_new_file_only_itself(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = build(corpus, tmp_path / "idx", cache)
    assert first.embedded == _texts(load_index(tmp_path / "idx")) > first.chunks
    again = build(corpus, tmp_path / "idx", cache)
    assert again.embedded == 0 and again.reused == first.embedded
    (corpus / "extra.txt").write_text(EXTRA, encoding="utf-8")
    more = build(corpus, tmp_path / "idx", cache)
    assert more.embedded == _texts(load_index(tmp_path / "idx"), "extra.txt") > 0
    cache.close()


def test_sentences_are_exact_spans_inside_their_chunks(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c")
    (corpus / "extra.txt").write_text(EXTRA, encoding="utf-8")  # a chunk of one sentence
    report = build(corpus, tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    assert report.sentences == len(index.sentences) > report.chunks
    assert index.sentence_vectors.shape == (len(index.sentences), 32)
    off = index.sentence_offsets
    assert off[0] == 0 and off[-1] == len(index.sentences) and np.all(np.diff(off) >= 1)
    for row, chunk in enumerate(index.chunks):
        spans = index.sentences[off[row] : off[row + 1]]
        assert set(spans[:, 0].tolist()) == {row}
        text = index.sources[chunk.source].text
        for _, a, b in spans.tolist():
            assert chunk.start <= a < b <= chunk.end and text[a:b].strip() == text[a:b]
        if len(spans) == 1:  # a chunk of one sentence reuses its own vector
            assert np.array_equal(index.sentence_vectors[off[row]], index.vectors[row])
        else:
            vectors = EMB.embed([text[a:b] for _, a, b in spans.tolist()], kind="passage")
            assert np.allclose(index.sentence_vectors[off[row] : off[row + 1]], vectors)
    # Removing a document keeps every other chunk's sentences, re-numbered.
    doc = index.chunks[0].doc_id
    remove_documents(tmp_path / "idx", {doc}, hnsw_threshold=10_000)
    after = load_index(tmp_path / "idx")
    kept = [(c.chunk_id, r) for r, c in enumerate(index.chunks) if c.doc_id != doc]
    for new_row, (chunk_id, old_row) in enumerate(kept):
        assert after.chunks[new_row].chunk_id == chunk_id
        old = index.sentences[off[old_row] : off[old_row + 1], 1:]
        new = after.sentences[after.sentence_offsets[new_row] : after.sentence_offsets[new_row + 1]]
        assert np.array_equal(new[:, 1:], old) and set(new[:, 0].tolist()) == {new_row}


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
    manifest = replace(
        manifest, lexical=replace(manifest.lexical, tokenizer="jieba-search+snowball-en/0")
    )
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
    kinds = {lang: p.type for lang, p in index.manifest.partitions.items()}
    assert set(kinds.values()) <= {"hnsw", "flat"} and "hnsw" in kinds.values()
    assert isinstance(index.retriever, EmbeddedRetriever)  # it alone holds the FAISS indexes
    for lang, part in index.retriever.partitions.items():
        if kinds[lang] == "hnsw":
            assert "HNSW" in type(part.faiss_index).__name__
            # exact on a tiny partition: the nearest neighbour of a stored vector is itself
            _, ids = part.faiss_index.search(np.asarray(index.vectors[part.rows[:1]]), 1)
            assert ids[0][0] == 0


def test_sentences_out_of_chunk_order_are_refused(tmp_path: Path) -> None:
    """Where each chunk's sentences start is derived at load, so a sentences file whose
    rows are not in chunk order is refused, even with a manifest that vouches for it (the
    checksum refuses a file merely changed after the build: tests/test_integrity.py)."""
    corpus = make_corpus(tmp_path / "c")
    build(corpus, tmp_path / "idx")
    version = tmp_path / "idx" / str(current_version(tmp_path / "idx"))
    sentences = np.load(version / "sentences.npy")
    assert load_index(tmp_path / "idx").sentences.shape == sentences.shape
    np.save(version / "sentences.npy", sentences[::-1].copy())
    manifest = json.loads((version / "manifest.json").read_text("utf-8"))
    manifest["checksums"]["files"]["sentences.npy"] = file_checksum(version / "sentences.npy")
    (version / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(IndexCorrupt, match="inconsistent"):
        load_index(tmp_path / "idx")


def test_documents_of_an_index_written_before_the_site_field_still_load(tmp_path: Path) -> None:
    build(make_corpus(tmp_path / "c"), tmp_path / "idx")
    version = tmp_path / "idx" / str(current_version(tmp_path / "idx"))
    path = version / "documents.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all("site" in row for row in rows)
    old = [{k: v for k, v in row.items() if k != "site"} for row in rows]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in old), "utf-8")
    documents = read_documents(version)
    assert len(documents) == len(rows) and all(d.site is None for d in documents.values())


def test_an_hnsw_partition_finds_the_exact_top_100(tmp_path: Path) -> None:
    """Searched as the retriever does (index.retrieve.dense_search), a partition past the
    HNSW threshold, written and read back, returns nearly all of the exact top 100. With
    FAISS's efSearch of 128 these vectors got 0.93."""
    import faiss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.normal(size=(50, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    faiss.write_index(build_faiss(x, hnsw_threshold=0), str(tmp_path / "dense.faiss"))
    hnsw = faiss.read_index(str(tmp_path / "dense.faiss"))
    assert isinstance(hnsw, faiss.IndexHNSW)
    hnsw.hnsw.efSearch = 16  # whatever the file says, the search sets its own
    exact = np.argsort(-(q @ x.T), axis=1)[:, :100]
    recall = [
        len(set(dense_search(hnsw, v, 100)[1][0].tolist()) & set(e.tolist())) / 100
        for v, e in zip(q, exact, strict=True)
    ]
    assert np.mean(recall) >= 0.99 and min(recall) >= 0.95
