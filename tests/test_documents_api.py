"""The search page's endpoints (``/``, ``/static``, ``/terms``, ``/documents/{id}``).

Fast: the bundled articles plus a nested file, indexed with the fake hashing embedder, served
in-process by FastAPI's TestClient.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from support import CORPUS, shared_lexicon

from medcite.index.build import build_index
from medcite.index.embed import HashingEmbedder
from medcite.index.store import LoadedIndex, load_index
from medcite.ingest import load
from medcite.service.app import create_app
from medcite.service.engine import Engine
from medcite.service.settings import Settings

EMB = HashingEmbedder(32)
CARD_PAGE = "000_1e25916c291d4d20.txt"
NESTED = "dir one/nested.txt"
NESTED_TEXT = (
    "Nested article about knees\n\n"
    "Knee pain after running is common. Rest, ice and gentle stretching help most people.\n"
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LoadedIndex:
    root = tmp_path_factory.mktemp("corpus")
    for path in CORPUS.glob("*.txt"):
        shutil.copy(path, root / path.name)
    (root / NESTED).parent.mkdir()
    (root / NESTED).write_text(NESTED_TEXT, encoding="utf-8")
    out = tmp_path_factory.mktemp("idx")
    build_index(
        load([root]), EMB, index_dir=out, settings=Settings(index_dir=out).build(), cache=None
    )
    return load_index(out)


@pytest.fixture(scope="module")
def client(index: LoadedIndex) -> Iterator[TestClient]:
    settings = Settings(index_dir=index.path.parent, model="hashing-32", abstain=False)
    # The fake embedder's cosines mean nothing to the relevance model: fused order.
    search = dataclasses.replace(settings.search(EMB.name), relevance=None)
    lexicon = shared_lexicon()
    engine = Engine(
        index=index,
        embedder=EMB,
        settings=search,
        tokenizer=lexicon.tokenizer,
        expander=lexicon.expander,
    )
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c


def url(doc_id: str) -> str:
    return "/documents/" + quote(doc_id, safe="")


def test_a_card_document_has_its_source_text_and_segments(
    client: TestClient, index: LoadedIndex
) -> None:
    doc_id = f"{CARD_PAGE}#3"
    r = client.get(url(doc_id))
    assert r.status_code == 200, r.text
    body = r.json()
    doc = index.documents[doc_id]
    assert body["doc_id"] == doc_id and body["title"] == doc.title and body["kind"] == "card"
    assert body["source"] == CARD_PAGE and body["language"] == "zh"
    assert body["text"] == (CORPUS / CARD_PAGE).read_text(encoding="utf-8")
    assert body["segments"] == [
        {"start": s.start, "end": s.end, "section": s.section} for s in doc.segments
    ]
    chunks = [c for c in index.chunks if c.doc_id == doc_id]
    assert chunks
    for c in chunks:
        assert body["text"][c.start : c.end] == c.text


def test_every_indexed_document_is_reachable_by_its_encoded_id(
    client: TestClient, index: LoadedIndex
) -> None:
    assert any("#" in d for d in index.documents) and NESTED in index.documents
    for doc_id, doc in index.documents.items():
        body = client.get(url(doc_id)).json()
        assert body["doc_id"] == doc_id
        assert body["text"] == index.sources[doc.source].text


def test_an_id_with_a_slash_also_works_unencoded(client: TestClient) -> None:
    r = client.get("/documents/dir one/nested.txt")
    assert r.status_code == 200 and r.json()["title"] == "Nested article about knees"


def test_article_metadata_is_returned(client: TestClient) -> None:
    body = client.get(url(CARD_PAGE)).json()
    assert body["kind"] == "article" and body["date"] == "2025-10-17"
    assert body["institution"]
    assert [s["section"] for s in body["segments"]][:2] == ["一、子宫复旧不良", "二、盆腔充血"]


@pytest.mark.parametrize(
    "path",
    [
        "/documents/nope.txt",
        "/documents/" + quote(f"{CARD_PAGE}#99", safe=""),
        "/documents/" + quote("../pyproject.toml", safe=""),
        "/documents/" + quote("../../../../etc/passwd", safe=""),
        "/documents/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/documents/" + quote("/etc/passwd", safe=""),
        "/documents/" + quote(f"dir one/../{CARD_PAGE}", safe=""),
        "/documents/" + quote(str(CORPUS / CARD_PAGE), safe=""),
    ],
)
def test_unknown_ids_and_paths_are_404_in_the_error_shape(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert "root:" not in r.text


def test_documents_is_503_while_the_index_is_not_loaded(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "empty", cache_dir=tmp_path, model="hashing-32")
    with TestClient(create_app(settings)) as c:
        r = c.get(url(CARD_PAGE))
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_terms_of_a_chinese_question_are_jieba_words(client: TestClient) -> None:
    body = client.get("/terms", params={"q": "流产后腰疼是什么原因"}).json()
    assert body["language"] == "zh"
    assert {"流产", "腰疼", "原因"} <= set(body["terms"])
    assert not {"后", "是", "什么"} & set(body["terms"])  # stop words and single characters


def test_terms_of_an_english_question_are_words_and_stems(client: TestClient) -> None:
    body = client.get("/terms", params={"q": "Why does my back hurt after a Miscarriage?"}).json()
    assert body["language"] == "en"
    assert {"back", "hurt", "miscarriage", "miscarriag"} <= set(body["terms"])
    assert not {"why", "does", "my", "a"} & set(body["terms"])
    assert body["terms"] == sorted(body["terms"], key=len, reverse=True)


@pytest.mark.parametrize("q", ["", "   ", "x" * 1001])
def test_terms_rejects_bad_questions_in_the_error_shape(client: TestClient, q: str) -> None:
    r = client.get("/terms", params={"q": q})
    assert r.status_code == 422
    assert r.json()["error"]["code"] in {"invalid_request", "invalid_query"}


def test_terms_needs_a_question(client: TestClient) -> None:
    r = client.get("/terms")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_the_page_and_its_files_have_the_right_content_types(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="q"' in page.text and 'name="viewport"' in page.text
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/static/app.js")
    assert js.status_code == 200
    assert js.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    # corpus text is only ever set as text, never parsed as markup
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write", js.text)
    assert "/documents/" in js.text and "/terms" in js.text


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/%2E%2E/web.py", "/static/..%2F..%2Fpyproject.toml"]
)
def test_missing_static_files_are_404_in_the_error_shape(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_search_response_shape_is_unchanged(client: TestClient) -> None:
    body = client.post("/search", json={"query": "knee pain running"}).json()
    assert set(body) == {
        "query",
        "language",
        "urgent_notice",  # added on purpose (service/safety.py); the rest is unchanged
        "answerable",
        "message",
        "disclaimer",
        "passages",
        "took_ms",
    }
    assert body["urgent_notice"] is None
    assert body["passages"][0]["source"] == NESTED
    assert "/documents/{doc_id}" in client.get("/openapi.json").json()["paths"]


def test_terms_by_post_keeps_the_question_out_of_the_url(client: TestClient) -> None:
    q = "Why does my back hurt after a Miscarriage in the afternoon?"
    posted = client.post("/terms", json={"query": q})
    assert posted.status_code == 200
    body = posted.json()
    assert body["terms"] == client.get("/terms", params={"q": q}).json()["terms"]
    assert "after" not in body["terms"]  # BM25 may match it; the page does not light it up
    assert body["expansions"] and all(re.search(r"[\u4e00-\u9fff]", t) for t in body["expansions"])
    zh = client.post("/terms", json={"query": "流产后腰疼是什么原因"}).json()
    assert "miscarriage" in zh["expansions"]
    for bad in ({"query": ""}, {"query": "x" * 1001}, {"q": "back pain"}, {}):
        r = client.post("/terms", json=bad)
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] in {"invalid_request", "invalid_query"}


def test_passages_and_documents_name_the_site(client: TestClient) -> None:
    body = client.post("/search", json={"query": "流产后腰疼", "k": 8, "language": "zh"}).json()
    assert body["passages"] and {p["site"] for p in body["passages"]} == {"健康典吧"}
    doc = client.get(url(CARD_PAGE)).json()
    assert doc["site"] == "健康典吧" and "健康典吧健康典吧" in doc["text"]
    en = client.get(url("004_3a0b4b9e837dc788.txt")).json()
    assert en["site"] is None


def test_the_api_docs_use_local_swagger_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs-assets/swagger-ui-bundle.js" in assets
    assert "/docs-assets/swagger-ui.css" in assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    # Byte for byte the official swagger-ui-dist@5.31.0 from npm (sha256 of its files): the
    # pinned PyPI package that ships them has changed nothing.
    official = {
        "/docs-assets/swagger-ui-bundle.js": (
            "93b7b0862a80e2786f85b560be7693c2344354ffa7e7e224f850a54349724c31"
        ),
        "/docs-assets/swagger-ui.css": (
            "9e576f8322132c76949da47f9bb53c891373c303ea3a761ff548ffc9de50a98c"
        ),
    }
    for asset, digest in official.items():
        r = client.get(asset)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest, asset
    assert client.get("/redoc").status_code == 404  # it would load from a CDN
