"""Cross-lingual query expansion from CC-CEDICT: parsing, lookups, and its effect on search."""

from __future__ import annotations

import dataclasses

import pytest

from medcite.index.expand import Expander, clean_gloss, load_expander, parse
from medcite.index.lexicon import Lexicon
from medcite.index.search import SearchSettings, query_tokens, search
from medcite.index.tokenize import Tokenizer
from medcite.service.engine import Engine

LINES = [
    "# CC-CEDICT\n",
    "流產 流产 [liu2 chan3] /to have a miscarriage/(fig.) to fail; to fall through/\n",
    "小產 小产 [xiao3 chan3] /to miscarry/a miscarriage/an abortion/\n",
    "孕婦 孕妇 [yun4 fu4] /pregnant woman/\n",
    "疼 疼 [teng2] /(it) hurts/sore/to love dearly/\n",
    "人流 人流 [ren2 liu2] /stream of people/abortion/abbr. for 人工流產|人工流产[ren2 gong1]/\n",
    "錯案 错案 [cuo4 an4] /miscarriage of justice/CL:個|个[ge4]/\n",
]


@pytest.mark.parametrize(
    ("gloss", "cleaned"),
    [
        ("to have a miscarriage", "have a miscarriage"),
        ("a miscarriage", "miscarriage"),
        ("(fig.) to fail", "fail"),
        ("Pregnant woman", "pregnant woman"),
        ("abbr. for 人工流產|人工流产[ren2 gong1]", None),
        ("CL:個|个[ge4]", None),
        ("variant of 流產", None),
        ("surname Liu", None),
        ("a very long gloss of many words", None),  # longer than a phrase
    ],
)
def test_clean_gloss(gloss: str, cleaned: str | None) -> None:
    assert clean_gloss(gloss) == cleaned


def test_parse_maps_both_ways() -> None:
    d = parse(iter(LINES))
    assert d.zh_to_en["流产"] == ("have a miscarriage", "fail", "fall through")
    assert d.zh_to_en["孕妇"] == ("pregnant woman",)
    assert set(d.en_to_zh["miscarriage"]) == {"小产"}
    assert set(d.en_to_zh["abortion"]) == {"小产", "人流"}
    assert "人工流产" not in d.zh_to_en  # only named in a reference


def test_expander_lookups(tokenizer: Tokenizer) -> None:
    e = Expander(parse(iter(LINES)), tokenizer, glosses=1, words=2)
    # Single characters (疼) and stopwords are not expanded; the first gloss is kept.
    assert e.english_for(["流产", "后", "疼"]) == ["have a miscarriage"]
    # The longest phrase wins and its words are not looked up again.
    assert e.chinese_for("a pregnant woman with a miscarriage") == ["孕妇", "小产"]
    assert e.chinese_for("the weather") == []


def test_real_dictionary_covers_the_seed_vocabulary(tokenizer: Tokenizer) -> None:
    e = load_expander(tokenizer)
    assert "miscarriag" in tokenizer.tokens(" ".join(e.english_for(["流产"])))
    assert "pregnant" in " ".join(e.english_for(["孕妇"]))
    assert "孕妇" in e.chinese_for("pregnant woman back pain")
    assert "小产" in e.chinese_for("miscarriage")


def test_query_tokens_expand_only_when_enabled(tokenizer: Tokenizer) -> None:
    lexicon = Lexicon(tokenizer, Expander(parse(iter(LINES)), tokenizer))
    on = SearchSettings(expand=True)
    off = SearchSettings(expand=False)
    assert query_tokens("流产", off, lexicon) == tokenizer.tokens("流产")
    assert set(query_tokens("流产", on, lexicon)) >= {"流产", "miscarriag"}
    # Chinese terms are tokenized as passages are (jieba cuts 小产 into 小, 产).
    assert set(tokenizer.tokens("小产")) <= set(query_tokens("miscarriage", on, lexicon))
    # Expansion needs an expander: none is loaded behind the caller's back.
    with pytest.raises(ValueError, match="expander"):
        query_tokens("流产", on, Lexicon(tokenizer))
    assert query_tokens("流产", off, Lexicon(tokenizer)) == tokenizer.tokens("流产")


@pytest.mark.slow
def test_expansion_gives_cross_lingual_passages_lexical_signal(seed_engine: Engine) -> None:
    """With the real model and seed corpus, the English passages a Chinese question finds
    have no BM25 signal at all without expansion, and do with it."""
    base = dataclasses.replace(seed_engine.settings, abstain=False)
    results = [
        search(
            seed_engine.index,
            seed_engine.embedder,
            "小产后腰酸怎么办",
            k=10,
            language="en",
            settings=dataclasses.replace(base, expand=expand),
            lexicon=seed_engine.lexicon,
        )
        for expand in (False, True)
    ]
    assert results[0].hits and all(h.lexical == 0 for h in results[0].hits)
    assert any(h.lexical > 0 for h in results[1].hits)
