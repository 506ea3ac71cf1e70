"""ingest.clean / page / metadata / headings: boilerplate out, metadata, cards and sections in."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CORPUS

from medcite.ingest import ChunkSettings, chunk_documents, load
from medcite.ingest.clean import banner_names, find_boilerplate
from medcite.ingest.headings import strong_heading, weak_heading
from medcite.ingest.lines import split_lines
from medcite.ingest.metadata import Byline, byline, date_line, institution, parse_date
from medcite.ingest.types import Document, LoadResult

ZH = "000_1e25916c291d4d20.txt"


@pytest.fixture(scope="module")
def seeds() -> LoadResult:
    return load([CORPUS])


def docs_of(result: LoadResult, source: str) -> list[Document]:
    return [d for d in result.documents if d.source == source]


def chunk_texts(result: LoadResult, source: str) -> list[str]:
    return [c.text for c in chunk_documents(result, ChunkSettings()) if c.source == source]


def seg_texts(result: LoadResult, doc: Document) -> list[tuple[str | None, str]]:
    text = next(s.text for s in result.sources if s.source == doc.source)
    return [(s.section, text[s.start : s.end]) for s in doc.segments]


def assert_no_removed_line_kept(result: LoadResult) -> None:
    """No segment of any document overlaps a line the cleaner removed."""
    for source in result.sources:
        lines = split_lines(source.text)
        removed = [
            (line.start, line.end)
            for line, why in zip(lines, find_boilerplate(lines), strict=True)
            if why
        ]
        for doc in docs_of(result, source.source):
            for seg in doc.segments:
                assert not any(a < seg.end and seg.start < b for a, b in removed)


# --- the seeds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "gone"),
    [
        (
            ZH,
            ("健康典吧", "投诉", "@qq.com", "广告", "仅作参考", "风险提示", "内容支持", "就诊"),
        ),
        ("001_f6e1ae9f4f4596cb.txt", ("chrysanthemum", "Chrysanthemum", "Recommend", "<<:", ">>:")),
        (
            "002_e80cb361c43bb8f7.txt",
            ("Was this article helpful", "The material in this site", "medical advice"),
        ),
        ("003_322f64557f9a19d7.txt", ("Recommend", "sesame", "<<:", ">>:", "...")),
    ],
)
def test_seed_boilerplate_is_gone(seeds: LoadResult, source: str, gone: tuple[str, ...]) -> None:
    texts = chunk_texts(seeds, source)
    assert texts
    for chunk in texts:
        for phrase in gone:
            assert phrase not in chunk


def test_seed_segments_never_cover_removed_lines(seeds: LoadResult) -> None:
    assert_no_removed_line_kept(seeds)


def test_zh_seed_main_article_and_its_15_cards(seeds: LoadResult) -> None:
    docs = docs_of(seeds, ZH)
    assert [d.kind for d in docs] == ["article"] + ["card"] * 15
    main = docs[0]
    assert (main.doc_id, main.title, main.author, main.author_title) == (
        ZH,
        "自然流产后腰疼是因为什么原因引起的",
        "刘亚男",
        "医师 妇科",
    )
    assert (main.institution, main.date, main.language) == ("山东大学齐鲁医院", "2025-10-17", "zh")
    assert [s for s, _ in seg_texts(seeds, main)] == [
        "一、子宫复旧不良",
        "二、盆腔充血",
        "三、腰部肌肉劳损",
        "四、感染因素",
        "五、激素水平变化",
    ]
    first = seg_texts(seeds, main)[0][1]
    assert first.startswith("自然流产后,子宫需要通过收缩等过程恢复至未孕状态。")
    assert first.endswith("子宫复旧相对更易受影响。")

    cards = {d.title: d for d in docs[1:]}
    assert len(cards) == 15
    assert all(d.date == "2025-10-17" and d.language == "zh" for d in docs)
    site_card = cards["怀孕三个月流产疼不疼"]
    assert (site_card.doc_id, site_card.author, site_card.institution) == (f"{ZH}#1", None, None)
    assert seg_texts(seeds, site_card) == [
        (None, next(line for line in _seed_lines() if line.startswith("怀孕三个月流产时子宫收缩")))
    ]
    wang = cards["怀孕一个月怎么流产最安全"]
    assert (wang.doc_id, wang.author, wang.author_title, wang.institution) == (
        f"{ZH}#4",
        "王凤英",
        "主任医师",
        "首都医科大学宣武医院",
    )
    tan = cards["流产一个月后腰疼是因为什么原因引起的"]
    assert (tan.author, tan.author_title, tan.institution) == ("谭晓伟", "医师", "烟台毓璜顶医院")
    assert cards["流产后腰酸背痛是什么原因引起的"].author_title == "住院医师"

    repeat = cards["自然流产后腰疼是因为什么原因引起的"]
    assert (repeat.doc_id, repeat.author, repeat.near_duplicate_of) == (f"{ZH}#7", "刘亚男", ZH)
    assert [d.doc_id for d in docs if d.near_duplicate_of] == [f"{ZH}#7"]
    # a similar but different title is not a duplicate
    assert cards["自然流产后腰疼是什么原因引起的"].near_duplicate_of is None


def _seed_lines() -> list[str]:
    return (CORPUS / ZH).read_text(encoding="utf-8").splitlines()


def test_en_seed_titles_sections_and_numbered_lists(seeds: LoadResult) -> None:
    (d1,) = docs_of(seeds, "001_f6e1ae9f4f4596cb.txt")
    assert d1.title == "Causes of back pain after miscarriage" and d1.language == "en"
    segs = seg_texts(seeds, d1)
    # the repeated title line is dropped, not kept as content
    assert segs[0][0] is None and segs[0][1].startswith("I believe everyone is familiar")
    # a heading with no body is no passage of its own: the text it heads starts at it
    assert segs[1][0] == "2. Catch a cold"
    assert segs[1][1].startswith("1. Lumbar muscle strain\n\n2. Catch a cold\n\nLow back pain")
    assert segs[2][0] == "3. Fatigue during pregnancy and postpartum period"
    # "4. ... With the increase ..." is a numbered paragraph: it ends section 3
    assert segs[3][0] is None and segs[3][1].startswith("4. Lumbar spine diseases")
    assert segs[3][1].endswith("the causes of back pain after spontaneous abortion.")

    (d2,) = docs_of(seeds, "002_e80cb361c43bb8f7.txt")
    assert d2.title == "Pregnant woman with back pain"
    sections = [s for s, _ in seg_texts(seeds, d2)]
    assert sections[:3] == [
        None,
        "1. The uterus needs to extend out of space",
        "2.Relaxin hormone secretion",
    ]
    assert "Differential diagnosis" in sections
    assert seg_texts(seeds, d2)[-1][1].endswith("burning sensation in the stomach.")

    (d4,) = docs_of(seeds, "004_3a0b4b9e837dc788.txt")
    assert d4.title == "Causes & Treatment for Lower Back Pain After Miscarriage"
    assert [s for s, _ in seg_texts(seeds, d4)] == [
        "Lower Back Pain After Miscarriage",
        "Causes of lower back pain after miscarriage",
        "Treatment for lower back pain after miscarriage",
    ]
    assert "\n  • Get an adequate amount of sleep" in seg_texts(seeds, d4)[2][1]


# --- pages from other (made-up) sites --------------------------------------------------------

ZH_SITE = """康宁健康网康宁健康网
温馨提示：以上内容仅供参考，不能替代医生诊断

