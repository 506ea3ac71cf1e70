"""Paths and helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
SHARED = REPO.parent / "shared"


def cache_dir() -> Path:
    """Where the converted default model and embedding cache live during tests."""
    return Path(os.environ.get("MEDCITE_TEST_CACHE") or Path.home() / ".cache" / "medcite")
