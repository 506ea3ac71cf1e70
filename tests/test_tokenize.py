from concurrent.futures import ThreadPoolExecutor

import pytest

from medcite.index.tokenize import TOKENIZER_VERSION, Tokenizer


def test_chinese_gets_search_mode_subwords(tokenizer: Tokenizer) -> None:
    words = tokenizer.tokens("自然流产后腰疼是什么原因", bigrams=False)
    assert {"自然", "流产", "腰疼", "原因"} <= set(words)
    assert "什么" not in words  # function word


def test_chinese_gets_every_character_bigram(tokenizer: Tokenizer) -> None:
    text = "小产后腰酸"
    tokens = tokenizer.tokens(text)
    assert {"小产", "产后", "后腰", "腰酸"} <= set(tokens)
    # Bigrams stay inside a run of Han characters: none spans punctuation or Latin.
    assert "酸b" not in tokenizer.tokens("腰酸B超") and "腰，" not in tokenizer.tokens("腰，背")


def test_english_is_stemmed_and_stopped(tokenizer: Tokenizer) -> None:
    assert tokenizer.tokens("The pains after Miscarriages") == ["pain", "after", "miscarriag"]


def test_mixed_scripts_and_punctuation_only(tokenizer: Tokenizer) -> None:
    assert sorted(tokenizer.tokens("B超 检查 CT", bigrams=False)) == sorted(
        ["超", "检查", "b", "ct"]
    )
    assert sorted(tokenizer.tokens("B超 检查 CT")) == sorted(["超", "检查", "检查", "b", "ct"])
    assert tokenizer.tokens("?!。，…") == []


# Outputs of the module-level ``lexical_tokens`` the Tokenizer replaced (same index format).
BEFORE = {
    "自然流产后腰疼是什么原因": (
        [
            "自然",
            "流产",
            "后",
            "腰疼",
            "原因",
            "自然",
            "然流",
            "流产",
            "产后",
            "后腰",
            "腰疼",
            "疼是",
            "是什",
            "什么",
            "么原",
            "原因",
        ],
        ["自然", "流产", "后", "腰疼", "原因"],
    ),
    "The pains after Miscarriages, 怀孕期间腰酸背痛怎么办?": (
        [
            "怀孕",
            "期间",
            "腰酸",
            "背痛",
            "腰酸背痛",
            "怀孕",
            "孕期",
            "期间",
            "间腰",
            "腰酸",
            "酸背",
            "背痛",
            "痛怎",
            "怎么",
            "么办",
            "pain",
            "after",
            "miscarriag",
        ],
        ["怀孕", "期间", "腰酸", "背痛", "腰酸背痛", "pain", "after", "miscarriag"],
    ),
    "B超检查 CT scan of the lumbar spine 腰椎间盘突出": (
        [
            "超",
            "检查",
            "超检",
            "检查",
            "腰椎",
            "椎间盘",
            "腰椎间盘",
            "突出",
            "腰椎",
            "椎间",
            "间盘",
            "盘突",
            "突出",
            "b",
            "ct",
            "scan",
            "lumbar",
            "spine",
        ],
        ["超", "检查", "腰椎", "椎间盘", "腰椎间盘", "突出", "b", "ct", "scan", "lumbar", "spine"],
    ),
    "糖尿病患者can't eat 高糖食物 e.g. sweets": (
        [
            "糖尿",
            "糖尿病",
            "患者",
            "糖尿",
            "尿病",
            "病患",
            "患者",
            "高糖",
            "食物",
            "高糖",
            "糖食",
            "食物",
            "can't",
            "eat",
            "e",
            "g",
            "sweet",
        ],
        ["糖尿", "糖尿病", "患者", "高糖", "食物", "can't", "eat", "e", "g", "sweet"],
    ),
}


@pytest.mark.parametrize("text", list(BEFORE))
def test_tokens_are_those_of_the_old_module_function(tokenizer: Tokenizer, text: str) -> None:
    with_bigrams, without = BEFORE[text]
    assert tokenizer.tokens(text) == with_bigrams
    assert tokenizer.tokens(text, bigrams=False) == without
    assert tokenizer.version == TOKENIZER_VERSION


def test_each_tokenizer_has_its_own_jieba() -> None:
    one, other = Tokenizer(), Tokenizer()
    text = "流产后腰疼"
    assert one.cut(text) == other.cut(text)
    assert "后腰疼" not in one.cut(text)
    one.add_word("后腰疼", 10_000_000)
    assert "后腰疼" in one.cut(text)
    assert "后腰疼" not in other.cut(text)
    assert "后腰疼" in [w for w, _, _ in one.spans(text)]
    assert one.frequency("后腰疼") == 10_000_000 and other.frequency("后腰疼") == 0


def test_spans_are_the_words_with_their_offsets(tokenizer: Tokenizer) -> None:
    text = "自然流产后，腰疼"
    spans = tokenizer.spans(text)
    assert [w for w, _, _ in spans] == tokenizer.cut(text)
    assert all(text[a:b] == w for w, a, b in spans)
    assert tokenizer.frequency("流产") > 0 and tokenizer.frequency("不是一个词语吧") == 0


def test_one_tokenizer_is_safe_to_share_between_threads(tokenizer: Tokenizer) -> None:
    texts = [
        f"The pains after Miscarriages {i}, 自然流产后腰疼 running stemmed" for i in range(200)
    ]
    expected = [tokenizer.tokens(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(tokenizer.tokens, texts)) == expected
