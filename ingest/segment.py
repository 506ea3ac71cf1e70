"""Chinese word segmentation with jieba: one dictionary per instance, no module globals.

Chunking counts Chinese sizes in these words; :class:`index.tokenize.Tokenizer` builds its
BM25 tokens on the same segmenter (it is one).
"""

from __future__ import annotations

import logging


class Segmenter:
    """Its own ``jieba.Tokenizer``: a word added to one leaves the others alone. Loading the
    dictionary takes about a second, so make one per engine, build or chunking run and pass
    it on. Safe to share between threads (jieba's segmentation is)."""

    def __init__(self) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()

    def cut(self, text: str) -> list[str]:
        """jieba's words of ``text`` (accurate mode, with HMM for unknown words)."""
        words: list[str] = self._jieba.lcut(text)
        return words

    def cut_for_search(self, text: str) -> list[str]:
        """jieba's search-mode words: each long word and its dictionary sub-words."""
        words: list[str] = self._jieba.lcut_for_search(text)
        return words

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """jieba's words of ``text`` (as :meth:`cut`) with their ``(start, end)`` offsets."""
        return [(word, start, end) for word, start, end in self._jieba.tokenize(text)]

    def frequency(self, word: str) -> int:
        """The word's count in jieba's dictionary (0 when it has none)."""
        return int(self._jieba.FREQ.get(word) or 0)

    def add_word(self, word: str, freq: int | None = None) -> None:
        """Add ``word`` to this segmenter's dictionary only."""
        self._jieba.add_word(word, freq)
