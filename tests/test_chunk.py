"""ingest.chunk: sentence-aware chunks that are exact spans of their source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import CORPUS, REPO

from medcite.index.tokenize import Tokenizer
from medcite.ingest import (
    ChunkSettings,
    Document,
    LoadResult,
    Segment,
    SourceText,
    chunk_document,
    chunk_documents,
    count_tokens,
    load,
    split_sentences,
)
from medcite.ingest.types import Chunk


@pytest.fixture(scope="module")
def seeds() -> LoadResult:
    return load([CORPUS])


def sources_of(result: LoadResult) -> dict[str, SourceText]:
    return {s.source: s for s in result.sources}


def sentences_of(result: LoadResult) -> list[tuple[str, int, int]]:
    """(doc_id, start, end) of every sentence of every segment."""
    sources = sources_of(result)
    return [
        (doc.doc_id, a, b)
        for doc in result.documents
        for seg in doc.segments
        for a, b in split_sentences(sources[doc.source].text, seg.start, seg.end, doc.language)
    ]


def assert_exact_spans(tokenizer: Tokenizer, result: LoadResult, chunks: list[Chunk]) -> None:
    sources = sources_of(result)
    docs = {d.doc_id: d for d in result.documents}
    for chunk in chunks:
        assert sources[chunk.source].text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        doc = docs[chunk.doc_id]
        assert chunk.language == doc.language and chunk.source == doc.source
        # inside exactly one segment, and carrying its section
        (seg,) = [s for s in doc.segments if s.start <= chunk.start and chunk.end <= s.end]
        assert chunk.section == seg.section
        assert chunk.n_tokens == count_tokens(chunk.text, chunk.language, tokenizer)


def test_seed_chunks_at_200_tokens(tokenizer: Tokenizer, seeds: LoadResult) -> None:
    chunks = chunk_documents(seeds, ChunkSettings(max_tokens=200), tokenizer)
    assert_exact_spans(tokenizer, seeds, chunks)
    per_file: dict[str, int] = {}
    for c in chunks:
        per_file[c.source] = per_file.get(c.source, 0) + 1
    assert per_file == {
        "000_1e25916c291d4d20.txt": 20,
        "001_f6e1ae9f4f4596cb.txt": 5,
        "002_e80cb361c43bb8f7.txt": 6,
        "003_322f64557f9a19d7.txt": 3,
        "004_3a0b4b9e837dc788.txt": 4,
    }
    assert all(c.n_tokens <= 200 for c in chunks)
    # A heading with no body is never a passage: "1. Lumbar muscle strain" leads the
    # passage of the text it heads.
    assert not [c.text for c in chunks if c.text in ("1. Lumbar muscle strain",)]
    (strain,) = [c for c in chunks if c.text.startswith("1. Lumbar muscle strain")]
    assert "Low back pain is mostly caused" in strain.text
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    for doc_id, doc_chunks in by_doc.items():
        expected = [f"{doc_id}::{n}" for n in range(len(doc_chunks))]
        assert [c.chunk_id for c in doc_chunks] == expected
    main = by_doc["000_1e25916c291d4d20.txt"]
    assert [c.section for c in main] == [
        "一、子宫复旧不良",
        "二、盆腔充血",
        "三、腰部肌肉劳损",
        "四、感染因素",
        "五、激素水平变化",
    ]
    assert main[0].text.startswith("自然流产后,子宫需要通过收缩")
    assert "一、子宫复旧不良" not in main[0].text  # the heading is the section, not the text
    assert {c.language for c in main} == {"zh"}


@pytest.mark.parametrize("max_tokens", [30, 60, 120])
def test_small_budgets_keep_sentences_whole_and_chunks_within_budget(
    tokenizer: Tokenizer, seeds: LoadResult, max_tokens: int
) -> None:
    chunks = chunk_documents(seeds, ChunkSettings(max_tokens=max_tokens), tokenizer)
    assert_exact_spans(tokenizer, seeds, chunks)
    sources = sources_of(seeds)
    languages = {d.doc_id: d.language for d in seeds.documents}
    for doc_id, a, b in sentences_of(seeds):
        sentence_tokens = count_tokens(
            sources[_source(seeds, doc_id)].text[a:b], languages[doc_id], tokenizer
        )
        holders = [c for c in chunks if c.doc_id == doc_id and c.start <= a and b <= c.end]
        if sentence_tokens <= max_tokens:
            assert len(holders) == 1, "a sentence that fits is never cut"
        else:
            assert not holders
            pieces = [c for c in chunks if c.doc_id == doc_id and a <= c.start and c.end <= b]
            assert pieces and all(c.n_tokens <= max_tokens for c in pieces)
    assert all(c.n_tokens <= max_tokens for c in chunks)


def _source(result: LoadResult, doc_id: str) -> str:
    return next(d.source for d in result.documents if d.doc_id == doc_id)


def test_budget_that_fits_every_sentence_never_cuts_one(
    tokenizer: Tokenizer, seeds: LoadResult
) -> None:
    sources = sources_of(seeds)
    languages = {d.doc_id: d.language for d in seeds.documents}
    sentences = sentences_of(seeds)
    largest = max(
        count_tokens(sources[_source(seeds, d)].text[a:b], languages[d], tokenizer)
        for d, a, b in sentences
    )
    chunks = chunk_documents(seeds, ChunkSettings(max_tokens=largest), tokenizer)
    starts = {(c.doc_id, c.start) for c in chunks}
    ends = {(c.doc_id, c.end) for c in chunks}
    sentence_starts = {(d, a) for d, a, _ in sentences}
    sentence_ends = {(d, b) for d, _, b in sentences}
    assert starts <= sentence_starts and ends <= sentence_ends


def test_long_sentence_is_cut_at_commas_first(tokenizer: Tokenizer) -> None:
    text = (
        "Back pain after a miscarriage can come from the uterus contracting, from blood in the "
        "pelvis, from tired muscles, from an infection, or from changes in hormone levels."
    )
    doc = _doc("t.txt", "en", [Segment(0, len(text))])
    chunks = chunk_document(
        doc, SourceText("t.txt", text, "utf-8", "text"), ChunkSettings(12), tokenizer
    )
    assert [c.text for c in chunks] == [
        "Back pain after a miscarriage can come from the uterus contracting,",
        "from blood in the pelvis, from tired muscles, from an infection,",
        "or from changes in hormone levels.",
    ]
    assert [c.n_tokens for c in chunks] == [11, 11, 6]


def test_clause_longer_than_the_budget_is_cut_between_tokens(tokenizer: Tokenizer) -> None:
    text = "自然流产后子宫需要通过收缩等过程恢复至未孕状态若子宫复旧不良子宫收缩可能会引起腰部疼痛"
    doc = _doc("z.txt", "zh", [Segment(0, len(text))])
    source = SourceText("z.txt", text, "utf-8", "text")
    chunks = chunk_document(doc, source, ChunkSettings(max_tokens=5), tokenizer)
    assert "".join(c.text for c in chunks) == text
    assert len(chunks) > 2 and all(1 <= c.n_tokens <= 5 for c in chunks)


def test_chunks_never_cross_segments_and_trim_whitespace(tokenizer: Tokenizer) -> None:
    text = "  First part. Still first.  \n\nREMOVED LINE\n\n   Second part here.   "
    second = text.index("Second")
    doc = _doc(
        "w.txt", "en", [Segment(0, text.index("REMOVED") - 2, "A"), Segment(second - 3, len(text))]
    )
    chunks = chunk_document(
        doc, SourceText("w.txt", text, "utf-8", "text"), ChunkSettings(100), tokenizer
    )
    assert [(c.text, c.section, c.start) for c in chunks] == [
        ("First part. Still first.", "A", 2),
        ("Second part here.", None, second),
    ]


def test_overlap_repeats_the_last_sentences(tokenizer: Tokenizer) -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    doc = _doc("o.txt", "en", [Segment(0, len(text))])
    source = SourceText("o.txt", text, "utf-8", "text")
    chunks = chunk_document(
        doc, source, ChunkSettings(max_tokens=6, overlap_sentences=1), tokenizer
    )
    assert [c.text for c in chunks] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_english_sentences() -> None:
    text = (
        "Dr. Smith said e.g. 3.5 mg is fine. Take it daily! Is it safe? Yes. J. K. Rowling "
        "agreed... Then U.S. data said so; it held. Line one\nline two"
    )
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Dr. Smith said e.g. 3.5 mg is fine.",
        "Take it daily!",
        "Is it safe?",
        "Yes.",
        "J. K. Rowling agreed...",
        "Then U.S. data said so; it held.",
        "Line one",
        "line two",
    ]


def test_chinese_sentences_with_fullwidth_and_halfwidth_marks() -> None:
    text = "流产后腰疼吗?有时会疼!注意休息;多喝水。“好的。”然后……结束,没有问题\n下一行"
    assert [text[a:b] for a, b in split_sentences(text, language="zh")] == [
        "流产后腰疼吗?",
        "有时会疼!",
        "注意休息;",
        "多喝水。",
        "“好的。”",
        "然后……",
        "结束,没有问题",
        "下一行",
    ]


def test_token_counts_skip_spaces_and_punctuation(tokenizer: Tokenizer) -> None:
    assert count_tokens("Back pain, after 3.5 weeks; isn't rare!", "en", tokenizer) == 7
    assert count_tokens("自然流产后,腰疼。", "zh", tokenizer) == count_tokens(
        "自然流产后腰疼", "zh", tokenizer
    )
    assert count_tokens("。,!  ", "zh", tokenizer) == 0


def test_jsonl_records_chunk_with_offsets_into_the_record_text(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    path = tmp_path / "corpus.jsonl"
    text = "  高血压病人可以口服党参的。党参有降血压的作用。  "
    path.write_text(json.dumps({"id": "r1", "title": "t", "text": text}) + "\n", encoding="utf-8")
    result = load([path])
    chunks = chunk_documents(result, ChunkSettings(max_tokens=200), tokenizer)
    assert [(c.chunk_id, c.source, c.text, c.start) for c in chunks] == [
        ("r1::0", "corpus.jsonl#r1", "高血压病人可以口服党参的。党参有降血压的作用。", 2)
    ]


def test_importing_ingest_is_light_and_jieba_is_quiet(tmp_path: Path) -> None:
    code = (
        "import sys\nimport medcite.ingest as ingest\n"
        "assert 'jieba' not in sys.modules, 'jieba imported at import time'\n"
        "assert 'selectolax' not in sys.modules and 'charset_normalizer' not in sys.modules\n"
        "from medcite.index.tokenize import Tokenizer\n"
        "assert 'jieba' not in sys.modules, 'jieba imported with the tokenizer module'\n"
        "tokenizer = Tokenizer()\n"
        "print(ingest.count_tokens('自然流产后腰疼是因为什么原因引起的', 'zh', tokenizer))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert int(done.stdout) > 3
    assert "Building prefix dict" not in done.stderr and "Loading model" not in done.stderr


def test_bad_settings_and_mismatched_source_are_refused(tokenizer: Tokenizer) -> None:
    doc = _doc("a.txt", "en", [Segment(0, 4)])
    with pytest.raises(ValueError):
        chunk_document(
            doc, SourceText("b.txt", "text", "utf-8", "text"), ChunkSettings(), tokenizer
        )
    with pytest.raises(ValueError):
        chunk_document(
            doc, SourceText("a.txt", "text", "utf-8", "text"), ChunkSettings(0), tokenizer
        )


def _doc(source: str, language: str, segments: list[Segment]) -> Document:
    assert language in ("zh", "en")
    return Document(
        doc_id=source,
        source=source,
        title="t",
        language="zh" if language == "zh" else "en",
        segments=tuple(segments),
    )


def test_cards_cut_off_by_the_source_are_marked_truncated(
    tokenizer: Tokenizer, seeds: LoadResult
) -> None:
    """A Q&A card whose summary the page itself breaks off mid-sentence is shown with an
    ellipsis (``truncated``); the cited text stays exactly what the source holds."""
    from medcite.service.schemas import cut_off

    chunks = chunk_documents(seeds, ChunkSettings(max_tokens=200), tokenizer)
    docs = {d.doc_id: d for d in seeds.documents}
    marked = {c.doc_id: cut_off(c, docs[c.doc_id]) for c in chunks}
    zh = "000_1e25916c291d4d20.txt"
    assert marked[f"{zh}#1"] is True  # "...手术流产" stops mid-sentence
    assert marked[f"{zh}#2"] is False  # ends with 。
    assert not any(marked[d] for d in marked if docs[d].kind != "card")
    cut = next(c for c in chunks if c.doc_id == f"{zh}#1")
    assert cut.text.endswith("手术流产") and not cut.text.endswith("…")


def test_ray_chunking_tasks_of_one_worker_share_one_jieba_dictionary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each Ray chunking task of 512 documents loaded jieba's dictionary again (about 1 s);
    a worker process now loads it once. Runs the task function here, without a cluster."""
    from medcite.index import ray_embed
    from medcite.ingest import ChunkSettings, load
    from medcite.ingest import segment as segment_module

    loads: list[int] = []
    real_init = segment_module.Segmenter.__init__

    def counting_init(self: segment_module.Segmenter) -> None:
        loads.append(1)
        real_init(self)

    monkeypatch.setattr(segment_module.Segmenter, "__init__", counting_init)
    ray_embed._worker_segmenter.cache_clear()
    loaded = load([CORPUS])
    by_path = {s.source: s for s in loaded.sources}
    docs = list(loaded.documents)
    sources = [by_path[d.source] for d in docs]
    settings = ChunkSettings()
    first = ray_embed._chunk_batch(docs, sources, settings)
    second = ray_embed._chunk_batch(docs, sources, settings)
    ray_embed._worker_segmenter.cache_clear()
    assert first == second and first
    assert len(loads) == 1