孕期腰痛怎么缓解

发布时间：2024-03-05
李明医生
李明医生主治医师产科
北京大学第一医院
康宁健康网审核

一、注意休息
孕期腰痛多与体重增加和激素变化有关。建议孕妇避免久站，每天适当休息；睡觉时可以侧卧，在两腿之间夹一个枕头。
二、适度运动
散步和孕妇瑜伽可以增强腰背肌肉力量。运动前最好咨询医生，如果出现阴道出血或腹痛，应立即停止运动并就医。
孕期腰痛怎么缓解？
李明
李明主治医师
2024年3月5日
北京大学第一医院
孕期腰痛可以通过休息、热敷和适度运动缓解，疼痛严重时应及时就医。
孕妇腰痛能贴膏药吗
康宁健康网
2024年3月6日
孕妇不建议随意贴膏药，部分膏药含有活血成分，可能对胎儿不利，应在医生指导下使用。
孕晚期腰痛正常吗
王芳
王芳副主任医师
2024年3月7日
复旦大学附属妇产科医院
孕晚期子宫增大，腰椎负担加重，轻度腰痛较常见；如果疼痛剧烈或伴有规律宫缩，需要警惕早产。
康宁健康网
康宁健康网内容支持
商务合作请联系：ad@kangning.example
客服电话：400-123-4567
"""

EN_SITE = """Sciatica during pregnancy: what helps

