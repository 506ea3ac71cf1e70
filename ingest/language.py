"""Which language a text is in: Chinese when Han characters are a fair share of its letters."""

from __future__ import annotations

import re

from medcite.ingest.types import Language

# CJK unified ideographs (basic, extension A, compatibility, extensions B-F).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
HAN_CHAR = re.compile(f"[{HAN}]")
_LETTER = re.compile(r"[^\W\d_]")

ZH_SHARE = 0.2


def han_share(text: str) -> float:
    """Han characters as a share of all letters (Han or alphabetic) in ``text``; 0.0 if none."""
    han = len(HAN_CHAR.findall(text))
    letters = len(_LETTER.findall(text))  # Han characters count as letters here too
    return han / letters if letters else 0.0


def detect_language(text: str) -> Language:
    """``"zh"`` when Han characters are at least 20% of the letters, else ``"en"``.

    Counting characters (not words) keeps a Chinese text with English terms Chinese and an
    English text quoting a Chinese name English; a text without letters is ``"en"``.
    """
    return "zh" if han_share(text) >= ZH_SHARE else "en"
