"""What the bench scripts share: the question mix, percentiles, a real server on loopback
(`service.testing.served`, the launcher the tests use too).

Scripts import it as a sibling module (`python bench/x.py` puts bench/ on sys.path); bench/
does not import from tests/.
"""

from __future__ import annotations

import statistics

from medcite.service.testing import served

__all__ = ["QUESTIONS", "pct", "served"]

QUESTIONS = [
    "why does my back hurt after a miscarriage",
    "流产后腰疼是什么原因",
    "back pain in pregnancy",
    "怀孕三个月腰疼怎么办",
    "how long does bleeding last after a miscarriage",
    "流产后腰酸肚子疼",
    "is relaxin the cause of joint pain",
    "how to brew chrysanthemum tea",
    "药物流产后腰疼",
    "what to do about lower back pain after an abortion",
]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]
