"""The medical disclaimer carried by every search response, in the question's language."""

from __future__ import annotations

DISCLAIMERS = {
    "en": (
        "This is general health information from published articles, not a diagnosis or "
        "medical advice. If you have symptoms or are worried, see a doctor; in an emergency, "
        "call your local emergency number."
    ),
    "zh": (
        "本页内容为公开文章中的一般健康信息，不构成诊断或医疗建议。"
        "如有症状或担心，请及时就医；紧急情况请立即拨打急救电话（如120）。"
    ),
}

NO_ANSWER = {
    "en": "The corpus has no passage that answers this question.",
    "zh": "资料库中没有能回答这个问题的内容。",
}


def disclaimer(language: str) -> str:
    return DISCLAIMERS.get(language, DISCLAIMERS["en"])


def no_answer(language: str) -> str:
    return NO_ANSWER.get(language, NO_ANSWER["en"])
