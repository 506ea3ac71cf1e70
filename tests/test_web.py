"""The search page end to end: headless Chromium driven by Selenium, real ``medcite serve``.

Two servers on loopback:

- the real default model on the bundled articles (``seed_index_dir``), for the page's states;
- a temporary corpus holding a malicious article, indexed by ``serve`` itself with the fast
  fake model, to prove corpus text is never run as markup.

Uses Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``apt-get install
chromium chromium-driver``); skips when they are absent. Selenium Manager is never asked to
download anything: the driver path is given explicitly and ``SE_OFFLINE`` is set.

Screenshots of the main states go to ``$MEDCITE_ARTIFACTS`` or ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
from support import HEADINGS, PAGES_EN, REPO, build_pdf, cache_dir, serve

from medcite.service.disclaimer import DISCLAIMERS, NO_ANSWER

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download drivers

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("MEDCITE_ARTIFACTS") or REPO / "artifacts" / "screenshots")

ZH = "流产后腰疼是什么原因"
EN = "why does my back hurt after a miscarriage"
OFF_TOPIC = [("如何更换汽车轮胎", "zh"), ("how do I change a flat tyre on my car", "en")]
MISCARRIAGE_ZH = "000_1e25916c291d4d20.txt"
MISCARRIAGE_EN = {"001_f6e1ae9f4f4596cb.txt", "004_3a0b4b9e837dc788.txt"}
K = 8  # what the page asks for

EVIL_FILE = "sub dir/evil page.txt"
EVIL_TITLE = 'Evil <img src=x onerror="window.__pwned=1"> markup article'
EVIL_SCRIPT = "<script>window.__pwned=1</script>"
EVIL_TEXT = (
    f"{EVIL_TITLE}\n\n"
    f"This article about suspicious markup contains {EVIL_SCRIPT} in its body text.\n"
    'It also contains <img src=x onerror="window.__pwned=1"> and <b>bold</b> tags that must '
    "show as text.\nReaders of this markup article should see every angle bracket literally.\n"
)
TITLE = "medcite — cited answers to health questions"
WAIT = 120  # seconds: real-model searches on a busy 2-core machine


# ---- servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_available() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"browser tests need {' and '.join(missing)}: "
            "apt-get install chromium chromium-driver (Debian)"
        )


@pytest.fixture(scope="module")
def seed_server(
    browser_available: None, seed_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("seed-serve") / "serve.log"
    env = {"MEDCITE_INDEX_DIR": str(seed_index_dir), "MEDCITE_CACHE_DIR": str(cache_dir())}
    with serve(env, log, timeout=300) as base:
        yield base


def serve_corpus(root: Path, corpus: Path) -> Iterator[str]:
    """``medcite serve`` (hashing embedder, no abstention) building its index from ``corpus``."""
    env = {
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_ABSTAIN": "false",
        "MEDCITE_CORPUS_DIR": str(corpus),
        "MEDCITE_INDEX_DIR": str(root / "index"),  # empty: serve builds the index first
        "MEDCITE_CACHE_DIR": str(root / "cache"),
    }
    with serve(env, root / "serve.log", timeout=180) as base:
        yield base


@pytest.fixture(scope="module")
def evil_server(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("evil")
    corpus = root / "corpus"
    (corpus / EVIL_FILE).parent.mkdir(parents=True)
    (corpus / EVIL_FILE).write_text(EVIL_TEXT, encoding="utf-8")
    (corpus / "plain.txt").write_text(
        "Healthy teeth\n\nBrush your teeth twice a day. Floss once a day.\n", encoding="utf-8"
    )
    yield from serve_corpus(root, corpus)


@pytest.fixture(scope="module")
def pdf_server(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pdf")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "bp.pdf").write_bytes(build_pdf(PAGES_EN, headings=HEADINGS, title="BP guide"))
    yield from serve_corpus(root, corpus)


# ---- the browser ----------------------------------------------------------------------


@contextmanager
def _chromium(width: int, height: int, *, javascript: bool = True) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, driven through the system chromedriver."""
    with tempfile.TemporaryDirectory(prefix="medcite-chromium-") as profile:
        options = webdriver.ChromeOptions()
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        options.binary_location = str(CHROMIUM)
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
        ]:
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def browser(browser_available: None) -> Iterator[webdriver.Chrome]:
    with _chromium(1280, 900) as driver:
        yield driver


@pytest.fixture
def phone(browser_available: None) -> Iterator[webdriver.Chrome]:
    with _chromium(390, 844) as driver:
        # Headless windows are at least 500 px wide: emulate the phone's viewport too (mobile
        # mode also makes the page's viewport meta count, as on a real phone).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
        )
        yield driver


def shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def js(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def wait_until(
    driver: webdriver.Chrome, condition: Callable[[Any], Any], timeout: float = 20
) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


SETTLED = """
const r = document.getElementById('results');
return !r.hidden && !r.hasAttribute('aria-busy');
"""


def wait_for_results(driver: webdriver.Chrome) -> None:
    wait_until(driver, lambda d: js(d, SETTLED), WAIT)


def open_page(driver: webdriver.Chrome, base: str, **params: str) -> None:
    # Loading the URL the page is already on would be a reload, which restores the last
    # search (history state): start from a blank page instead.
    driver.get("about:blank")
    driver.get(f"{base}/" + (f"?{urlencode(params)}" if params else ""))
    wait_until(driver, lambda d: js(d, "return document.readyState === 'complete'"))


def ask(driver: webdriver.Chrome, base: str, query: str, language: str = "") -> None:
    """Load the page, type a question, press Enter, wait for the results."""
    open_page(driver, base)
    if language:
        Select(driver.find_element(By.ID, "lang")).select_by_value(language)
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query)
    box.send_keys(Keys.ENTER)
    wait_for_results(driver)


