"""Score fusion of dense and lexical scores over one candidate set (free functions on arrays)."""

from __future__ import annotations

from typing import Literal

import numpy as np

FusionMethod = Literal["convex", "rrf", "dense", "bm25"]


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant vector maps to zeros (it carries no ranking signal)."""
    if scores.size == 0:
        return scores.astype(np.float32)
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(scores, dtype=np.float32)
    return ((scores - lo) / (hi - lo)).astype(np.float32)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry under descending score (ties by position)."""
    order = np.argsort(-scores, kind="stable")
    out = np.empty(scores.size, dtype=np.int64)
    out[order] = np.arange(1, scores.size + 1)
    return out


def fuse(
    dense: np.ndarray,
    lexical: np.ndarray,
    *,
    method: FusionMethod = "convex",
    dense_weight: float = 0.8,
    rrf_k: int = 60,
) -> np.ndarray:
    """Fused score of each candidate; ``dense`` and ``lexical`` are aligned raw scores."""
    if method == "dense":
        return dense.astype(np.float32)
    if method == "bm25":
        return lexical.astype(np.float32)
    if method == "rrf":
        fused = 1.0 / (rrf_k + ranks(dense))
        # Candidates with no lexical match at all get no lexical RRF share.
        fused = fused + np.where(lexical > 0, 1.0 / (rrf_k + ranks(lexical)), 0.0)
        return fused.astype(np.float32)
    if method == "convex":
        return (dense_weight * minmax(dense) + (1.0 - dense_weight) * minmax(lexical)).astype(
            np.float32
        )
    raise ValueError(f"unknown fusion method {method!r}")
