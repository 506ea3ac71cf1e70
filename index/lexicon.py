"""What lexical search needs, loaded once by its owner (the engine, a bench run, a test).

A :class:`Lexicon` is the tokenizer that made the index's BM25 tokens (the same one tokenizes
questions and passages) and, when cross-lingual expansion is on, the CC-CEDICT expander.
"""

from __future__ import annotations

from dataclasses import dataclass

from medcite.index.expand import Expander, load_expander
from medcite.index.tokenize import Tokenizer


@dataclass(frozen=True)
class Lexicon:
    tokenizer: Tokenizer
    expander: Expander | None = None  # None: no query expansion (``SearchSettings.expand`` off)


def load_lexicon(*, expand: bool = True) -> Lexicon:
    """A new tokenizer (jieba's dictionary, about 1 s) and, with ``expand``, CC-CEDICT (~2 s)."""
    tokenizer = Tokenizer()
    return Lexicon(tokenizer, load_expander(tokenizer) if expand else None)
