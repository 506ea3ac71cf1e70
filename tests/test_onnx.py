"""The default model on ONNX Runtime gives sentence-transformers' vectors and rankings."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import CORPUS, cache_dir

from medcite.index.embed import (
    DEFAULT_MODEL,
    E5_PROMPTS,
    SentenceTransformerEmbedder,
    load_embedder,
)
from medcite.index.errors import ModelUnavailable
from medcite.index.onnx_embed import OnnxEmbedder, onnx_path

pytestmark = pytest.mark.slow

QUESTIONS = [
    "why does my back hurt after a miscarriage",
    "流产后腰疼是什么原因",
    "back pain in pregnancy",
    "怀孕三个月腰疼怎么办",
    "How long does bleeding last after a miscarriage?",
    "Does pregnancy make a bulging disc worse?",
    "流产后多久可以洗澡",
    "how to brew chrysanthemum tea",
]


@pytest.fixture(scope="module")
def folder() -> Path:
    from medcite.index.e5.cache import ensure_e5_folder

    return ensure_e5_folder(cache_dir())


@pytest.fixture(scope="module")
def both(folder: Path) -> tuple[OnnxEmbedder, SentenceTransformerEmbedder]:
    onnx = load_embedder("default", cache_dir=cache_dir())
    torch = load_embedder("default", cache_dir=cache_dir(), runtime="torch")
    assert isinstance(onnx, OnnxEmbedder) and isinstance(torch, SentenceTransformerEmbedder)
    assert onnx.name == torch.name == DEFAULT_MODEL and onnx.dim == torch.dim == 384
    return onnx, torch


def passages() -> list[str]:
    from medcite.ingest import load
    from medcite.ingest.chunk import chunk_documents
    from medcite.service.settings import Settings

    return [c.text for c in chunk_documents(load([CORPUS]), Settings().chunking())]


@pytest.fixture(scope="module")
def vectors(
    both: tuple[OnnxEmbedder, SentenceTransformerEmbedder],
) -> list[dict[str, np.ndarray]]:
    """The bundled corpus's passages and the questions, embedded by each runtime (ONNX, torch):
    computed once, the slow part of the two comparisons below."""
    texts = passages()
    return [
        {"passage": e.embed(texts, kind="passage"), "query": e.embed(QUESTIONS, kind="query")}
        for e in both
    ]


def test_same_vectors_as_sentence_transformers(vectors: list[dict[str, np.ndarray]]) -> None:
    onnx, torch = vectors
    for kind in ("passage", "query"):
        a, b = onnx[kind], torch[kind]
        assert a.dtype == np.float32 and a.shape == b.shape
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        assert float((a * b).sum(axis=1).min()) >= 0.9999


def test_same_top_10_on_the_bundled_corpus(vectors: list[dict[str, np.ndarray]]) -> None:
    texts = passages()
    assert len(texts) >= 20
    rankings = []
    for embedded in vectors:
        docs, queries = embedded["passage"], embedded["query"]
        assert docs.shape[0] == len(texts)
        rankings.append(np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :10])
    assert (rankings[0] == rankings[1]).all()


def test_batches_sorted_by_length_give_the_vectors_of_one_text_at_a_time(
    both: tuple[OnnxEmbedder, SentenceTransformerEmbedder],
) -> None:
    onnx = both[0]
    texts = ["短", "a much longer English passage about back pain " * 8, "中等长度的一句话"]
    together = onnx.embed(texts, kind="passage")
    alone = np.vstack([onnx.embed([t], kind="passage") for t in texts])
    assert float((together * alone).sum(axis=1).min()) >= 0.99999
    assert onnx.embed([], kind="query").shape == (0, 384)


def test_the_export_is_cached_and_serving_never_imports_torch(folder: Path) -> None:
    assert onnx_path(folder).is_file()
    code = (
        "import sys; from pathlib import Path; from medcite.index.embed import load_embedder; "
        f"e = load_embedder('default', cache_dir=Path({str(cache_dir())!r})); "
        "print(type(e).__name__, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.split() == ["OnnxEmbedder", "False"]


def test_a_damaged_export_is_removed_and_the_model_falls_back_to_torch(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "e5"
    copy.mkdir()
    for item in folder.iterdir():
        if item.name != "onnx":
            (copy / item.name).symlink_to(item)
    damaged = onnx_path(copy)
    damaged.parent.mkdir()
    damaged.write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailable, match="removed"):
        OnnxEmbedder(copy, name=DEFAULT_MODEL, prompts=E5_PROMPTS)
    assert not damaged.exists()  # the next start exports it again

    import medcite.index.e5.cache

    real = medcite.index.e5.cache.ensure_e5_folder
    medcite.index.e5.cache.ensure_e5_folder = lambda cache: copy  # type: ignore[assignment]
    try:
        damaged.write_bytes(b"still not a model")
        with caplog.at_level(logging.WARNING, logger="medcite.index.embed"):
            embedder = load_embedder("default", cache_dir=tmp_path)
    finally:
        medcite.index.e5.cache.ensure_e5_folder = real
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert "running the model on torch" in caplog.text