CARDS = """
return [...document.querySelectorAll('#cards li.card')].map((li) => ({
  title: li.closest('.group').querySelector('.card-title .title').textContent,
  source: li.querySelector('.cite .source').textContent,
  span: li.querySelector('.cite .span').textContent,
  section: (li.querySelector('.cite .section') || {textContent: null}).textContent,
  passage: li.querySelector('.passage').textContent,
  terms: [...li.querySelectorAll('.passage mark.term')].map((m) => m.textContent),
  language: li.dataset.language,
  doc_id: li.dataset.docId,
  chunk_id: li.dataset.chunkId,
  hidden: li.closest('.group').hidden,
  visible: li.getBoundingClientRect().height > 0,
}));
"""


def cards(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = js(driver, CARDS)
    return found


def text_of(driver: webdriver.Chrome, element_id: str) -> tuple[str, bool]:
    """(textContent, shown) of an element."""
    text, shown = js(
        driver,
        "const e = document.getElementById(arguments[0]);"
        "return [e.textContent, !e.hidden && e.getBoundingClientRect().height > 0];",
        element_id,
    )
    return str(text), bool(shown)


def api_search(base: str, query: str, **kw: Any) -> dict[str, Any]:
    r = httpx.post(f"{base}/search", json={"query": query, "k": K, **kw}, timeout=120)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def grouped(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Passages in page order: one article's passages together, articles by first rank."""
    order = list(dict.fromkeys(p["doc_id"] for p in passages))
    return sorted(passages, key=lambda p: order.index(p["doc_id"]))


def assert_cards_match_the_api(driver: webdriver.Chrome, body: dict[str, Any]) -> None:
    shown = cards(driver)
    passages = grouped(body["passages"])
    assert [(c["title"], c["source"], c["span"], c["passage"]) for c in shown] == [
        (p["title"], p["source"], f"[{p['start']}:{p['end']}]", p["text"]) for p in passages
    ]
    # one group per article, in the order of its best passage
    groups = js(
        driver,
        "return [...document.querySelectorAll('#cards > li.group')].map((g) => g.dataset.article)",
    )
    assert groups == list(dict.fromkeys(p["doc_id"] for p in body["passages"]))
    for c, p in zip(shown, passages, strict=True):
        assert c["chunk_id"] == p["chunk_id"]
        assert c["doc_id"] == p["doc_id"] and c["language"] == p["language"]
        assert c["section"] == (f"§ {p['section']}" if p["section"] else None)
        assert c["visible"]
    # The evidence sentence of every passage is marked inside it, exactly.
    marks = driver.find_elements(By.CSS_SELECTOR, "#cards .passage")
    assert len(marks) == len(passages)
    for quote_el, p in zip(marks, passages, strict=True):
        evidence = [
            e.get_attribute("textContent")
            for e in quote_el.find_elements(By.CSS_SELECTOR, "mark.evidence")
        ]
        assert evidence == [e["text"] for e in p["evidence"]]
        assert ("truncated" in (quote_el.get_attribute("class") or "")) == p["truncated"]


def assert_question_not_in_url_or_title(driver: webdriver.Chrome, query: str) -> None:
    url = urlsplit(driver.current_url)
    assert url.path == "/" and url.query == "", driver.current_url
    assert driver.title == TITLE


def allow_clipboard(driver: webdriver.Chrome, origin: str) -> None:
    """Let the page of ``origin`` write (and the test read) the clipboard."""
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )


def read_clipboard(driver: webdriver.Chrome) -> str:
    """The clipboard's text (``unreadable: ...`` when the page may not read it)."""
    return str(
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "navigator.clipboard.readText().then(done, (e) => done('unreadable: ' + e));"
        )
    )


def active_is(driver: webdriver.Chrome, element: WebElement) -> bool:
    return bool(js(driver, "return document.activeElement === arguments[0]", element))


def open_source_view(driver: webdriver.Chrome, button: WebElement) -> WebElement:
    button.click()
    return wait_source_view(driver)


def wait_source_view(driver: webdriver.Chrome) -> WebElement:
    mark: WebElement = wait_until(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#source-text mark.cited")
    )[0]
    return mark


IN_VIEW = """
const mark = arguments[0];
const box = document.getElementById('source-text');
const m = mark.getClientRects()[0];
const b = box.getBoundingClientRect();
return {
  markTop: m.top, markBottom: m.bottom, boxTop: b.top, boxBottom: b.bottom,
  viewport: window.innerHeight, scrollTop: box.scrollTop,
  needsScroll: mark.offsetTop + m.height > box.clientHeight,
};
"""


def assert_scrolled_into_view(driver: webdriver.Chrome, mark: WebElement) -> None:
    r = js(driver, IN_VIEW, mark)
    # the first line of the cited span is inside the scrolling box and the window
    assert r["boxTop"] - 1 <= r["markTop"] < r["boxBottom"], r
    assert r["markTop"] >= 0 and r["markBottom"] <= r["viewport"] + 1, r
    if r["needsScroll"]:
        assert r["scrollTop"] > 0, r


# ---- the real model on the bundled articles ------------------------------------------


