from medcite.index.tokenize import lexical_tokens


def test_chinese_gets_search_mode_subwords() -> None:
    words = lexical_tokens("自然流产后腰疼是什么原因", bigrams=False)
    assert {"自然", "流产", "腰疼", "原因"} <= set(words)
    assert "什么" not in words  # function word


def test_chinese_gets_every_character_bigram() -> None:
    text = "小产后腰酸"
    tokens = lexical_tokens(text)
    assert {"小产", "产后", "后腰", "腰酸"} <= set(tokens)
    # Bigrams stay inside a run of Han characters: none spans punctuation or Latin.
    assert "酸b" not in lexical_tokens("腰酸B超") and "腰，" not in lexical_tokens("腰，背")


def test_english_is_stemmed_and_stopped() -> None:
    assert lexical_tokens("The pains after Miscarriages") == ["pain", "after", "miscarriag"]


def test_mixed_scripts_and_punctuation_only() -> None:
    assert sorted(lexical_tokens("B超 检查 CT", bigrams=False)) == sorted(["超", "检查", "b", "ct"])
    assert sorted(lexical_tokens("B超 检查 CT")) == sorted(["超", "检查", "检查", "b", "ct"])
    assert lexical_tokens("?!。，…") == []
