"""Site boilerplate: which lines of a page are not article text, and why.

Cleaning never rewrites text: :func:`find_boilerplate` labels whole lines, and the page parser
keeps spans of the unlabelled ones. The rules are generic (no site, file or exact sentence is
named): navigation lines, "Related articles" lists of other articles with their "..." teasers,
ads, contact / complaint / copyright lines, "Was this helpful?" prompts, medical disclaimers,
decoration lines, and the site's own banner: a short line doubled ("XXXXXXXX" = "XXXX" * 2) or
repeated at least three times with one copy at the top or bottom of the page, which also removes
lines made of it plus a few characters ("XXXX内容支持", "© XXXX").
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Sequence

from medcite.ingest.headings import strong_heading
from medcite.ingest.lines import Line, units
from medcite.ingest.metadata import byline, date_line, institution

LOG = logging.getLogger(__name__)

_SENTENCE_PUNCT = re.compile(r"[。！？!?；;，,]|\.(?:\s|$)")


def _rule(pattern: str, max_units: float) -> tuple[re.Pattern[str], float]:
    return re.compile(pattern, re.I), max_units


# (reason, pattern, longest line it applies to in units): long lines are article text.
_LINE_RULES: tuple[tuple[str, tuple[re.Pattern[str], float]], ...] = (
    (
        "navigation",
        _rule(
            r"^(?:<<|>>|«|»|←|→|[<>]\s*[:：])"
            r"|^(?:previous|next|prev|newer|older)(?:\s+(?:article|post|page|story|entry))?"
            r"\s*(?:[:：>»]|$)"
            r"|^(?:上一篇|下一篇|上一页|下一页|上一条|下一条|上一问|下一问)"
            r"|^(?:首页|当前位置|您的位置|你的位置|home)\s*[>»/:：]"
            r"|^(?:read more|continue reading|back to top|click here|show more|see more|"
            r"阅读全文|展开全文|查看全文|查看更多|点击查看|返回顶部|返回首页|返回列表|更多)\s*[>»]*$"
            r"|^(?:share|print|email|tweet|facebook|twitter|pinterest|linkedin|whatsapp|menu|"
            r"search|log ?in|sign ?in|sign ?up|subscribe|分享|收藏|打印|举报|评论|登录|注册|搜索)"
            r"(?:\s+(?:this|on|article|page))*\s*$",
            30,
        ),
    ),
    (
        "advertisement",
        _rule(r"广告|\b(?:advertisements?|advertising|sponsored|ads by)\b", 30),
    ),
    (
        "contact",
        _rule(
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
            r"|(?<!\d)(?:1[3-9]\d{9}|0\d{2,3}-\d{7,8}|400-?\d{3}-?\d{4}|\(\d{3}\)\s*\d{3}-\d{4}"
            r"|\d{3}-\d{3}-\d{4}|\+\d{1,3}[\s-]\d[\d\s-]{6,})(?!\d)"
            r"|投诉|请联系|联系我们|联系方式|联系电话|联系邮箱|客服|商务合作|意见反馈"
            r"|\bcontact us\b|\bcall us\b|\bcustomer service\b|\bget in touch\b",
            60,
        ),
    ),
    (
        "copyright",
        _rule(
            r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|版权所有|版权声明|ICP[备证]|"
            r"公网安备|转载请注明|未经授权",
            40,
        ),
    ),
    (
        "feedback",
        _rule(
            r"^(?:was|is|did|were)\s+(?:this|the|these)\s+"
            r"(?:article|page|information|answer|post|content|tips?)\s+(?:helpful|useful|help)"
            r"|^rate this\b|^yes\s*/?\s*no$"
            r"|^(?:这篇|本篇|本文|此)?(?:文章|内容|回答|解答)?(?:对您|对你)?有(?:帮助|用)吗"
            r"|^(?:有帮助|没帮助|点赞|赞同|反对|分享到|收藏本文)",
            20,
        ),
    ),
    (
        "disclaimer",
        _rule(
            r"风险提示|免责声明"
            r"|(?:本文|本内容|本站|本平台|本页|以上|上述|文章|内容)[^。！？]{0,12}"
            r"(?:(?:仅|只)(?:供|作)参考|(?:不能|不可|无法)(?:代替|替代)|不构成|不作为)"
            r"|如有(?:医疗)?需求[^。！？]{0,10}(?:就医|就诊|医院)|请(?:务必)?前往正规(?:医院|医疗机构)",
            40,
        ),
    ),
    (
        "disclaimer",
        _rule(
            r"not\s+(?:intended|meant)\s+(?:to|as)\s+(?:constitute|be|replace|provide|serve as)?"
            r"\s*(?:a\s+)?(?:substitute\s+for\s+)?(?:\w+\s+){0,3}(?:medical|professional)\s+"
            r"(?:advice|diagnosis|care)"
            r"|\bnot\s+a\s+substitute\s+for\s+(?:professional\s+)?medical\s+advice"
            r"|\bfor\s+(?:general\s+)?(?:informational|information|educational)\s+"
            r"(?:use|purposes?)\s+only\b|^disclaimer\b",
            120,
        ),
    ),
)

_RELATED_HEADER = re.compile(
    r"^(?:recommend(?:ed|ations)?(?:\s+(?:articles?|reading|posts?|for\s+you|stories|content))?"
    r"|related(?:\s+(?:articles?|posts?|reading|stories|content|topics|questions|links|pages))"
    r"|you\s+(?:may|might)\s+also\s+(?:like|enjoy|be\s+interested\s+in)"
    r"|more\s+(?:articles|stories|posts)|popular\s+(?:articles|posts)|most\s+popular"
    r"|trending(?:\s+now)?|read\s+next|further\s+reading|see\s+also"
    r"|相关(?:文章|阅读|推荐|问题|资讯|内容|链接)|推荐(?:阅读|文章|内容)?|热门(?:文章|推荐|资讯)"
    r"|猜你喜欢|大家都在看|延伸阅读|精彩推荐|为你推荐|更多(?:文章|推荐|相关)?)\s*[:：>»]*$",
    re.I,
)
_TEASER = re.compile(r"(?:\.\.\.|…|\[\.\.\.\]|\[…\])\s*[\])»>]*$")
_TEASER_MAX_UNITS = 60
_LINK_MAX_UNITS = 15
_TEASER_RUN = 3  # this many title+teaser pairs make a list of other articles without a header
_BANNER_EDGE = 3  # a repeated banner shows within this many lines of the top ...
_BANNER_TAIL = 6  # ... or of the bottom of the page
_BANNER_REPEATS = 3
_BANNER_AFFIX = 10  # "XXXX" + up to this many characters is still the banner


def find_boilerplate(lines: Sequence[Line]) -> list[str | None]:
    """For each line, why it is boilerplate, or ``None`` when it is kept (or blank)."""
    reasons: list[str | None] = [None] * len(lines)
    nonblank = [i for i, line in enumerate(lines) if line.text]
    names = banner_names(lines)
    for i in nonblank:
        text = lines[i].text
        if not any(ch.isalnum() for ch in text):
            reasons[i] = "decoration"
        elif names and _is_banner(text, names):
            reasons[i] = "banner"
        else:
            reasons[i] = _line_reason(text)
    _mark_related_lists(lines, nonblank, reasons)
    _mark_teaser_runs(lines, nonblank, reasons)
    if LOG.isEnabledFor(logging.DEBUG):
        LOG.debug("boilerplate: %s", Counter(r for r in reasons if r))
    return reasons


def banner_names(lines: Sequence[Line]) -> set[str]:
    """The site's own name as it shows in its banner, if the page has one."""
    nonblank = [line.text for line in lines if line.text]
    edges = nonblank[:_BANNER_EDGE] + nonblank[-_BANNER_TAIL:]
    names: set[str] = set()
    for text in nonblank[:_BANNER_EDGE]:
        for k in (2, 3):
            part = text[: len(text) // k]
            if len(text) % k == 0 and part * k == text and _bannerish(part):
                names.add(part)
    counts = Counter(nonblank)
    # a name followed by its own byline ("王凤英" / "王凤英主任医师") is a person, not the site
    people = {
        text
        for text, following in itertools.pairwise(nonblank)
        if (found := byline(following)) is not None and found.author == text
    }
    names.update(
        t for t in edges if counts[t] >= _BANNER_REPEATS and t not in people and _bannerish(t)
    )
    return names


def _bannerish(text: str) -> bool:
    return (
        3 <= len(text) <= 20
        and any(ch.isalpha() for ch in text)
        and not _SENTENCE_PUNCT.search(text)
        and date_line(text) is None
        and institution(text) is None
        and byline(text) is None
    )


def _is_banner(text: str, names: set[str]) -> bool:
    for name in names:
        if text.replace(name, "").strip() == "":
            return True
        rest = text.removeprefix(name) if text.startswith(name) else text.removesuffix(name)
        if rest != text and len(rest.strip()) <= _BANNER_AFFIX and not _SENTENCE_PUNCT.search(rest):
            return True
    return False


def _line_reason(text: str) -> str | None:
    size = units(text)
    for reason, (pattern, max_units) in _LINE_RULES:
        if size <= max_units and pattern.search(text):
            return reason
    return None


def is_teaser(text: str) -> bool:
    """A truncated summary of another article: it ends with an ellipsis."""
    return bool(_TEASER.search(text)) and units(text) <= _TEASER_MAX_UNITS


def _mark_related_lists(
    lines: Sequence[Line], nonblank: list[int], reasons: list[str | None]
) -> None:
    """A "Related articles" header and the titles and teasers listed under it."""
    for pos, i in enumerate(nonblank):
        text = lines[i].text
        if reasons[i] or not (_RELATED_HEADER.match(text) and units(text) <= 8):
            continue
        reasons[i] = "related-list"
        for k in range(pos + 1, len(nonblank)):
            j = nonblank[k]
            text = lines[j].text
            following = lines[nonblank[k + 1]].text if k + 1 < len(nonblank) else ""
            listed = (
                is_teaser(text)
                or (is_teaser(following) and units(text) <= _TEASER_MAX_UNITS)
                or (
                    units(text) <= _LINK_MAX_UNITS
                    and not re.search(r"[。.]$", text)
                    and strong_heading(text) is None
                )
            )
            if not listed:
                break
            reasons[j] = reasons[j] or "related-list"


def _mark_teaser_runs(
    lines: Sequence[Line], nonblank: list[int], reasons: list[str | None]
) -> None:
    """Title + teaser pairs in a row without a header: also a list of other articles."""
    texts = [lines[i].text for i in nonblank]
    runs: list[list[int]] = []  # positions in ``nonblank``, each run in page order
    for pos, text in enumerate(texts):
        if not is_teaser(text):
            continue
        pair = [pos]
        if pos > 0 and not is_teaser(texts[pos - 1]) and units(texts[pos - 1]) <= _TEASER_MAX_UNITS:
            pair.insert(0, pos - 1)
        if runs and runs[-1][-1] == pair[0] - 1:
            runs[-1].extend(pair)
        else:
            runs.append(pair)
    for run in runs:
        if sum(1 for pos in run if is_teaser(texts[pos])) >= _TEASER_RUN:
            for pos in run:
                reasons[nonblank[pos]] = reasons[nonblank[pos]] or "related-list"
