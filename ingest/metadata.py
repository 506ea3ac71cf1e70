"""Article metadata found in header lines: dates, bylines (author, title, department), institutions.

Each function looks at one stripped line and answers ``None`` when the line is not of its kind.

``author_title`` is the professional title, then the department when the byline names one,
separated by a space: "刘亚男医生医师妇科" -> author "刘亚男", author_title "医师 妇科";
"By Jane Doe, MD" -> author "Jane Doe", author_title "MD".
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_FORMS = (
    re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"),
    re.compile(r"(?<!\d)(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"),
    re.compile(
        rf"\b(?P<mon>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b", re.I
    ),
    re.compile(
        rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon>{_MONTH})\.?,?\s+(?P<y>\d{{4}})\b", re.I
    ),
)
_DATE_PREFIX = (
    r"(?:发布(?:时间|日期|于)?|更新(?:时间|日期|于)?|日期|时间|"
    r"(?:last\s+)?(?:published|updated|modified|reviewed|posted)(?:\s+on)?|date)"
)
_TIME_SUFFIX = r"(?:\s*T?\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\s*(?:Z|[+-]\d{2}:?\d{2}|[ap]\.?m\.?)?)?"

_PRO_TITLES = (
    "副主任医师|主任医师|主治医师|住院医师|执业医师|医师|副主任药师|主任药师|主管药师|药师|"
    "副主任护师|主任护师|主管护师|护师|副主任技师|主任技师|主管技师|技师|副教授|教授|副研究员|研究员"
)
_NAME = r"[\u4e00-\u9fff·]{2,4}?"
_DEPARTMENT = r"[\u4e00-\u9fff]{1,12}?(?:科|中心|部|室|病区|门诊)"
_ZH_BYLINE = re.compile(
    rf"^(?P<name>{_NAME})(?:医生|大夫)?\s*(?P<title>{_PRO_TITLES})\s*(?P<dept>{_DEPARTMENT})?$"
)
_ZH_DOCTOR = re.compile(rf"^(?P<name>{_NAME})\s*(?:医生|大夫)$")
_ZH_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,4}$")
_EN_BYLINE = re.compile(
    r"^(?i:(?:written|authored|posted)\s+)?(?i:by)[:\s]\s*"
    r"(?P<name>(?:(?:Dr|Prof|Mr|Mrs|Ms)\.?\s+)?[A-Z][\w'\-]*\.?(?:\s+[A-Z][\w'\-]*\.?){0,4})"
    r"(?:\s*,\s*(?P<title>[A-Z][A-Za-z.\-]*(?:\s*,\s*[A-Z][A-Za-z.\-]*){0,3}))?$"
)
_REVIEWER = re.compile(
    r"^(?:medically\s+|fact[- ]checked\s+)?reviewed\s+by\b|^审核[:：]|审核专家", re.I
)

_INSTITUTION = re.compile(
    r"(?:医院|医学中心|医疗中心|保健院|卫生院|卫生服务中心|诊所|门诊部|疾病预防控制中心|研究院|研究所|"
    r"\bHospital|\bClinic|\bMedical\s+Cent(?:er|re)|\bHealth\s+System|\bInfirmary|\bInstitute)"
    r"(?:\s*[（(][^)）]{1,10}[)）])?$",
    re.I,
)
_SENTENCE_PUNCT = re.compile(r"[。！？!?；;，,]|\.\s")


@dataclass(frozen=True)
class Byline:
    author: str | None
    author_title: str | None = None


def parse_date(text: str) -> str | None:
    """The first valid calendar date in ``text`` as ``YYYY-MM-DD``."""
    for form in _DATE_FORMS:
        for m in form.finditer(text):
            groups = m.groupdict()
            month = _MONTHS[groups["mon"].lower()] if groups.get("mon") else int(groups["m"])
            try:
                return dt.date(int(groups["y"]), month, int(groups["d"])).isoformat()
            except ValueError:
                continue
    return None


def date_line(line: str) -> str | None:
    """The ISO date when the whole line is a date (with an optional 发布于/Published prefix)."""
    body = re.sub(rf"^{_DATE_PREFIX}\s*[:：]?\s*", "", line.strip(), flags=re.I)
    for form in _DATE_FORMS:
        m = form.fullmatch(body) or re.fullmatch(rf"({form.pattern}){_TIME_SUFFIX}", body, re.I)
        if m:
            return parse_date(body)
    return None


def byline(line: str) -> Byline | None:
    """Author (and title) when the line is a byline: "王凤英主任医师", "刘亚男医生", "By X, MD"."""
    text = line.strip()
    m = _ZH_BYLINE.match(text)
    if m:
        title = m["title"] + (f" {m['dept']}" if m["dept"] else "")
        return Byline(m["name"], title)
    m = _ZH_DOCTOR.match(text)
    if m:
        return Byline(m["name"])
    m = _EN_BYLINE.match(text)
    if m:
        return Byline(m["name"], m["title"])
    return None


def bare_name(line: str) -> str | None:
    """A line that could be a bare Chinese personal name (2-4 Han characters)."""
    text = line.strip()
    return text if _ZH_NAME.match(text) else None


def is_reviewer_line(line: str) -> bool:
    return bool(_REVIEWER.search(line.strip())) and len(line) <= 80


def institution(line: str) -> str | None:
    """The line itself when it names a hospital or similar institution and nothing more."""
    text = line.strip()
    if len(text) > 60 or _SENTENCE_PUNCT.search(text):
        return None
    return text if _INSTITUTION.search(text) else None


def normalize_title(title: str) -> str:
    """For comparing titles: NFKC, case-folded, without whitespace and punctuation."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return "".join(ch for ch in text if ch.isalnum())
