from index.tokenize import lexical_tokens


def test_chinese_gets_search_mode_subwords() -> None:
    tokens = lexical_tokens("自然流产后腰疼是什么原因")
    assert {"自然", "流产", "腰疼", "原因"} <= set(tokens)
    assert "什么" not in tokens  # function word


def test_english_is_stemmed_and_stopped() -> None:
    assert lexical_tokens("The pains after Miscarriages") == ["pain", "after", "miscarriag"]


def test_mixed_scripts_and_punctuation_only() -> None:
    assert sorted(lexical_tokens("B超 检查 CT")) == sorted(["超", "检查", "b", "ct"])
    assert lexical_tokens("?!。，…") == []
