import numpy as np
import pytest

from medcite.index.fusion import fuse, minmax, ranks


def test_minmax_scales_and_flattens_constants() -> None:
    assert minmax(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    assert minmax(np.array([])).size == 0


def test_ranks_are_one_based_descending() -> None:
    assert ranks(np.array([0.1, 0.9, 0.5])).tolist() == [3, 1, 2]


def test_convex_mixes_normalised_scores() -> None:
    dense = np.array([0.9, 0.8, 0.7])
    lexical = np.array([0.0, 10.0, 5.0])
    fused = fuse(dense, lexical, method="convex", dense_weight=0.7)
    assert fused == pytest.approx([0.7, 0.35 + 0.3, 0.15])


def test_rrf_ignores_missing_lexical_matches() -> None:
    dense = np.array([0.9, 0.8])
    lexical = np.array([0.0, 3.0])
    fused = fuse(dense, lexical, method="rrf", rrf_k=60)
    assert fused == pytest.approx([1 / 61, 1 / 62 + 1 / 61])


def test_single_retrievers_pass_through() -> None:
    dense, lexical = np.array([0.2, 0.1]), np.array([1.0, 4.0])
    assert fuse(dense, lexical, method="dense").tolist() == pytest.approx([0.2, 0.1])
    assert fuse(dense, lexical, method="bm25").tolist() == [1.0, 4.0]