Sciatica during pregnancy: what helps

By Jane Doe, MD
Published: March 5, 2024

« Previous: Heartburn in the third trimester
Next article: Swollen feet in pregnancy »

Sciatica is pain that runs from the lower back down one leg. During pregnancy the growing uterus \
and changes in posture can press on the sciatic nerve, e.g. after sitting for a long time.

Stretches that help

Gentle stretches ease the pressure on the nerve. Try the cat-cow stretch twice a day. Stop if the \
pain gets worse, and see a doctor if you have numbness or weakness in the leg.

Advertisement

Related articles

Heartburn in the third trimester

Many women feel a burning sensation after meals…

Swollen feet in pregnancy

Swelling of the feet and ankles is common in the…

Contact us: editors@example.org
Was this page helpful?
This information is for educational purposes only and is not a substitute for medical advice.
"""


def test_made_up_chinese_site_in_gb18030(tmp_path: Path) -> None:
    (tmp_path / "kangning.txt").write_bytes(ZH_SITE.encode("gb18030"))
    result = load([tmp_path])
    (report,) = result.reports
    assert (report.status, report.encoding, report.documents) == ("ingested", "gb18030", 4)
    main, dup, site, wang = result.documents
    assert (main.doc_id, main.title, main.date) == (
        "kangning.txt",
        "孕期腰痛怎么缓解",
        "2024-03-05",
    )
    assert (main.author, main.author_title, main.institution) == (
        "李明",
        "主治医师 产科",
        "北京大学第一医院",
    )
    assert [s for s, _ in seg_texts(result, main)] == ["一、注意休息", "二、适度运动"]
    assert (dup.doc_id, dup.kind, dup.near_duplicate_of) == ("kangning.txt#1", "card", main.doc_id)
    assert (dup.author, dup.author_title, dup.date) == ("李明", "主治医师", "2024-03-05")
    assert (site.title, site.author, site.date) == ("孕妇腰痛能贴膏药吗", None, "2024-03-06")
    assert (wang.author, wang.author_title, wang.institution) == (
        "王芳",
        "副主任医师",
        "复旦大学附属妇产科医院",
    )
    assert seg_texts(result, wang) == [(None, ZH_SITE.splitlines()[-5])]
    joined = "\n".join(chunk_texts(result, "kangning.txt"))
    for phrase in ("康宁健康网", "仅供参考", "商务合作", "@", "400-123-4567", "审核"):
        assert phrase not in joined
    assert_no_removed_line_kept(result)


def test_made_up_english_site_with_nav_and_related_list(tmp_path: Path) -> None:
    (tmp_path / "sciatica.txt").write_text(EN_SITE, encoding="utf-8")
    result = load([tmp_path])
    (doc,) = result.documents
    assert (doc.title, doc.author, doc.author_title, doc.date) == (
        "Sciatica during pregnancy: what helps",
        "Jane Doe",
        "MD",
        "2024-03-05",
    )
    segs = seg_texts(result, doc)
    assert [s for s, _ in segs] == [None, "Stretches that help"]
    assert segs[0][1].startswith("Sciatica is pain that runs")
    assert segs[1][1].endswith("numbness or weakness in the leg.")
    joined = "\n".join(chunk_texts(result, "sciatica.txt"))
    for phrase in (
        "Heartburn",
        "Swollen",
        "«",
        "»",
        "Advertisement",
        "Related",
        "editors@",
        "helpful",
        "educational purposes",
        "Jane Doe",
        "Published",
    ):
        assert phrase not in joined
    assert_no_removed_line_kept(result)


# --- the rules, line by line -----------------------------------------------------------------


def reasons(text: str) -> dict[str, str | None]:
    lines = split_lines(text)
    found = find_boilerplate(lines)
    return {line.text: why for line, why in zip(lines, found, strict=True) if line.text}


def test_line_rules() -> None:
    found = reasons(
        "Title of the page\n"
        "Back pain is common. It usually goes away with rest and gentle exercise over weeks.\n"
        "<< Previous post\n"
        "下一篇：孕期便秘怎么办\n"
        "首页 > 妇产科 > 孕期保健\n"
        "Sponsored\n"
        "本页广告由第三方提供\n"
        "Call 555-123-4567 for an appointment\n"
        "投诉建议\n"
        "Copyright 2024 Example Health. All rights reserved.\n"
        "Did this answer help you? Was this information helpful?\n"
        "这篇文章对你有帮助吗\n"
        "免责声明：本站内容不构成诊疗建议\n"
        "------\n"
        "Chrysanthemum tea may relieve mild headaches, though studies are small.\n"
    )
    assert found == {
        "Title of the page": None,
        "Back pain is common. It usually goes away with rest and gentle exercise over weeks.": None,
        "<< Previous post": "navigation",
        "下一篇：孕期便秘怎么办": "navigation",
        "首页 > 妇产科 > 孕期保健": "navigation",
        "Sponsored": "advertisement",
        "本页广告由第三方提供": "advertisement",
        "Call 555-123-4567 for an appointment": "contact",
        "投诉建议": "contact",
        "Copyright 2024 Example Health. All rights reserved.": "copyright",
        "Did this answer help you? Was this information helpful?": "feedback",
        "这篇文章对你有帮助吗": "feedback",
        "免责声明：本站内容不构成诊疗建议": "disclaimer",
        "------": "decoration",
        "Chrysanthemum tea may relieve mild headaches, though studies are small.": None,
    }


def test_related_list_under_a_chinese_header_and_teaser_runs_without_one() -> None:
    found = reasons(
        "腰痛的原因\n"
        "腰痛多由肌肉劳损引起，休息后可缓解。\n"
        "相关文章\n"
        "孕期腰痛怎么办\n"
        "很多孕妇在孕晚期都会出现腰痛……\n"
        "产后腰痛多久能好\n"
        "产后腰痛是常见症状，一般…\n"
    )
    assert [why for why in found.values()] == [None, None] + ["related-list"] * 5

    found = reasons(
        "An article\n"
        "Body text that is long enough to be a paragraph of the article itself, really.\n"
        "Other article one\nTeaser for article one that stops...\n"
        "Other article two\nTeaser for article two that stops...\n"
        "Other article three\nTeaser for article three that stops...\n"
    )
    assert list(found.values()) == [None, None] + ["related-list"] * 6


def test_article_text_that_resembles_boilerplate_is_kept() -> None:
    found = reasons(
        "Title\n"
        "The clinic will contact you in a few days with the results of your blood test, and "
        "your doctor will explain what they mean for you and your baby during the next visit.\n"
        "Symptoms may come and go...\n"
        "Are painkillers useful?\n"
        "热敷不能代替药物治疗，疼痛严重时应及时就医。\n"
        "Next, rest on a firm mattress and avoid lifting heavy objects for a week or two.\n"
    )
    assert set(found.values()) == {None}


def test_banner_is_found_by_doubling_or_repetition_at_the_edges() -> None:
    assert banner_names(split_lines("健康典吧健康典吧\n标题\n正文。")) == {"健康典吧"}
    page = "MedSite\nTitle\nBody.\nMedSite\nMore body.\nMedSite\n"
    assert banner_names(split_lines(page)) == {"MedSite"}
    # doctors and hospitals repeated on a list of cards are not a banner
    card = "标题\n王凤英\n王凤英主任医师\n2025年10月17日\n山东大学齐鲁医院\n摘要。\n"
    assert banner_names(split_lines("标题\n正文。\n" + card * 3)) == set()


# --- metadata and headings -------------------------------------------------------------------


def test_dates() -> None:
    assert parse_date("2025年10月17日") == "2025-10-17"
    assert parse_date("updated 2025/10/7 by staff") == "2025-10-07"
    assert parse_date("October 17, 2025") == "2025-10-17"
    assert parse_date("17 Oct. 2025") == "2025-10-17"
    assert parse_date("2025-02-30") is None
    assert date_line("发布于 2025-10-17 08:30") == "2025-10-17"
    assert date_line("Last updated: Oct 17, 2025") == "2025-10-17"
    assert date_line("2025年10月17日我去了医院") is None


def test_bylines_and_institutions() -> None:
    assert byline("刘亚男医生医师妇科") == Byline("刘亚男", "医师 妇科")
    assert byline("叶青剑副主任医师") == Byline("叶青剑", "副主任医师")
    assert byline("刘亚男医生") == Byline("刘亚男", None)
    assert byline("By Jane Doe, MD, PhD") == Byline("Jane Doe", "MD, PhD")
    assert byline("By the way, rest helps.") is None
    assert byline("自然流产后腰疼") is None
    assert institution("上海市第一妇婴保健院") == "上海市第一妇婴保健院"
    assert institution("Mayo Clinic") == "Mayo Clinic"
    assert institution("如有医疗需求,请务必前往正规医院就诊") is None


def test_headings() -> None:
    def section(line: str) -> str | None:
        heading = strong_heading(line)
        return heading.section if heading else None

    assert section("一、子宫复旧不良") == "一、子宫复旧不良"
    assert section("2.Relaxin hormone secretion:") == "2.Relaxin hormone secretion"
    assert section("## Causes") == "Causes"
    assert section("（二）治疗方法") == "（二）治疗方法"
    long_item = (
        "4. Lumbar spine diseases are more common in elderly women. With the increase of age, "
        "the symptoms of lumbar nerve compression will also increase."
    )
    assert section(long_item) is None
    assert section("3.5 mg twice a day") is None
    body = "The cause of this pain is the same for pregnant women and others, and it is common."
    assert weak_heading("Differential diagnosis", body) is not None
    assert weak_heading("Differential diagnosis", "Low back examination") is None
    assert weak_heading("an examination", body) is None


def test_the_site_name_removed_as_boilerplate_is_kept_as_metadata(
    seeds: LoadResult, tmp_path: Path
) -> None:
    sites = {d.doc_id: d.site for d in seeds.documents}
    zh = [site for doc_id, site in sites.items() if doc_id.startswith(ZH)]
    assert len(zh) == 16 and set(zh) == {"健康典吧"}  # the article and its cards
    assert {site for doc_id, site in sites.items() if not doc_id.startswith(ZH)} == {None}
    # the banner stays out of the text: cleaned text and chunk offsets are unchanged by it
    assert not any("健康典吧" in text for _, text in seg_texts(seeds, seeds.documents[0]))

    (tmp_path / "kangning.txt").write_bytes(ZH_SITE.encode("gb18030"))
    (tmp_path / "page.html").write_text(
        '<html><head><title>Back pain</title><meta property="og:site_name" content="Health Site">'
        "</head><body><h1>Back pain</h1><p>Back pain is common in pregnancy. Rest helps.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    result = load([tmp_path])
    assert {d.source: d.site for d in result.documents} == {
        "kangning.txt": "康宁健康网",
        "page.html": "Health Site",
    }
