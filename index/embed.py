"""Embedders: one protocol, the real sentence-transformers model, and a fake for unit tests."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from medcite.index.errors import ModelUnavailable

LOG = logging.getLogger(__name__)

Kind = Literal["query", "passage"]

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
# Names under which the built-in offline copy of the default model is selected.
DEFAULT_ALIASES = frozenset({"default", DEFAULT_MODEL, "multilingual-e5-small"})
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows."""

    name: str  # recorded in the index manifest
    dim: int

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by hub name (online users) or local folder.

    Query/passage prefixes come from the model's own ``prompts`` when it defines
    ``query``/``passage`` prompts (E5 does), else from ``prompts`` given here, else none.
    """

    def __init__(
        self,
        name_or_path: str,
        *,
        name: str | None = None,
        prompts: dict[str, str] | None = None,
        batch_size: int = 32,
    ) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            if "n" in _THREADS:
                torch.set_num_threads(_THREADS["n"])

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # per-load bars
            self._model: Any = SentenceTransformer(name_or_path, device="cpu")
        except Exception as exc:  # hub unreachable, bad folder, ...
            raise ModelUnavailable(
                f"cannot load embedding model {name_or_path!r}: {exc}. Give a local "
                "sentence-transformers folder, or use the default model (offline)."
            ) from exc
        self.name = name or name_or_path
        model_prompts = dict(getattr(self._model, "prompts", {}) or {})
        self.prompts = {
            kind: model_prompts.get(kind, (prompts or {}).get(kind, "")) for kind in E5_PROMPTS
        }
        if hasattr(self._model, "get_embedding_dimension"):
            dim = self._model.get_embedding_dimension()
        else:  # sentence-transformers < 6
            dim = self._model.get_sentence_embedding_dimension()
        if not dim:
            raise ModelUnavailable(f"model {name_or_path!r} does not report its dimension")
        self.dim = int(dim)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            [self.prompts[kind] + t for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class HashingEmbedder:
    """Deterministic bag-of-character-bigrams embedder: fast unit tests only."""

    def __init__(self, dim: int = 64) -> None:
        self.name = f"hashing-{dim}"
        self.dim = dim

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            s = text.lower()
            for i in range(max(len(s) - 1, 1)):
                h = hashlib.blake2b(s[i : i + 2].encode(), digest_size=4).digest()
                out[row, int.from_bytes(h, "little") % self.dim] += 1.0
            norm = float(np.linalg.norm(out[row]))
            out[row] = out[row] / norm if norm else 1.0 / np.sqrt(self.dim)
        return out


Runtime = Literal["onnx", "torch"]
# The thread count of the last set_threads call: embedders loaded after it use it.
_THREADS: dict[str, int] = {}


def load_embedder(
    model: str,
    *,
    cache_dir: Path,
    batch_size: int = 32,
    runtime: Runtime = "onnx",
    threads: int | None = None,
) -> Embedder:
    """Resolve a model setting: the offline default, ``hashing-N`` (tests), or any ST model.

    The default model runs on ONNX Runtime (``index.onnx_embed``: the same vectors, about
    twice as fast) unless ``runtime="torch"``, or when ONNX Runtime is missing or the export
    fails (logged; sentence-transformers then runs it). Any other model runs on
    sentence-transformers (torch)."""
    threads = threads or _THREADS.get("n", 1)
    if model in DEFAULT_ALIASES:
        from medcite.index.e5.cache import ensure_e5_folder

        folder = ensure_e5_folder(cache_dir)
        if runtime == "onnx":
            from medcite.index.onnx_embed import OnnxEmbedder

            try:
                return OnnxEmbedder(
                    folder,
                    name=DEFAULT_MODEL,
                    prompts=E5_PROMPTS,
                    batch_size=batch_size,
                    threads=threads,
                )
            except ModelUnavailable as exc:
                LOG.warning("ONNX Runtime unavailable, running the model on torch: %s", exc)
        return SentenceTransformerEmbedder(
            str(folder), name=DEFAULT_MODEL, prompts=E5_PROMPTS, batch_size=batch_size
        )
    if model.startswith("hashing-") and model.removeprefix("hashing-").isdigit():
        return HashingEmbedder(int(model.removeprefix("hashing-")))
    return SentenceTransformerEmbedder(model, batch_size=batch_size)


def set_threads(n: int) -> None:
    """Pin FAISS (OpenMP), torch when loaded, and embedders loaded later to ``n`` threads;
    the OpenMP env vars must be set before import. torch is not imported for this: with
    the default model on ONNX Runtime, serving never loads it."""
    import sys

    import faiss

    _THREADS["n"] = n
    faiss.omp_set_num_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
