"""The manifest: the JSON on disk round-trips, older manifests load with their defaults, a
malformed one names the bad key, and one check refuses an incompatible index."""

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medcite.index.build import BuildSettings, build_index, corpus_fingerprint, remove_documents
from medcite.index.embed import HashingEmbedder
from medcite.index.errors import IndexCorrupt, IndexMismatch
from medcite.index.manifest import FORMAT_VERSION, Manifest, ManifestInvalid, check_compatible
from medcite.index.store import current_version, load_index, read_manifest
from medcite.index.tokenize import TOKENIZER_VERSION
from medcite.ingest import load
from medcite.ingest.types import ChunkSettings

EMB = HashingEmbedder(32)
SETTINGS = BuildSettings(chunking=ChunkSettings(max_tokens=64))
TEXTS = {
    "en.txt": "Back pain in pregnancy\n\nBack pain is common in pregnancy. Rest on a firm bed.\n",
    "zh.txt": "流产后腰疼怎么办\n\n流产后腰疼多与子宫收缩有关。注意休息，避免劳累。\n",
}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    build_index(load([corpus]), EMB, index_dir=root / "idx", settings=SETTINGS, cache=None)
    return root / "idx"


def manifest_text(index_dir: Path) -> str:
    return (index_dir / str(current_version(index_dir)) / "manifest.json").read_text("utf-8")


def written(index_dir: Path) -> dict[str, Any]:
    data = json.loads(manifest_text(index_dir))
    assert isinstance(data, dict)
    return data


def dump(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), ensure_ascii=False, indent=1)  # as the store writes


def test_a_written_manifest_round_trips_byte_for_byte(index_dir: Path) -> None:
    text = manifest_text(index_dir)
    manifest = Manifest.from_json(json.loads(text))
    assert dump(manifest) == text
    assert manifest == read_manifest(index_dir) == load_index(index_dir).manifest
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.lexical.tokenizer == TOKENIZER_VERSION
    assert set(manifest.partitions) == {"en", "zh"}
    assert manifest.checksums is not None and manifest.checksums.algorithm == "sha256"
    assert manifest.corpus.removed is None  # written only once documents were removed


def test_a_manifest_after_a_removal_round_trips(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    build_index(load([corpus]), EMB, index_dir=tmp_path / "idx", settings=SETTINGS, cache=None)
    before = read_manifest(tmp_path / "idx")
    remove_documents(tmp_path / "idx", {"zh.txt"}, hnsw_threshold=SETTINGS.hnsw_threshold)
    text = manifest_text(tmp_path / "idx")
    after = Manifest.from_json(json.loads(text))
    assert dump(after) == text
    assert after.corpus.removed == ("zh.txt",)
    assert after.corpus.fingerprint == before.corpus.fingerprint + "-removed"
    assert set(after.partitions) == set(after.counts.chunks_by_language) == {"en"}
    assert (after.model, after.lexical, after.chunker) == (
        before.model,
        before.lexical,
        before.chunker,
    )


def test_an_older_manifest_loads_with_the_defaults(index_dir: Path) -> None:
    data = written(index_dir)
    for key in ("checksums", "sentence_windows", "partitions", "files"):
        del data[key]
    del data["lexical"]["title_boost"]
    manifest = Manifest.from_json(data)
    assert manifest.checksums is None
    assert manifest.sentence_windows is True
    assert manifest.lexical.title_boost == 0
    assert manifest.partitions == {} and manifest.files == {}
    # Unknown keys are ignored, as before.
    assert Manifest.from_json({**written(index_dir), "later": 1}) == Manifest.from_json(
        written(index_dir)
    )


def test_a_manifest_without_checksums_loads(tmp_path: Path, index_dir: Path) -> None:
    data = written(index_dir)
    del data["checksums"]
    version = tmp_path / "v-old"
    version.mkdir()
    (version / "manifest.json").write_text(json.dumps(data), "utf-8")
    from medcite.index.store import version_manifest

    assert version_manifest(version).checksums is None


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("model", "dim"), None, "'model.dim' is missing"),
        (("lexical",), None, "'lexical' is missing"),
        (("corpus", "fingerprint"), None, "'corpus.fingerprint' is missing"),
        (("counts", "chunks"), "12", "'counts.chunks' is not an integer (str)"),
        (("model", "dim"), True, "'model.dim' is not an integer (bool)"),
        (("lexical", "k1"), "0.9", "'lexical.k1' is not a number (str)"),
        (("sentence_windows",), 1, "'sentence_windows' is not true or false (int)"),
        (("chunker",), [64, 0], "'chunker' is not an object (list)"),
        (("files", "vectors.npy"), 1.5, "'files.vectors.npy' is not an integer (float)"),
        (("checksums", "files"), None, "'checksums.files' is missing"),
        (("corpus", "removed"), [1], "'corpus.removed' is not a list of strings (list)"),
    ],
)
def test_a_malformed_manifest_names_the_bad_key(
    index_dir: Path, path: tuple[str, ...], value: object, problem: str
) -> None:
    data = written(index_dir)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(ManifestInvalid, match=re.escape(f"manifest.json key {problem}")):
        Manifest.from_json(data, version="v-1")
    assert issubclass(ManifestInvalid, IndexCorrupt)


