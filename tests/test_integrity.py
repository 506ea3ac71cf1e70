"""Integrity of the index on disk (issue 11), fast with the hashing embedder.

A write that fails (disk full) removes its temp folder and says where, why and how much
space there is; temp folders of a killed ingest no longer hold the disk. Every file is
checksummed at build and checked at load and at /admin/reload; a damaged live version
gives way to the newest intact one when starting; a file changed or truncated under a
running server changes nothing it serves and never kills it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from support import shared_lexicon

from medcite.index.build import BuildReport, BuildSettings, build_index
from medcite.index.cache import EmbeddingCache
from medcite.index.embed import HashingEmbedder
from medcite.index.errors import IndexCorrupt, IndexWriteError
from medcite.index.store import current_version, load_index, read_manifest, writer_lock
from medcite.ingest import load
from medcite.service.app import create_app
from medcite.service.cli import main
from medcite.service.engine import Engine, load_engine
from medcite.service.settings import Settings

EMB = HashingEmbedder(32)
KEY = "test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "back pain in pregnancy"


def write_corpus(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "en.txt").write_text(
        "Back pain in pregnancy\n\nBack pain is common in pregnancy. The growing uterus shifts "
        "the centre of gravity. Rest on a firm bed and keep a good posture. " + extra + "\n",
        encoding="utf-8",
    )
    (root / "zh.txt").write_text(
        "流产后腰疼怎么办\n\n流产后腰疼多与子宫收缩有关。注意休息，避免劳累。\n", encoding="utf-8"
    )
    return root


def write_articles(root: Path, n: int) -> Path:
    """``n`` short articles on back pain: vectors over many memory pages."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"a{i:03d}.txt").write_text(
            f"Back pain {i}\n\nBack pain in pregnancy, case {i}. Rest helps. Warmth helps.\n",
            encoding="utf-8",
        )
    return root


def build(corpus: Path, index_dir: Path) -> BuildReport:
    return build_index(
        load([corpus]), EMB, index_dir=index_dir, settings=BuildSettings(), cache=None
    )


def temp_dirs(index_dir: Path) -> list[str]:
    return [p.name for p in index_dir.iterdir() if p.name.startswith(".tmp-")]


