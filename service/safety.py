"""Medical red flags in a question -> a short "seek care now" notice (pure functions, no I/O).

Every rule is checked on every query whatever its detected language, so a mixed-script
question is covered; the notice is written in the query's language. English patterns are
word-boundary regexes (case-insensitive), Chinese ones plain substring patterns.

Negation is handled only where it is cheap and unambiguous: a negator *directly* before the
phrase ("no fever", "not bleeding heavily", "没有发烧", "不发烧") cancels it. Anything else
("not sure why I have chest pain", "不知道为什么大出血") still triggers: a needless notice costs
a sentence, a missed one can cost much more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A negator right before the match, with at most two filler/modifier words in between.
_EN_NEGATED = re.compile(
    r"\b(?:no|not|without|never|denies|denied|free\s+of|"
    r"(?:do|does|did|have|has|had)(?:\s+not|n't|nt)(?:\s+(?:have|had|get|got))?)\s+"
    r"(?:(?:a|an|any|real|significant|much|more|high|severe|heavy|other|signs?\s+of)\s+){0,2}$",
    re.IGNORECASE,
)
_ZH_NEGATED = re.compile(r"(?:没有|没|无|未|不|否认|并无)(?:出现|有|再|明显|发生)?$")


@dataclass(frozen=True)
class _Flag:
    en: str  # label in the English notice
    zh: str  # label in the Chinese notice
    patterns: tuple[re.Pattern[str], ...]
    # When set, the flag also needs one of these (not negated) somewhere in the query.
    context: tuple[re.Pattern[str], ...] = ()


def _en(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


def _zh(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives))


_FEVER = (
    _en(r"fevers?", r"feverish", r"high\s+temperature", r"running\s+a\s+temperature", r"chills"),
    _zh(r"发烧", r"发热", r"高烧", r"高热", r"体温(?:升高|偏高|很高|3[89])"),
)
_AFTER_PREGNANCY = (
    _en(
        r"miscarriage",
        r"miscarried",
        r"abortion",
        r"d\s*&\s*c",
        r"childbirth",
        r"(?:giving|gave|given)\s+birth",
        r"after\s+(?:the\s+)?birth",
        r"after\s+(?:the\s+)?delivery",
        r"postpartum",
        r"post-partum",
        r"c-section",
        r"c\s+section",
        r"ca?esarean",
        r"delivered",
    ),
    _zh(
        r"流产",
        r"人流",
        r"药流",
        r"清宫",
        r"刮宫",
        r"小产",
        r"产后",
        r"生完",
        r"分娩",
        r"剖腹产",
        r"剖宫产",
        r"顺产",
        r"月子",
    ),
)

_BELLY = r"(?:lower\s+)?(?:abdominal|abdomen|belly|stomach|tummy|pelvic)"
_SEVERE = (
    r"(?:severe|sharp|unbearable|excruciating|intense|extreme|terrible|agonizing|agonising|"
    r"worsening|horrible)"
)

FLAGS: tuple[_Flag, ...] = (
    _Flag(
        "heavy bleeding",
        "大出血",
        (
            _en(
                r"heavy\s+bleeding",
                r"bleeding\s+(?:very\s+)?heavily",
                r"bleeding\s+(?:a\s+lot|profusely|non-?stop)",
                r"ha?emorrhag(?:e|es|ing)",
                r"soak(?:s|ed|ing)?\s+(?:through\s+)?(?:a|an|one|two|\d+|my|several)?\s*"
                r"(?:sanitary\s+)?(?:pads?|towels?|tampons?)",
                r"bleeding\s+(?:that\s+)?(?:won't|wont|will\s+not|doesn't|does\s+not|can't|"
                r"cannot|isn't|is\s+not)\s+stop(?:ping)?",
                r"can't\s+stop\s+(?:the\s+)?bleeding",
                r"lots\s+of\s+blood",
            ),
            _zh(
                r"大出血",
                r"大量出血",
                r"大量流血",
                r"出血(?:很多|特别多|非常多|量很大|量大|量多|不止|止不住|停不下)",
                r"流血(?:很多|特别多|不止|止不住)",
                r"血崩",
                r"血流不止",
                r"止不住(?:地)?(?:出|流)血",
                r"湿透.{0,4}卫生巾",
                r"卫生巾.{0,8}湿透",
            ),
        ),
    ),
    _Flag(
        "fever after a miscarriage, abortion or birth",
        "流产或分娩后发烧",
        _FEVER,
        context=_AFTER_PREGNANCY,
    ),
    _Flag(
        "severe or worsening abdominal pain",
        "剧烈或加重的腹痛",
        (
            _en(
                rf"{_SEVERE}\s+{_BELLY}\s+(?:pain|ache|aches|cramps?|cramping)",
                rf"{_SEVERE}\s+(?:pain|cramps?|cramping)\s+in\s+(?:my|the|her|his)\s+"
                r"(?:lower\s+)?(?:abdomen|belly|stomach|tummy|pelvis)",
                rf"{_BELLY}\s+(?:pain|ache|cramps?|cramping)\s+(?:that\s+)?(?:is\s+|keeps\s+)?"
                r"(?:getting\s+worse|worsening|unbearable|excruciating)",
            ),
            _zh(
                r"剧烈(?:的)?(?:腹痛|肚子疼|肚子痛|下腹痛|小腹痛|腹部疼痛)",
                r"(?:腹部|下腹|小腹|肚子)剧痛",
                r"腹部?剧痛",
                r"(?:肚子|腹|小腹|下腹)(?:疼|痛)得(?:厉害|受不了|要命|不行|打滚)",
                r"(?:肚子|腹|小腹|下腹|胃)[^，。,.!?！？;；]{0,6}越来越(?:疼|痛|厉害)",
                r"(?:肚子|腹|小腹|下腹)[^，。,.!?！？;；]{0,4}(?:疼|痛)[^，。,.!?！？;；]{0,4}"
                r"(?:受不了|难以忍受|加重)",
            ),
        ),
    ),
    _Flag(
        "fainting",
        "晕厥",
        (
            _en(
                r"faint(?:ed|ing|s)",
                r"(?:feel|feels|feeling|felt)\s+(?:very\s+)?faint",
                r"(?:going|about)\s+to\s+faint",
                r"pass(?:ed|ing)?\s+out",
                r"black(?:ed|ing)?\s+out",
                r"collapsed?",
                r"lost\s+consciousness",
                r"loss\s+of\s+consciousness",
                r"unconscious",
                r"syncope",
            ),
            _zh(r"晕倒", r"昏倒", r"昏厥", r"晕厥", r"晕过去", r"昏过去", r"失去意识"),
            _zh(r"不省人事", r"昏迷"),
        ),
    ),
    _Flag(
        "chest pain",
        "胸痛",
        (
            _en(
                r"chest\s+pains?",
                r"pain\s+in\s+(?:my|the|his|her)\s+chest",
                r"chest\s+(?:tightness|pressure)",
                r"tight(?:ness)?\s+(?:in\s+)?(?:my|the)\s+chest",
            ),
            _zh(r"胸痛", r"胸口(?:疼|痛|剧痛|闷痛)", r"胸部(?:疼|痛|剧痛)", r"心口(?:疼|痛)"),
        ),
    ),
    _Flag(
        "shortness of breath",
        "呼吸困难",
        (
            _en(
                r"short(?:ness)?\s+of\s+breath",
                r"can'?t\s+breathe",
                r"cannot\s+breathe",
                r"can\s+not\s+breathe",
                r"unable\s+to\s+breathe",
                r"(?:trouble|difficulty|struggling)\s+(?:to\s+)?breathing",
                r"struggling\s+to\s+breathe",
                r"hard\s+to\s+breathe",
                r"gasping\s+for\s+(?:air|breath)",
                r"breathless",
            ),
            _zh(r"呼吸困难", r"喘不上气", r"喘不过气", r"上不来气", r"透不过气", r"呼吸急促"),
        ),
    ),
    _Flag(
        "thoughts of suicide or self-harm",
        "自杀或自伤的念头",
        (
            _en(
                r"suicid(?:e|al)",
                r"kill(?:ing)?\s+myself",
                r"(?:want|wanna|wanted)\s+to\s+die",
                r"end(?:ing)?\s+(?:my|my\s+own)\s+life",
                r"end\s+it\s+all",
                r"take\s+my\s+(?:own\s+)?life",
                r"self[-\s]harm(?:ing)?",
                r"hurt(?:ing)?\s+myself",
                r"(?:don't|do\s+not)\s+want\s+to\s+(?:live|be\s+alive)",
                r"better\s+off\s+dead",
            ),
            _zh(
                r"自杀",
                r"不想活",
                r"轻生",
                r"想死",
                r"寻死",
                r"结束(?:自己的)?生命",
                r"活着没(?:有)?意思",
                r"割腕",
                r"自残",
            ),
        ),
    ),
    _Flag(
        "a seizure",
        "抽搐",
        (
            _en(r"seizures?", r"seizing", r"convulsions?", r"convulsing", r"having\s+a\s+fit"),
            _zh(r"抽搐", r"惊厥", r"癫痫发作", r"抽风", r"羊癫疯"),
        ),
    ),
    _Flag(
        "a severe headache or sudden vision problems",
        "剧烈头痛或视物模糊",
        (
            _en(
                r"(?:severe|worst|sudden|excruciating|unbearable)\s+headaches?",
                r"blurred\s+vision",
                r"blurry\s+vision",
                r"(?:sudden|lost|loss\s+of)\s+vision",
            ),
            _zh(r"剧烈(?:的)?头痛", r"头痛欲裂", r"头疼得(?:厉害|受不了)"),
            _zh(r"视物模糊", r"视力模糊", r"眼前发黑"),
        ),
    ),
    _Flag(
        "vomiting or coughing up blood",
        "吐血或咯血",
        (
            _en(
                r"(?:vomiting|vomited|throwing\s+up|threw\s+up|coughing\s+up|coughed\s+up)\s+blood",
                r"bloody\s+vomit",
            ),
            _zh(r"吐血", r"呕血", r"咯血", r"咳血"),
        ),
    ),
    _Flag(
        "the baby moving less or not at all",
        "胎动减少或消失",
        (
            _en(
                r"(?:reduced|decreased|less|fewer|no)\s+(?:fetal|foetal|baby)\s+movements?",
                r"baby\s+(?:has\s+)?(?:stopped|isn't|is\s+not|hasn't\s+been)\s+moving",
                r"(?:can't|cannot|can\s+not)\s+feel\s+(?:the\s+|my\s+)?baby\s+move",
            ),
            _zh(r"胎动(?:明显)?(?:减少|消失|停止|没了|变少)", r"感觉不到胎动", r"没有胎动"),
        ),
    ),
)

NOTICE = {
    "en": (
        "Your question mentions a symptom that can be serious ({labels}). Seek medical care "
        "now: contact your doctor, go to an emergency department or call your local emergency "
        "number."
    ),
    "zh": (
        "你的问题提到可能很严重的症状（{labels}）。"
        "请立即就医：联系医生、前往急诊，或拨打120急救电话。"
    ),
}
SELF_HARM = {
    "en": " If you are thinking about harming yourself, you are not alone: talk to someone "
    "now, call your local emergency number or a crisis line.",
    "zh": "如果你有伤害自己的想法，你并不孤单：请现在就找人倾诉，拨打120或当地心理危机干预热线。",
}


def _negated(prefix: str, pattern: re.Pattern[str]) -> bool:
    if pattern.flags & re.IGNORECASE:  # English
        return _EN_NEGATED.search(prefix) is not None
    return _ZH_NEGATED.search(prefix) is not None


def _mentions(query: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """One of ``patterns`` occurs in ``query`` without a negator right before it."""
    for pattern in patterns:
        for match in pattern.finditer(query):
            if not _negated(query[: match.start()], pattern):
                return True
    return False


def red_flags(query: str) -> list[_Flag]:
    """The red flags ``query`` mentions, in the order of ``FLAGS``."""
    return [
        flag
        for flag in FLAGS
        if _mentions(query, flag.patterns) and (not flag.context or _mentions(query, flag.context))
    ]


def urgent_notice(query: str, language: str) -> str | None:
    """A short "seek care now" message in ``language`` when ``query`` mentions a red flag."""
    flags = red_flags(query)
    if not flags:
        return None
    lang = "zh" if language == "zh" else "en"
    labels = ("、" if lang == "zh" else "; ").join(getattr(f, lang) for f in flags)
    notice = NOTICE[lang].format(labels=labels)
    if any(f.en.startswith("thoughts of suicide") for f in flags):
        notice += SELF_HARM[lang]
    return notice
