"""Red-flag detection (``service.safety``) and the ``urgent_notice`` field of the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support import cache_dir

from medcite.service.app import create_app
from medcite.service.safety import red_flags, urgent_notice
from medcite.service.settings import Settings

POSITIVE = [
    # heavy bleeding
    ("heavy bleeding after miscarriage", "en", "heavy bleeding"),
    ("I'm soaking through a pad every hour", "en", "heavy bleeding"),
    ("the bleeding won't stop after my D&C", "en", "heavy bleeding"),
    ("Bleeding Heavily at 8 weeks, is this normal?", "en", "heavy bleeding"),
    ("流产后大出血怎么办", "zh", "heavy bleeding"),
    ("人流后出血很多还有血块", "zh", "heavy bleeding"),
    ("产后出血不止", "zh", "heavy bleeding"),
    ("月经血崩", "zh", "heavy bleeding"),
    # fever after a miscarriage, abortion or birth
    ("fever after miscarriage", "en", "fever after"),
    ("high temperature two days after giving birth", "en", "fever after"),
    ("I had an abortion last week and now I have chills and a fever", "en", "fever after"),
    ("流产后发烧38度", "zh", "fever after"),
    ("人流后一直发热", "zh", "fever after"),
    ("产后高烧不退", "zh", "fever after"),
    # severe or worsening abdominal pain
    ("severe abdominal pain at 6 weeks pregnant", "en", "abdominal pain"),
    ("my stomach pain is getting worse after the abortion", "en", "abdominal pain"),
    ("unbearable belly cramps", "en", "abdominal pain"),
    ("剧烈腹痛", "zh", "abdominal pain"),
    ("肚子疼得厉害怎么办", "zh", "abdominal pain"),
    ("药流后小腹越来越疼", "zh", "abdominal pain"),
    # fainting
    ("I fainted in the shower, I'm 10 weeks pregnant", "en", "fainting"),
    ("she passed out after the miscarriage", "en", "fainting"),
    ("怀孕后晕倒了", "zh", "fainting"),
    ("刚才差点晕过去", "zh", "fainting"),  # "almost fainted": still worth seeing someone now
    # chest pain, breathing
    ("chest pain and shortness of breath after delivery", "en", "chest pain"),
    ("I can't breathe when I lie down", "en", "shortness of breath"),
    ("胸口疼是怎么回事", "zh", "chest pain"),
    ("孕晚期喘不上气", "zh", "shortness of breath"),
    ("呼吸困难", "zh", "shortness of breath"),
    # suicidal thoughts
    ("I want to die since I lost the baby", "en", "suicide"),
    ("having suicidal thoughts after miscarriage", "en", "suicide"),
    ("流产后不想活了", "zh", "suicide"),
    ("产后抑郁想自杀", "zh", "suicide"),
    # seizures and other emergencies
    ("seizure during pregnancy", "en", "seizure"),
    ("孕妇突然抽搐", "zh", "seizure"),
    ("severe headache and blurred vision at 34 weeks", "en", "headache"),
    ("baby stopped moving at 30 weeks", "en", "baby moving"),
    ("胎动减少怎么办", "zh", "baby moving"),
    ("呕血", "zh", "blood"),
    # negation only cancels the phrase it sits right before
    ("no fever but heavy bleeding after miscarriage", "en", "heavy bleeding"),
    ("没有发烧，但是大出血", "zh", "heavy bleeding"),
    # "not sure why" is not a negation of the symptom: the notice stays
    ("not sure why I have chest pain", "en", "chest pain"),
    ("不知道为什么大出血", "zh", "heavy bleeding"),
    # mixed script: every rule runs on every query
    ("流产后 heavy bleeding", "zh", "heavy bleeding"),
]

NEGATIVE = [
    ("back pain in week 20", "en"),
    ("怀孕20周腰疼", "zh"),
    ("no fever after miscarriage", "en"),
    ("流产后没有发烧但是腰疼", "zh"),
    # Fever alone is not on the list: it is urgent only after a miscarriage, abortion or birth.
    ("how to lower a fever in a child", "en"),
    ("小孩发烧怎么退烧", "zh"),
    ("why does my back hurt after a miscarriage", "en"),
    ("流产后腰疼是什么原因", "zh"),
    ("light spotting at 7 weeks", "en"),
    ("流产后少量出血正常吗", "zh"),
    ("is it normal to have mild cramps after an abortion", "en"),
    ("肚子有点疼", "zh"),
    # "faint" as an adjective is everyday pregnancy vocabulary, not fainting.
    ("faint line on a pregnancy test", "en"),
    ("验孕棒有一条很淡的线", "zh"),
    # Leg cramps (抽筋) are common and harmless in pregnancy; 抽搐 (convulsions) is the flag.
    ("怀孕腿抽筋怎么办", "zh"),
    ("leg cramps at night during pregnancy", "en"),
    ("I have not fainted but feel dizzy", "en"),
    ("没有胸痛，只是有点累", "zh"),
    ("no chest pain, just heartburn", "en"),
    ("不发烧，流产后腰酸", "zh"),
    ("what is the best phone to buy", "en"),
    ("红烧肉怎么做好吃", "zh"),
    ("hemorrhoids during pregnancy", "en"),  # not a haemorrhage
    ("胎动频繁正常吗", "zh"),  # frequent movements, not fewer
]


@pytest.mark.parametrize(("query", "language", "label"), POSITIVE)
def test_red_flags_give_a_notice_in_the_query_language(
    query: str, language: str, label: str
) -> None:
    notice = urgent_notice(query, language)
    assert notice is not None
    assert any(label in flag.en for flag in red_flags(query)), [f.en for f in red_flags(query)]
    if language == "zh":
        assert "120" in notice and "立即就医" in notice
    else:
        assert "Seek medical care now" in notice and "emergency" in notice


@pytest.mark.parametrize(("query", "language"), NEGATIVE)
def test_ordinary_questions_get_no_notice(query: str, language: str) -> None:
    assert urgent_notice(query, language) is None, [f.en for f in red_flags(query)]


def test_notice_names_every_flag_and_adds_a_self_harm_line() -> None:
    notice = urgent_notice("heavy bleeding and I want to kill myself", "en")
    assert notice is not None
    assert "heavy bleeding" in notice and "suicide" in notice and "crisis line" in notice
    zh = urgent_notice("大出血，不想活了", "zh")
    assert zh is not None and "大出血" in zh and "心理危机" in zh


@pytest.fixture(scope="module")
def app(seed_index_dir: Path, seed_engine: Any) -> Iterator[TestClient]:
    """The app in process with the real model on the bundled corpus (the real server is
    tested in test_api.py)."""
    settings = Settings(index_dir=seed_index_dir, cache_dir=cache_dir())
    with TestClient(create_app(settings, engine=seed_engine)) as client:
        yield client


@pytest.mark.slow
def test_api_sets_urgent_notice_from_the_query(app: TestClient) -> None:
    def post(query: str) -> dict[str, object]:
        r = app.post("/search", json={"query": query})
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    en = post("heavy bleeding and fever after a miscarriage")
    assert isinstance(en["urgent_notice"], str) and "Seek medical care now" in en["urgent_notice"]
    zh = post("流产后大出血发烧")
    assert isinstance(zh["urgent_notice"], str) and "120" in zh["urgent_notice"]
    calm = post("back pain in week 20")
    assert "urgent_notice" in calm and calm["urgent_notice"] is None
    # also when the service abstains
    # (a question the corpus cannot answer; "chest pain while changing a flat tyre" is
    # answered since the relevance model, with a low-scored chest-tightness passage)
    off = post("I fainted while changing a flat tyre, how do I fix the car jack")
    assert off["answerable"] is False and isinstance(off["urgent_notice"], str)
    r = app.post(
        "/search/batch",
        json={"queries": [{"query": "流产后大出血发烧"}, {"query": "back pain in week 20"}]},
    )
    results = r.json()["results"]
    assert results[0]["urgent_notice"] and results[1]["urgent_notice"] is None