def disk_full_after(monkeypatch: pytest.MonkeyPatch, arrays: int) -> None:
    """The disk fills up after ``arrays`` .npy files: the next one is half written, ENOSPC."""
    real = np.save
    saved: list[Any] = []

    def save(file: Any, arr: Any, *args: Any, **kwargs: Any) -> None:
        if len(saved) >= arrays:
            Path(file).write_bytes(b"\x93NUMPY" + b"\x00" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(file)
        real(file, arr, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)


def overwrite_same_size(path: Path) -> None:
    """In place, same size: the last float becomes NaN (the operator's ``"score": null``)."""
    data = bytearray(path.read_bytes())
    data[-4:] = np.array([np.nan], dtype=np.float32).tobytes()
    with path.open("r+b") as fh:
        fh.write(data)


def live_version(index_dir: Path) -> Path:
    return index_dir / str(current_version(index_dir))


def serving(index_dir: Path, tmp_path: Path) -> TestClient:
    settings = Settings(
        index_dir=index_dir,
        cache_dir=tmp_path / "cache",
        corpus_dir=tmp_path / "corpus",
        model=EMB.name,
        abstain=False,
        admin_api_key=KEY,
    )
    lexicon = shared_lexicon()
    engine = Engine(
        load_index(index_dir),
        EMB,
        settings.search(EMB.name),
        tokenizer=lexicon.tokenizer,
        expander=lexicon.expander,
    )
    return TestClient(create_app(settings, engine=engine))


def answers(client: TestClient) -> bool:
    r = client.post("/search", json={"query": QUESTION})
    passages = r.json()["passages"]
    return r.status_code == 200 and bool(passages) and all(p["score"] is not None for p in passages)


# -- a failed write (disk full) -----------------------------------------------------------


def test_disk_full_removes_the_temp_folder_and_says_where_why_and_how_much(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, idx = write_corpus(tmp_path / "corpus"), tmp_path / "idx"
    build(corpus, idx)
    live = current_version(idx)
    with monkeypatch.context() as m:
        disk_full_after(m, arrays=1)
        with pytest.raises(IndexWriteError) as raised:
            build(corpus, idx)
    message = str(raised.value)
    assert f"in {idx}:" in message and "No space left on device [ENOSPC]" in message
    assert "while writing sentences.npy" in message
    space = r"\d+(\.\d)? ([KMG]B|bytes)"
    assert re.search(f"{space} free there, the new version needs at least {space};", message)
    assert "\n" not in message
    assert temp_dirs(idx) == []  # removed at once, not at the next successful ingest
    assert current_version(idx) == live and load_index(idx).path.name == live


def test_a_temp_folder_left_by_a_killed_ingest_no_longer_keeps_the_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, idx = write_corpus(tmp_path / "corpus"), tmp_path / "idx"
    build(corpus, idx)
    stale = idx / ".tmp-v-20250101T000000-0badf00d"  # what kill -9 mid-write leaves
    stale.mkdir()
    (stale / "vectors.npy").write_bytes(b"\x00" * 4096)
    real = np.save

    def save(file: Any, arr: Any, *args: Any, **kwargs: Any) -> None:
        if stale.exists():  # room for one version only once the stale one is gone
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(file, arr, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(np, "save", save)
        report = build(corpus, idx)
    assert not stale.exists() and temp_dirs(idx) == []
    assert current_version(idx) == report.path.name


def test_a_temp_folder_in_use_by_another_writer_is_left_alone(tmp_path: Path) -> None:
    from medcite.index.store import remove_stale_temp_dirs

    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    busy = idx / ".tmp-v-20250101T000000-00c0ffee"
    busy.mkdir()
    with writer_lock(idx):  # another ingest is writing it
        remove_stale_temp_dirs(idx)
        assert busy.exists()
    remove_stale_temp_dirs(idx)
    assert not busy.exists()


def fake_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MEDCITE_MODEL": "hashing-16",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_INDEX_DIR": str(tmp_path / "idx"),
    }


def test_cli_ingest_on_a_full_disk_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    with monkeypatch.context() as m:
        disk_full_after(m, arrays=0)
        result = CliRunner().invoke(main, ["ingest", str(corpus)], env=fake_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot write index version")
    assert result.stderr.count("\n") == 1 and "No space left on device" in result.stderr
    assert temp_dirs(tmp_path / "idx") == []


def test_cli_ingest_with_a_full_embedding_cache_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: EmbeddingCache, items: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(EmbeddingCache, "put_many", full)
    corpus = write_corpus(tmp_path / "corpus")
    result = CliRunner().invoke(main, ["ingest", str(corpus)], env=fake_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot write the embedding cache")
    assert result.stderr.count("\n") == 1 and "database or disk is full" in result.stderr


# Runs the command with writes past 256 kB failing with EFBIG (SIGXFSZ ignored), set in a
# small launcher that then execs it. Not a preexec_fn: that forces a plain fork, whose handlers
# (gRPC's, once a Milvus test ran in this process) printed to the child's stderr.
_LIMIT_FILE_SIZE = (
    "import os, resource, signal, sys; "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (256_000, resource.RLIM_INFINITY)); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_a_real_write_failure_efbig_is_one_line_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    """A real fault, no root needed: RLIMIT_FSIZE makes writes past 256 kB fail (EFBIG)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    body = " ".join(f"Rest and warmth ease back pain number {i} in pregnancy." for i in range(6000))
    (corpus / "long.txt").write_text(f"Back pain\n\n{body}\n", encoding="utf-8")
    env = {**os.environ, **fake_env(tmp_path), "MEDCITE_SENTENCE_WINDOWS": "false"}
    exe = str(Path(sys.executable).parent / "medcite")
    failed = subprocess.run(
        [sys.executable, "-c", _LIMIT_FILE_SIZE, exe, "ingest", str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert failed.stderr.startswith("error: cannot write index version"), failed.stderr[-2000:]
    assert failed.stderr.count("\n") == 1 and "File too large [EFBIG]" in failed.stderr
    assert temp_dirs(tmp_path / "idx") == [] and current_version(tmp_path / "idx") is None
    ok = subprocess.run([exe, "ingest", str(corpus)], env=env, capture_output=True, timeout=300)
    assert ok.returncode == 0 and temp_dirs(tmp_path / "idx") == []


def test_admin_ingest_reports_the_disk_full_message_without_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    monkeypatch.chdir(tmp_path)
    disk_full_after(monkeypatch, arrays=1)
    with serving(idx, tmp_path) as client:
        before = client.get("/readyz").json()["index_version"]
        assert client.post("/admin/ingest", headers=AUTH).status_code == 202
        deadline = time.monotonic() + 60
        while (status := client.get("/admin/ingest", headers=AUTH).json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status["state"] == "failed"
        message = status["message"]
        assert "No space left on device [ENOSPC]" in message and "free there" in message
        assert "$MEDCITE_INDEX_DIR" in message and str(tmp_path) not in message
        assert client.get("/readyz").json()["index_version"] == before
        assert answers(client)
    assert temp_dirs(idx) == []


# -- checksums ----------------------------------------------------------------------------


def test_every_file_is_in_the_manifest_with_its_sha256(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    manifest, version = read_manifest(idx), live_version(idx)
    files = {str(p.relative_to(version)) for p in version.rglob("*") if p.is_file()}
    assert manifest.checksums is not None and manifest.checksums.algorithm == "sha256"
    assert manifest.checksums.files.keys() == manifest.files.keys() == files - {"manifest.json"}
    for rel, digest in manifest.checksums.files.items():
        assert hashlib.sha256((version / rel).read_bytes()).hexdigest() == digest


def test_a_same_size_overwrite_of_vectors_is_refused_at_load(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    overwrite_same_size(live_version(idx) / "vectors.npy")
    with pytest.raises(IndexCorrupt, match=r"file vectors\.npy does not match its checksum"):
        load_index(idx)


def test_reload_of_a_damaged_version_is_409_and_the_old_index_keeps_serving(
    tmp_path: Path,
) -> None:
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    with serving(idx, tmp_path) as client:
        before = client.get("/readyz").json()["index_version"]
        build(write_corpus(tmp_path / "corpus", extra="Warmth helps."), idx)
        overwrite_same_size(live_version(idx) / "vectors.npy")
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        message = r.json()["error"]["message"]
        assert "still serving" in message and "vectors.npy does not match its checksum" in message
        assert str(tmp_path) not in message
        assert client.get("/readyz").json()["index_version"] == before
        assert answers(client)


def test_files_truncated_under_a_running_server_neither_kill_it_nor_get_reloaded(
    tmp_path: Path,
) -> None:
    """Memory-mapped vectors truncated under the server: SIGBUS at the next search."""
    idx = tmp_path / "idx"
    build(write_articles(tmp_path / "corpus", 200), idx)
    with serving(idx, tmp_path) as client:
        engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
        assert not isinstance(engine.index.vectors, np.memmap)
        assert not isinstance(engine.index.sentence_vectors, np.memmap)
        for name in ("vectors.npy", "sentence-vectors.npy"):
            os.truncate(engine.index.path / name, 128)  # the .npy header only
        assert answers(client)
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 409 and "is missing or truncated" in r.json()["error"]["message"]
        assert str(tmp_path) not in r.json()["error"]["message"]
        assert client.get("/readyz").json()["index_version"] == engine.index.path.name
        assert answers(client)


def start_settings(idx: Path, tmp_path: Path) -> Settings:
    return Settings(index_dir=idx, cache_dir=tmp_path / "cache", model=EMB.name, expand=False)


def test_a_damaged_live_version_falls_back_to_the_newest_intact_one_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    idx = tmp_path / "idx"
    older = build(write_corpus(tmp_path / "corpus"), idx).path.name
    newest = build(write_corpus(tmp_path / "corpus", extra="Warmth helps."), idx).path.name
    overwrite_same_size(idx / newest / "vectors.npy")
    with caplog.at_level(logging.WARNING, logger="medcite.index.store"):
        engine = load_engine(start_settings(idx, tmp_path))
    assert engine.index.path.name == older
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "DAMAGED" in w and newest in w and f"older intact version {older}" in w for w in warnings
    ), warnings
    with pytest.raises(IndexCorrupt):  # a reload or a rebuild does not fall back
        load_index(idx)


def test_with_no_intact_version_left_starting_is_a_clear_error(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    build(write_corpus(tmp_path / "corpus", extra="Warmth helps."), idx)
    for version in idx.glob("v-*"):
        overwrite_same_size(version / "vectors.npy")
    with pytest.raises(IndexCorrupt, match="no older intact version") as raised:
        load_engine(start_settings(idx, tmp_path))
    assert "medcite ingest" in str(raised.value) and str(tmp_path) not in str(raised.value)


def test_a_manifest_without_checksums_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An index written before checksums (same format version) still loads: sizes only."""
    idx = tmp_path / "idx"
    build(write_corpus(tmp_path / "corpus"), idx)
    path = live_version(idx) / "manifest.json"
    manifest = json.loads(path.read_text("utf-8"))
    manifest.pop("checksums", None)  # as an older medcite wrote it
    path.write_text(json.dumps(manifest), "utf-8")
    with caplog.at_level(logging.WARNING, logger="medcite.index.store"):
        index = load_index(idx)
    assert len(index.chunks) == manifest["counts"]["chunks"]
    assert any("has no checksums" in r.getMessage() for r in caplog.records)
    os.truncate(live_version(idx) / "vectors.npy", 128)
    with pytest.raises(IndexCorrupt, match=r"vectors\.npy is missing or truncated"):
        load_index(idx)