def test_a_chinese_question_shows_cited_cards_and_the_chinese_disclaimer(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    ask(browser, seed_server, ZH)
    body = api_search(seed_server, ZH)
    assert body["answerable"] and body["language"] == "zh"
    assert_cards_match_the_api(browser, body)
    shown = cards(browser)
    assert MISCARRIAGE_ZH in {c["source"] for c in shown}
    assert MISCARRIAGE_EN & {c["source"] for c in shown}  # cross-lingual cards too
    assert {t for c in shown for t in c["terms"]} & {"流产", "腰疼", "原因"}
    assert text_of(browser, "disclaimer") == (DISCLAIMERS["zh"], True)
    assert not text_of(browser, "no-answer")[1] and not text_of(browser, "urgent")[1]
    assert browser.find_element(By.CSS_SELECTOR, ".card .show-source").text == "查看原文"
    assert_question_not_in_url_or_title(browser, ZH)
    assert str(len(shown)) in text_of(browser, "status")[0]
    shot(browser, "zh-results")


def test_an_english_question_shows_cited_cards_and_the_english_disclaimer(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    ask(browser, seed_server, EN)
    body = api_search(seed_server, EN)
    assert body["answerable"] and body["language"] == "en"
    assert_cards_match_the_api(browser, body)
    shown = cards(browser)
    assert MISCARRIAGE_EN & {c["source"] for c in shown[:3]}
    terms = [t.lower() for c in shown for t in c["terms"]]
    assert terms and all(t.startswith(("back", "hurt", "after", "miscarriag")) for t in terms)
    assert text_of(browser, "disclaimer") == (DISCLAIMERS["en"], True)
    assert browser.find_element(By.CSS_SELECTOR, ".card .show-source").text == "Show in source"
    shot(browser, "en-results")


@pytest.mark.parametrize(("query", "lang"), OFF_TOPIC)
def test_an_off_topic_question_says_the_corpus_has_no_answer(
    browser: webdriver.Chrome, seed_server: str, query: str, lang: str
) -> None:
    ask(browser, seed_server, query)
    assert cards(browser) == []
    assert text_of(browser, "no-answer") == (NO_ANSWER[lang], True)
    assert text_of(browser, "disclaimer") == (DISCLAIMERS[lang], True)
    assert browser.find_element(By.ID, "source-filter").get_attribute("disabled")
    shot(browser, f"no-answer-{lang}")


def test_the_source_view_shows_the_article_with_the_cited_span_highlighted(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    ask(browser, seed_server, EN)
    body = api_search(seed_server, EN)
    docs = {
        p["doc_id"]: httpx.get(f"{seed_server}/documents/{quote(p['doc_id'], safe='')}").json()
        for p in body["passages"]
    }

    def kept_before(p: dict[str, Any]) -> int:
        segments = docs[p["doc_id"]]["segments"]
        return sum(max(0, min(s["end"], p["start"]) - s["start"]) for s in segments)

    # the passage furthest into its article's kept text, so the view has to scroll to it
    i = max(range(len(body["passages"])), key=lambda j: kept_before(body["passages"][j]))
    passage = body["passages"][i]
    doc = docs[passage["doc_id"]]
    assert kept_before(passage) > 1000
    card = browser.find_element(By.CSS_SELECTOR, f"#cards li.card[data-rank='{passage['rank']}']")
    card_text = js(browser, "return arguments[0].querySelector('.passage').textContent", card)
    button = card.find_element(By.CSS_SELECTOR, ".show-source")
    mark = open_source_view(browser, button)

    assert js(browser, "return arguments[0].textContent", mark) == card_text == passage["text"]
    dialog = browser.find_element(By.ID, "source-view")
    assert js(browser, "return arguments[0].open", dialog)
    assert dialog.get_attribute("aria-modal") == "true"
    label = browser.find_element(By.ID, dialog.get_attribute("aria-labelledby") or "")
    assert label.text == passage["title"]
    assert js(browser, "return arguments[0].contains(document.activeElement)", dialog)
    assert_scrolled_into_view(browser, mark)
    assert passage["source"] in browser.find_element(By.ID, "source-meta").text
    shown = js(browser, "return document.getElementById('source-text').textContent")
    for seg in doc["segments"]:  # the whole cleaned article, no boilerplate
        assert doc["text"][seg["start"] : seg["end"]] in shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#source-text .removed")
    shot(browser, "source-view")

    browser.find_element(By.ID, "source-boilerplate").click()  # removed text, dimmed
    mark = wait_source_view(browser)
    assert js(browser, "return arguments[0].textContent", mark) == passage["text"]
    assert browser.find_elements(By.CSS_SELECTOR, "#source-text .removed")
    assert js(browser, "return document.getElementById('source-text').textContent") == doc["text"]
    assert_scrolled_into_view(browser, mark)
    shot(browser, "source-view-with-removed-text")

    browser.find_element(By.ID, "source-close").click()
    wait_until(browser, lambda d: not js(d, "return arguments[0].open", dialog))
    assert active_is(browser, button)


def test_copy_citation_puts_title_source_and_span_on_the_clipboard(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    allow_clipboard(browser, seed_server)
    ask(browser, seed_server, EN)
    p = api_search(seed_server, EN)["passages"][0]
    assert not p["site"] and not p["author"] and not p["date"]
    expected = f"“{p['text']}”\n— {p['title']}. undated. {p['source']} [{p['start']}:{p['end']}]"
    card = browser.find_element(By.CSS_SELECTOR, "#cards li.card")
    button = card.find_element(By.CSS_SELECTOR, ".copy-citation")
    assert button.get_attribute("data-citation") == expected
    button.click()
    status = card.find_element(By.CSS_SELECTOR, ".copy-status")
    wait_until(browser, lambda d: status.text == "Copied")
    clipboard = read_clipboard(browser)
    assert clipboard == expected


def test_a_url_reproduces_a_search_and_history_goes_back(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    open_page(browser, seed_server, q=EN, lang="zh")
    wait_for_results(browser)
    assert browser.find_element(By.ID, "q").get_attribute("value") == EN
    assert Select(browser.find_element(By.ID, "lang")).first_selected_option.text == "中文"
    body = api_search(seed_server, EN, language="zh")
    assert body["passages"] and {p["language"] for p in body["passages"]} == {"zh"}
    assert_cards_match_the_api(browser, body)
    assert text_of(browser, "disclaimer")[0] == DISCLAIMERS["en"]  # the question's language
    assert_question_not_in_url_or_title(browser, EN)  # the link's question leaves the URL

    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(ZH, Keys.ENTER)
    wait_until(browser, lambda d: text_of(d, "disclaimer")[0] == DISCLAIMERS["zh"], WAIT)
    wait_for_results(browser)
    assert_question_not_in_url_or_title(browser, ZH)
    browser.back()
    wait_until(browser, lambda d: d.find_element(By.ID, "q").get_attribute("value") == EN)
    wait_for_results(browser)
    assert text_of(browser, "disclaimer")[0] == DISCLAIMERS["en"]
    assert Select(browser.find_element(By.ID, "lang")).first_selected_option.text == "中文"
    assert_question_not_in_url_or_title(browser, EN)


def test_language_and_source_filters(browser: webdriver.Chrome, seed_server: str) -> None:
    ask(browser, seed_server, EN, language="en")
    assert {c["language"] for c in cards(browser)} == {"en"}

    Select(browser.find_element(By.ID, "lang")).select_by_value("")  # re-runs the search
    wait_for_results(browser)
    wait_until(browser, lambda d: {c["language"] for c in cards(d)} == {"en", "zh"}, WAIT)

    all_cards = cards(browser)
    sources = sorted({c["source"] for c in all_cards})
    assert len(sources) >= 2
    picker = Select(browser.find_element(By.ID, "source-filter"))
    assert [o.get_attribute("value") for o in picker.options][1:] == sorted(
        sources, key=[c["source"] for c in all_cards].index
    )
    picker.select_by_value(MISCARRIAGE_ZH)
    shown = [c for c in cards(browser) if c["visible"]]
    assert shown and {c["source"] for c in shown} == {MISCARRIAGE_ZH}
    assert len(shown) == sum(c["source"] == MISCARRIAGE_ZH for c in all_cards)
    assert f"{len(shown)} of {len(all_cards)}" in text_of(browser, "status")[0]
    picker.select_by_value("")
    assert all(c["visible"] for c in cards(browser))


def test_keyboard_only(browser: webdriver.Chrome, seed_server: str) -> None:
    allow_clipboard(browser, seed_server)
    open_page(browser, seed_server)
    keys = ActionChains(browser)
    assert js(browser, "return document.activeElement.id") == "q"  # the box has focus
    keys.send_keys(EN).send_keys(Keys.ENTER).perform()
    wait_for_results(browser)
    assert cards(browser)

    for _ in range(40):  # Tab through the form and the first card
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if js(browser, "return document.activeElement.classList.contains('show-source')"):
            break
    else:
        pytest.fail("Tab never reached a card's 'Show in source' button")
    button = browser.switch_to.active_element
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    mark = wait_source_view(browser)
    dialog = browser.find_element(By.ID, "source-view")
    assert js(browser, "return arguments[0].contains(document.activeElement)", dialog)
    assert_scrolled_into_view(browser, mark)
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait_until(browser, lambda d: not js(d, "return arguments[0].open", dialog))
    assert active_is(browser, button)

    ActionChains(browser).send_keys(Keys.TAB).perform()  # the same card's copy button
    copy = browser.switch_to.active_element
    assert "copy-citation" in (copy.get_attribute("class") or "")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_until(browser, lambda d: "Copied" in d.page_source)


OVERFLOW = """
const w = document.documentElement.clientWidth;
const wide = [...document.querySelectorAll('body *')].filter((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && (r.right > w + 1 || r.left < -1) && !e.closest('dialog:not([open])')
    && !e.closest('.visually-hidden') && !e.classList.contains('visually-hidden');
}).map((e) => e.tagName + '.' + e.className);
return {scroll: document.documentElement.scrollWidth, width: w, wide};
"""


def test_phone_sized_screen(phone: webdriver.Chrome, seed_server: str) -> None:
    ask(phone, seed_server, ZH)
    assert cards(phone)
    assert js(phone, "return [window.innerWidth, window.innerHeight]") == [390, 844]
    r = js(phone, OVERFLOW)
    assert r["scroll"] <= r["width"] and r["wide"] == [], r
    assert text_of(phone, "disclaimer") == (DISCLAIMERS["zh"], True)
    shot(phone, "phone-results")
    js(phone, "document.querySelectorAll('#cards li.card')[1].scrollIntoView()")
    shot(phone, "phone-results-scrolled")

    mark = open_source_view(phone, phone.find_element(By.CSS_SELECTOR, ".card .show-source"))
    box = js(phone, "return document.getElementById('source-view').getBoundingClientRect()")
    assert box["left"] >= 0 and box["right"] <= js(phone, "return window.innerWidth") + 1
    assert_scrolled_into_view(phone, mark)
    r = js(phone, OVERFLOW)
    assert r["wide"] == [], r
    shot(phone, "phone-source-view")


# ---- a malicious article --------------------------------------------------------------

NOTHING_RAN = """
return {
  pwned: typeof window.__pwned,
  imgs: document.querySelectorAll('img').length,
  scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
  bold: document.querySelectorAll('#results b, #source-view b').length,
};
"""


def assert_nothing_ran(driver: webdriver.Chrome) -> None:
    assert js(driver, NOTHING_RAN) == {
        "pwned": "undefined",
        "imgs": 0,
        "scripts": ["/static/app.js", "/static/feedback.js"],
        "bold": 0,
    }


def test_a_malicious_article_is_shown_as_text(browser: webdriver.Chrome, evil_server: str) -> None:
    ask(browser, evil_server, "suspicious markup article")
    first = cards(browser)[0]
    assert first["title"] == EVIL_TITLE and first["source"] == EVIL_FILE
    assert EVIL_SCRIPT in first["passage"] and "<b>bold</b>" in first["passage"]
    assert_nothing_ran(browser)
    shot(browser, "malicious-results")

    mark = open_source_view(browser, browser.find_element(By.CSS_SELECTOR, ".card .show-source"))
    assert EVIL_SCRIPT in js(browser, "return arguments[0].textContent", mark)
    assert browser.find_element(By.ID, "source-title").text == EVIL_TITLE
    assert_nothing_ran(browser)
    browser.find_element(By.ID, "source-boilerplate").click()
    wait_source_view(browser)
    shown = js(browser, "return document.getElementById('source-text').textContent")
    assert shown == EVIL_TEXT  # the title line too, as removed text
    assert_nothing_ran(browser)
    shot(browser, "malicious-source-view")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()


def test_a_malicious_question_in_the_url_is_shown_as_text(
    browser: webdriver.Chrome, evil_server: str
) -> None:
    query = '<img src=x onerror="window.__pwned=1"> markup (article [*+?\\'
    open_page(browser, evil_server, q=query)
    wait_for_results(browser)
    assert browser.find_element(By.ID, "q").get_attribute("value") == query
    assert_question_not_in_url_or_title(browser, query)
    assert any(c["terms"] for c in cards(browser))  # regex characters are escaped
    assert_nothing_ran(browser)


def test_an_urgent_notice_is_shown_first_as_an_alert(
    browser: webdriver.Chrome, evil_server: str
) -> None:
    """Markup in a notice stays text (a fetch wrapper puts it in the response)."""
    notice = "Call <b>120</b> now: chest pain with shortness of breath can be an emergency."
    open_page(browser, evil_server)
    js(
        browser,
        """
        const notice = arguments[0];
        const real = window.fetch;
        window.fetch = async (url, options) => {
          const response = await real(url, options);
          if (String(url) !== '/search') return response;
          const body = await response.json();
          body.urgent_notice = notice;
          return new Response(JSON.stringify(body), {
            status: response.status, headers: {'Content-Type': 'application/json'}});
        };
        """,
        notice,
    )
    box = browser.find_element(By.ID, "q")
    box.send_keys("teeth floss", Keys.ENTER)
    wait_for_results(browser)
    assert text_of(browser, "urgent") == (notice, True)
    urgent = browser.find_element(By.ID, "urgent")
    assert urgent.get_attribute("role") == "alert"
    order = js(
        browser,
        "return [...document.querySelectorAll('#urgent, #disclaimer, #cards > li')]"
        ".map((e) => [e.id || 'card', e.getBoundingClientRect().top]);",
    )
    assert order[0][0] == "urgent" and order[1][0] == "disclaimer"
    assert [top for _, top in order] == sorted(top for _, top in order)
    assert_nothing_ran(browser)
    shot(browser, "urgent-notice")


def test_a_red_flag_question_shows_the_api_urgent_notice(
    browser: webdriver.Chrome, seed_server: str
) -> None:
    for query in ["流产后大出血发烧", "heavy bleeding and fever after a miscarriage"]:
        body = api_search(seed_server, query)
        assert body["urgent_notice"]
        ask(browser, seed_server, query)
        assert text_of(browser, "urgent") == (body["urgent_notice"], True)
        order = js(
            browser,
            "return [...document.querySelectorAll('#urgent, #disclaimer')].map((e) => e.id);",
        )
        assert order == ["urgent", "disclaimer"]
    shot(browser, "urgent-notice-real")
    ask(browser, seed_server, "back pain in week 20")
    assert not text_of(browser, "urgent")[1]


# ---- a PDF: citations by page --------------------------------------------------------

PAGE_MARKERS = """
const mark = document.querySelector('#source-text mark.cited');
const markers = [...document.querySelectorAll('#source-text .sv-page')];
const before = markers.filter(
  (m) => m.compareDocumentPosition(mark) & Node.DOCUMENT_POSITION_FOLLOWING);
return {
  pages: markers.map((m) => m.dataset.page),
  labels: markers.map((m) => getComputedStyle(m, '::before').content),
  citedOn: before.length ? before[before.length - 1].dataset.page : null,
};
"""


def test_a_pdf_passage_cites_its_page_and_the_source_shows_pages(
    browser: webdriver.Chrome, pdf_server: str
) -> None:
    query = "How many grams of salt a day should adults eat?"
    body = api_search(pdf_server, query)
    top = body["passages"][0]
    assert (top["page_start"], top["page_end"]) == (2, 2)
    ask(browser, pdf_server, query)
    card = browser.find_element(By.CSS_SELECTOR, "#cards li.card")
    assert card.find_element(By.CSS_SELECTOR, ".cite .pages").text == "p. 2"
    citation = card.find_element(By.CSS_SELECTOR, ".copy-citation").get_attribute("data-citation")
    assert citation.endswith(f". bp.pdf, p. 2 [{top['start']}:{top['end']}]")
    assert citation.startswith(f"“{top['text']}”\n— {top['title']}. ")

    mark = open_source_view(browser, card.find_element(By.CSS_SELECTOR, ".show-source"))
    assert js(browser, "return arguments[0].textContent", mark) == top["text"]
    assert "p. 2" in browser.find_element(By.ID, "source-meta").text
    found = js(browser, PAGE_MARKERS)
    assert found["pages"] == ["1", "2", "3"] and found["citedOn"] == "2"
    assert found["labels"] == ['"p. 1"', '"p. 2"', '"p. 3"']
    shot(browser, "source-view-pdf-pages")
    browser.find_element(By.ID, "source-boilerplate").click()  # markers are no text
    wait_source_view(browser)
    doc = httpx.get(f"{pdf_server}/documents/bp.pdf").json()
    assert js(browser, "return document.getElementById('source-text').textContent") == doc["text"]
    assert js(browser, PAGE_MARKERS)["pages"] == ["1", "2", "3"]
    browser.find_element(By.ID, "source-boilerplate").click()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()


# ---- issue 12: the page's states, on the bundled articles with the fast fake model -----


@pytest.fixture(scope="module")
def corpus_server(
    browser_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The bundled articles, hashing embedder, no abstention: fast and always answering."""
    root = tmp_path_factory.mktemp("bundled")
    shutil.copytree(REPO / "corpus", root / "corpus")
    yield from serve_corpus(root, root / "corpus")


# Counts the page's requests and lets a test slow them down, fail them or rewrite them.
FETCH_SPY = """
const real = window.fetch;
window.__calls = [];
window.__spy = {delay: 0, fail: null, rewrite: null};
window.__results = [];
document.addEventListener('medcite:results', (e) => window.__results.push(e.detail));
window.fetch = async (url, options) => {
  const call = {url: String(url), method: (options && options.method) || 'GET',
                body: (options && options.body) || null, aborted: false};
  window.__calls.push(call);
  const signal = options && options.signal;
  const spy = window.__spy;
  if (spy.delay) {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, spy.delay);
      if (signal) signal.addEventListener('abort', () => {
        clearTimeout(timer); call.aborted = true;
        reject(new DOMException('aborted', 'AbortError'));
      });
    });
  }
  if (spy.fail && call.url === '/search') {
    if (spy.fail === 'network') throw new TypeError('Failed to fetch');
    return new Response(JSON.stringify({error: {code: spy.fail.code, message: spy.fail.message}}),
      {status: spy.fail.status, headers: {'Content-Type': 'application/json'}});
  }
  const response = await real(url, options);
  if (!spy.rewrite || call.url !== '/search') return response;
  const body = await response.json();
  const changed = spy.rewrite(body);
  return new Response(JSON.stringify(changed), {status: response.status,
    headers: {'Content-Type': 'application/json'}});
};
"""


def spy(driver: webdriver.Chrome) -> None:
    js(driver, FETCH_SPY)


def calls(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = js(driver, "return window.__calls")
    return found


def type_question(driver: webdriver.Chrome, query: str) -> None:
    box = driver.find_element(By.ID, "q")
    js(driver, "arguments[0].value = ''", box)
    box.send_keys(query)
    box.send_keys(Keys.ENTER)


def shown(driver: webdriver.Chrome, element_id: str) -> bool:
    return text_of(driver, element_id)[1]


def test_a_failed_search_clears_the_old_results_and_offers_a_retry(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    ask(browser, corpus_server, EN)
    assert cards(browser) and shown(browser, "disclaimer")
    spy(browser)
    js(browser, "window.__spy.fail = 'network'")
    type_question(browser, ZH)
    wait_until(browser, lambda d: shown(d, "error"))
    # nothing of the previous question stays on screen
    assert cards(browser) == [] and not shown(browser, "results")
    assert not shown(browser, "disclaimer") and not shown(browser, "urgent")
    assert text_of(browser, "error-text")[0] == "搜索失败：无法连接到服务。请检查网络后重试。"
    assert "Failed to fetch" not in browser.find_element(By.TAG_NAME, "body").text
    assert js(browser, "return [error.lang, document.getElementById('status').lang]") == [
        "zh",
        "zh",
    ]
    assert text_of(browser, "status")[0] == text_of(browser, "error-text")[0]
    retry = browser.find_element(By.ID, "retry")
    assert retry.text == "重试"
    shot(browser, "error-zh")
    js(browser, "window.__spy.fail = null")
    retry.click()
    wait_for_results(browser)
    assert not shown(browser, "error") and cards(browser)
    assert text_of(browser, "disclaimer") == (DISCLAIMERS["zh"], True)
    assert json.loads(calls(browser)[-1]["body"])["query"] == ZH

    # an API error is said in the reader's words, not the API's
    js(
        browser,
        "window.__spy.fail = {status: 422, code: 'invalid_query', "
        "message: 'query: String should have at most 1000 characters'}",
    )
    type_question(browser, EN)
    wait_until(browser, lambda d: shown(d, "error"))
    assert text_of(browser, "error-text")[0].startswith("This question cannot be searched")
    assert "String should have" not in browser.find_element(By.TAG_NAME, "body").text
    assert cards(browser) == [] and not shown(browser, "disclaimer")
    assert browser.find_element(By.ID, "retry").text == "Try again"
    shot(browser, "error-en")


def test_a_slow_search_shows_loading_sends_one_request_and_cancels_superseded_ones(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    ask(browser, corpus_server, EN)
    spy(browser)
    js(browser, "window.__spy.delay = 4000")
    type_question(browser, ZH)
    js(browser, "for (let i = 0; i < 80; i++) document.getElementById('submit').click();")
    state = js(
        browser,
        "return {loading: !loading.hidden, text: loading.textContent.trim(),"
        " busy: submit.getAttribute('aria-disabled'), cards: cards.children.length,"
        " results: !results.hidden, disclaimer: !disclaimer.hidden}",
    )
    assert state == {
        "loading": True,
        "text": "正在搜索…",
        "busy": "true",
        "cards": 0,
        "results": False,
        "disclaimer": False,
    }
    shot(browser, "loading")
    wait_for_results(browser)
    assert not shown(browser, "loading") and cards(browser)
    assert browser.find_element(By.ID, "submit").get_attribute("aria-disabled") is None
    made = calls(browser)
    assert [(c["method"], c["url"]) for c in made] == [("POST", "/terms"), ("POST", "/search")]

    # a new question while one is on its way: the old requests are aborted, its answer
    # never shows
    js(browser, "window.__calls.length = 0; window.__results.length = 0")
    type_question(browser, "back pain during pregnancy")
    wait_until(browser, lambda d: len(calls(d)) == 2)
    type_question(browser, EN)
    wait_for_results(browser)
    made = calls(browser)
    assert [(c["url"], c["aborted"]) for c in made] == [
        ("/terms", True),
        ("/search", True),
        ("/terms", False),
        ("/search", False),
    ]
    results = js(browser, "return window.__results.map((r) => r.query)")
    assert results == [EN]
    assert js(browser, "return window.__results[0].response.query") == EN


def test_a_passage_says_who_published_it_and_copies_a_reference_and_an_answer(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    allow_clipboard(browser, corpus_server)
    body = api_search(corpus_server, ZH, language="zh")
    top = body["passages"][0]
    assert top["site"] == "健康典吧" and top["date"] == "2025-10-17"
    ask(browser, corpus_server, ZH, language="zh")
    group = browser.find_element(By.CSS_SELECTOR, "#cards > li.group")
    byline = group.find_element(By.CSS_SELECTOR, ".byline")
    assert byline.find_element(By.CSS_SELECTOR, ".site").text == "健康典吧"
    assert byline.find_element(By.CSS_SELECTOR, ".date").text == "2025-10-17"
    assert "健康典吧" not in top["text"]  # metadata, the cleaned text is unchanged
    card = group.find_element(By.CSS_SELECTOR, "li.card")
    assert card.get_attribute("data-chunk-id") == top["chunk_id"]
    assert card.find_elements(By.CSS_SELECTOR, ".passage-actions")
    citation = card.find_element(By.CSS_SELECTOR, ".copy-citation").get_attribute("data-citation")
    author = " ".join(x for x in (top["author"], top["author_title"]) if x)
    institution = f"{top['institution']}. " if top["institution"] else ""
    reference = (
        f"{top['title']}. 健康典吧. {author}. {institution}2025-10-17. "
        f"{top['source']} [{top['start']}:{top['end']}]"
    )
    assert citation == f"“{top['text']}”\n— {reference}"
    answer = card.find_element(By.CSS_SELECTOR, ".copy-answer")
    assert answer.text == "复制回复"
    answer.click()
    status = card.find_element(By.CSS_SELECTOR, ".copy-status")
    wait_until(browser, lambda d: status.text == "已复制")
    clipboard = read_clipboard(browser)
    assert clipboard == f"{top['text']}\n\n来源：{reference}\n\n{DISCLAIMERS['zh']}"
    shot(browser, "citation-site")

    # an article without author or date says so; its file and span stay on a small line
    ask(browser, corpus_server, EN, language="en")
    group = browser.find_element(By.CSS_SELECTOR, "#cards > li.group")
    assert group.find_element(By.CSS_SELECTOR, ".byline .missing").text == "No author or date given"
    cite = group.find_element(By.CSS_SELECTOR, ".cite")
    assert re.fullmatch(r"File:\s*\S+\.txt\s*\[\d+:\d+\].*", cite.text, re.S), cite.text


def test_passages_of_one_article_are_grouped_long_ones_trimmed_and_words_highlighted(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    ask(browser, corpus_server, ZH, language="zh")
    body = api_search(corpus_server, ZH, language="zh")
    assert_cards_match_the_api(browser, body)
    per_group = js(
        browser,
        "return [...document.querySelectorAll('#cards > li.group')].map((g) =>"
        " [...g.querySelectorAll('li.card')].map((c) => c.dataset.docId))",
    )
    assert all(len(set(g)) == 1 for g in per_group)
    clipped = browser.find_elements(By.CSS_SELECTOR, "#cards .passage.clipped")
    assert clipped, "no passage long enough to be trimmed"
    quote_el = clipped[0]
    card = quote_el.find_element(By.XPATH, "./ancestor::li[contains(@class, 'card')]")
    height = quote_el.size["height"]
    evidence = quote_el.find_elements(By.CSS_SELECTOR, "mark.evidence")
    assert evidence and evidence[0].is_displayed()
    assert not any(m.is_displayed() for m in quote_el.find_elements(By.CSS_SELECTOR, ".more-text"))
    more = card.find_element(By.CSS_SELECTOR, "button.more")
    assert more.text == "展开" and more.get_attribute("aria-expanded") == "false"
    more.click()
    assert more.text == "收起" and more.get_attribute("aria-expanded") == "true"
    assert quote_el.size["height"] > height
    shot(browser, "grouped-expanded")

    # only meaningful whole words are highlighted, and the other language's through the
    # question's expansion terms
    spy(browser)
    js(
        browser,
        """window.__spy.rewrite = (body) => {
          const p = body.passages[0];
          const text = 'In the afternoon, back pain after a miscarriage hurts. Backgrounds vary.';
          body.passages = [{...p, text, start: 0, end: text.length, evidence: [],
                            truncated: false, language: 'en'}];
          return body;
        };""",
    )
    type_question(browser, EN)
    wait_for_results(browser)
    assert cards(browser)[0]["terms"] == ["back", "miscarriage", "hurts"]
    type_question(browser, "流产后腰疼")
    wait_for_results(browser)
    assert "miscarriage" in cards(browser)[0]["terms"]


def test_a_question_answered_only_in_the_other_language_says_so(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    open_page(browser, corpus_server)
    spy(browser)
    js(
        browser,
        "window.__spy.rewrite = (body) => { body.passages = body.passages.filter("
        "(p) => p.language !== body.language); return body; };",
    )
    type_question(browser, ZH)
    wait_for_results(browser)
    assert cards(browser) and {c["language"] for c in cards(browser)} == {"en"}
    assert text_of(browser, "crosslang") == ("没有找到中文资料，以下为英文资料。", True)
    order = js(browser, "return [...results.querySelectorAll('#crosslang, #cards')].map(e => e.id)")
    assert order == ["crosslang", "cards"]
    shot(browser, "cross-language-zh")
    type_question(browser, EN)
    wait_for_results(browser)
    assert {c["language"] for c in cards(browser)} == {"zh"}
    assert text_of(browser, "crosslang") == (
        "No English sources found; the passages below are in Chinese.",
        True,
    )
    js(browser, "window.__spy.rewrite = null")
    type_question(browser, EN)
    wait_for_results(browser)
    assert not shown(browser, "crosslang")


def test_the_page_speaks_the_question_language(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    open_page(browser, corpus_server)
    spy(browser)
    form = browser.find_element(By.ID, "search-form")
    assert js(browser, "return arguments[0].noValidate", form)
    browser.find_element(By.ID, "submit").click()  # empty: the page's message, no request
    assert text_of(browser, "status")[0] == "Type a question first."
    assert js(browser, "return document.getElementById('q').validationMessage") == ""
    assert calls(browser) == []
    type_question(browser, ZH)
    wait_for_results(browser)
    assert js(browser, "return [results.lang, document.getElementById('status').lang]") == [
        "zh",
        "zh",
    ]
    assert text_of(browser, "status")[0].startswith("找到")
    disclaimer = text_of(browser, "disclaimer")[0]
    assert disclaimer == DISCLAIMERS["zh"] and "以上" not in disclaimer  # it sits above
    type_question(browser, EN)
    wait_for_results(browser)
    assert js(browser, "return [results.lang, document.getElementById('status').lang]") == [
        "en",
        "en",
    ]


def test_a_long_question_box_grows_counts_and_strips_control_characters(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    open_page(browser, corpus_server)
    box = browser.find_element(By.ID, "q")
    assert box.tag_name == "textarea"
    one_line = box.size["height"]
    assert not shown(browser, "q-count")
    box.send_keys("back pain " * 110)  # 1,100 characters
    assert len(box.get_attribute("value") or "") == 1000
    assert box.size["height"] > one_line
    assert shown(browser, "q-count")
    assert text_of(browser, "q-count")[0].startswith("1000 / 1000 characters · Limit reached")
    shot(browser, "long-question")
    js(browser, "arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'))", box)
    assert not shown(browser, "q-count")

    spy(browser)
    js(
        browser,
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
        box,
        "流产\u0007后腰疼\u0000是什么原因",
    )
    assert box.get_attribute("value") == ZH
    assert text_of(browser, "q-note") == ("已从问题中删除 2 个不可见的控制字符。", True)
    box.send_keys(Keys.ENTER)
    wait_for_results(browser)
    assert json.loads(calls(browser)[-1]["body"])["query"] == ZH
    assert not shown(browser, "error") and browser.title == TITLE


def test_the_question_stays_out_of_urls_titles_and_history_unless_a_link_is_copied(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    allow_clipboard(browser, corpus_server)
    open_page(browser, corpus_server)
    spy(browser)
    type_question(browser, ZH)
    wait_for_results(browser)
    assert_question_not_in_url_or_title(browser, ZH)
    made = calls(browser)
    assert {(c["method"], c["url"]) for c in made} == {("POST", "/terms"), ("POST", "/search")}
    resources = js(browser, "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert not [r for r in resources if "q=" in r or quote(ZH) in r]
    link = browser.find_element(By.ID, "copy-link")
    assert link.text == "复制本次搜索的链接"
    link.click()
    wait_until(browser, lambda d: "链接已复制" in text_of(d, "copy-link-status")[0])
    clipboard = read_clipboard(browser)
    assert parse_qs(urlsplit(clipboard).query) == {"q": [ZH]}
    browser.get(clipboard)  # the link reproduces the search, then leaves the address bar
    wait_for_results(browser)
    assert browser.find_element(By.ID, "q").get_attribute("value") == ZH
    assert_question_not_in_url_or_title(browser, ZH)


def test_the_empty_page_offers_examples_in_both_languages(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    open_page(browser, corpus_server)
    assert shown(browser, "examples")
    found = js(
        browser,
        "return [...document.querySelectorAll('#examples button.example')]"
        ".map((b) => [b.lang, b.textContent])",
    )
    assert {lang for lang, _ in found} == {"zh", "en"}
    shot(browser, "empty-page")
    zh = next(text for lang, text in found if lang == "zh")
    browser.find_element(By.CSS_SELECTOR, "#examples button.example[lang='zh']").click()
    wait_for_results(browser)
    assert browser.find_element(By.ID, "q").get_attribute("value") == zh
    assert cards(browser) and not shown(browser, "examples")
    assert text_of(browser, "disclaimer")[0] == DISCLAIMERS["zh"]


def test_without_javascript_the_page_says_it_needs_it(
    browser_available: None, corpus_server: str
) -> None:
    with _chromium(1280, 900, javascript=False) as driver:
        driver.get(f"{corpus_server}/")
        message = driver.find_element(By.ID, "noscript")
        assert message.is_displayed()
        assert "needs JavaScript" in message.text and "JavaScript" in message.text
        assert "本页面需要启用 JavaScript" in message.text
        shot(driver, "noscript")


def test_the_api_docs_render_offline_from_local_files(
    browser: webdriver.Chrome, corpus_server: str
) -> None:
    browser.get(f"{corpus_server}/docs")
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 5, 60)
    paths = js(
        browser,
        "return [...document.querySelectorAll('.opblock-summary-path')]"
        ".map((e) => e.textContent.replace(/\\u200b/g, ''))",
    )
    assert {"/search", "/search/batch", "/terms", "/healthz"} <= set(paths)
    resources = js(browser, "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert resources and all(r.startswith(corpus_server) for r in resources), resources
    shot(browser, "api-docs")


@contextmanager
def _phone(width: int, height: int) -> Iterator[webdriver.Chrome]:
    with _chromium(width, height) as driver:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
        )
        yield driver


URGENT = "Call 120 now: heavy bleeding with fever after a miscarriage can be an emergency."
FIRST_RESULT = """
const title = document.querySelector('#cards li.group .card-title');
const passage = document.querySelector('#cards li.card .passage');
return {title: title.getBoundingClientRect().bottom,
        passage: passage.getBoundingClientRect().top + 40, height: window.innerHeight};
"""
SMALL_TARGETS = """
return [...document.querySelectorAll('button, select, summary, textarea')].filter((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && (r.height < 44 || r.width < 44);
}).map((e) => e.id || e.className || e.tagName);
"""


@pytest.mark.parametrize(("width", "height"), [(390, 844), (320, 640)])
def test_on_a_phone_the_first_result_is_on_the_first_screen(
    browser_available: None, corpus_server: str, width: int, height: int
) -> None:
    with _phone(width, height) as phone:
        ask(phone, corpus_server, ZH)
        assert not js(phone, "return document.getElementById('filters').open")
        assert js(phone, "return document.activeElement.id") != "q"  # the keyboard closed
        first = js(phone, FIRST_RESULT)
        assert first["title"] <= first["height"], first
        if width >= 390:
            assert first["passage"] <= first["height"], first
        assert js(phone, SMALL_TARGETS) == []
        r = js(phone, OVERFLOW)
        assert r["scroll"] <= r["width"] and r["wide"] == [], r
        shot(phone, f"phone-{width}x{height}")

        spy(phone)  # with an urgent notice too
        notice = "window.__spy.rewrite = (b) => { b.urgent_notice = arguments[0]; return b; }"
        js(phone, notice, URGENT)
        type_question(phone, EN)
        wait_for_results(phone)
        assert shown(phone, "urgent")
        first = js(phone, FIRST_RESULT)
        assert first["title"] <= first["height"], first
        shot(phone, f"phone-{width}x{height}-urgent")

        # Back closes the source view and stays on the results
        def searches(d: webdriver.Chrome) -> int:
            return sum(c["url"] == "/search" for c in calls(d))

        before = searches(phone)
        open_source_view(phone, phone.find_element(By.CSS_SELECTOR, ".card .show-source"))
        assert js(phone, SMALL_TARGETS) == []
        phone.back()
        dialog = phone.find_element(By.ID, "source-view")
        wait_until(phone, lambda d: not js(d, "return arguments[0].open", dialog))
        assert cards(phone) and shown(phone, "results")
        assert searches(phone) == before
        # and closing it with its button does not leave an entry for Back to reopen
        open_source_view(phone, phone.find_element(By.CSS_SELECTOR, ".card .show-source"))
        phone.find_element(By.ID, "source-close").click()
        wait_until(phone, lambda d: not js(d, "return arguments[0].open", dialog))
        assert searches(phone) == before
