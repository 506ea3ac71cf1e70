"""The default model on ONNX Runtime: the same vectors as sentence-transformers, faster.

The converted e5 folder (``index.e5``) is exported once with ``torch.onnx.export``
(opset 17, the BERT encoder only: mean pooling and normalisation run here in numpy) and
cached inside that folder as ``onnx/model.onnx``; later processes load the file without
importing torch. Tokenisation is the folder's own ``tokenizer.json`` (the same one
sentence-transformers uses), truncated at the model's 512 tokens.

Texts of one call are sorted by length and cut into batches, so a batch pads to its own
longest text rather than the call's.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medcite.index.errors import ModelUnavailable

if TYPE_CHECKING:
    from medcite.index.embed import Kind

LOG = logging.getLogger(__name__)

OPSET = 17
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
PAD_ID = 1  # XLM-R's <pad>
MAX_TOKENS = 512


def onnx_path(folder: Path) -> Path:
    return folder / ONNX_DIR / ONNX_FILE


def export_onnx(folder: Path) -> Path:
    """Export ``folder``'s BERT encoder to ONNX (once; later calls return the cached file).

    Written to a temporary name and renamed, so a killed export never leaves a partial
    file that a later start would load."""
    out = onnx_path(folder)
    if out.is_file():
        return out
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ModelUnavailable(f"cannot export the model to ONNX: {exc}") from exc

    model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{ONNX_FILE}.{secrets.token_hex(4)}")
    ids = torch.tensor([[0, 100, 200, 2]], dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on aten::index
            torch.onnx.export(
                Encoder(model),
                (ids, torch.ones_like(ids)),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, out)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"cannot export the model to ONNX: {exc}") from exc
    (out.parent / "export.json").write_text(
        json.dumps({"opset": OPSET, "torch": torch.__version__}), encoding="utf-8"
    )
    LOG.info("exported %s to %s", folder.name, out)
    return out


class OnnxEmbedder:
    """An ``Embedder`` running an exported sentence-transformers BERT folder on ONNX Runtime
    (mean pooling, L2 normalisation)."""

    def __init__(
        self,
        folder: Path,
        *,
        name: str,
        prompts: dict[str, str],
        batch_size: int = 32,
        threads: int = 1,
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(f"ONNX Runtime is not installed: {exc}") from exc
        path = export_onnx(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a damaged cached file: export again next time
            path.unlink(missing_ok=True)
            raise ModelUnavailable(f"cannot load {path.name}: {exc}; it was removed") from exc
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self.name = name
        self.prompts = prompts
        self.batch_size = batch_size
        self.dim = int(self._session.get_outputs()[0].shape[-1] or 384)

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prefix = self.prompts.get(kind, "")
        encodings = self._tokenizer.encode_batch([prefix + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out