def test_a_manifest_that_is_not_an_object_or_of_another_format_is_refused(
    index_dir: Path,
) -> None:
    with pytest.raises(IndexCorrupt, match=r"v-1: manifest\.json is not an object"):
        Manifest.from_json([], version="v-1")
    with pytest.raises(IndexMismatch, match="v-1 has format version 1, this medcite reads"):
        Manifest.from_json({**written(index_dir), "format_version": 1}, version="v-1")
    missing = written(index_dir)
    del missing["format_version"]
    with pytest.raises(IndexMismatch, match="format version None"):
        Manifest.from_json(missing)


def test_a_damaged_manifest_on_disk_is_refused_naming_the_key(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text(TEXTS["en.txt"], encoding="utf-8")
    build_index(load([corpus]), EMB, index_dir=tmp_path / "idx", settings=SETTINGS, cache=None)
    path = tmp_path / "idx" / str(current_version(tmp_path / "idx")) / "manifest.json"
    data = json.loads(path.read_text("utf-8"))
    del data["model"]["name"]
    path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(ManifestInvalid, match=r"'model\.name' is missing; rebuild the index"):
        load_index(tmp_path / "idx")


def test_check_compatible_accepts_the_settings_it_was_built_with(index_dir: Path) -> None:
    manifest = read_manifest(index_dir)
    check_compatible(manifest, model_name=EMB.name, dim=EMB.dim)
    check_compatible(
        manifest,
        model_name=EMB.name,
        dim=EMB.dim,
        build=SETTINGS,
        fingerprint=manifest.corpus.fingerprint,
    )
    corpus = load([index_dir.parent / "corpus"])
    assert manifest.corpus.fingerprint == corpus_fingerprint(corpus)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_name": "intfloat/multilingual-e5-small"}, "built with model 'hashing-32'"),
        ({"dim": 384}, r"\(dim 32\) but the configured model is 'hashing-32' \(dim 384\)"),
        ({"chunking": ChunkSettings(max_tokens=200)}, "chunked with"),
        ({"build": replace(SETTINGS, chunking=ChunkSettings(64, 1))}, "chunked with"),
        ({"build": replace(SETTINGS, bm25_k1=1.2)}, "BM25 parameters changed"),
        ({"build": replace(SETTINGS, bm25_b=0.75)}, "BM25 parameters changed"),
        ({"build": replace(SETTINGS, bm25_title_boost=0)}, "BM25 parameters changed"),
        ({"build": replace(SETTINGS, sentence_windows=False)}, "sentence windows switched"),
        ({"fingerprint": "another"}, "corpus changed"),
    ],
)
def test_check_compatible_refuses_each_incompatibility(
    index_dir: Path, change: dict[str, Any], message: str
) -> None:
    manifest = read_manifest(index_dir)
    args: dict[str, Any] = {"model_name": EMB.name, "dim": EMB.dim, **change}
    with pytest.raises(IndexMismatch, match=message):
        check_compatible(manifest, **args)


def test_check_compatible_refuses_tokens_of_another_tokenizer(index_dir: Path) -> None:
    manifest = read_manifest(index_dir)
    other = replace(manifest, lexical=replace(manifest.lexical, tokenizer="jieba-search/0"))
    with pytest.raises(IndexMismatch, match=r"tokenizer 'jieba-search/0'.*medcite ingest"):
        check_compatible(other, model_name=EMB.name, dim=EMB.dim)
