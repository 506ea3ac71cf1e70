"""The ``medcite`` command through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import cache_dir

from medcite.service.cli import main
from medcite.service.disclaimer import DISCLAIMERS


def fake_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "MEDCITE_INDEX_DIR": str(tmp_path / "idx"),
        "MEDCITE_ABSTAIN": "false",
    }


def test_ingest_reports_every_file_and_search_prints_api_json(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Back pain\n\nBack pain is common in pregnancy.\n", "utf-8")
    (corpus / "empty.txt").write_text("", "utf-8")
    (corpus / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    runner = CliRunner()
    env = fake_env(tmp_path)
    result = runner.invoke(main, ["ingest", str(corpus), "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    statuses = {Path(f["path"]).name: f["status"] for f in report["files"]}
    assert statuses["a.txt"] == "ingested"
    assert statuses["empty.txt"] != "ingested" and statuses["picture.png"] != "ingested"
    assert report["embedded"] == report["chunks"] > 0

    again = runner.invoke(main, ["ingest", str(corpus)], env=env)
    assert again.exit_code == 0 and "0 texts embedded" in again.stdout

    found = runner.invoke(main, ["search", "back pain in pregnancy", "--json"], env=env)
    assert found.exit_code == 0, found.output
    body = json.loads(found.stdout)
    assert body["answerable"] and body["passages"][0]["source"] == "a.txt"
    assert body["disclaimer"] == DISCLAIMERS["en"]


def test_missing_index_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["search", "back pain"], env=fake_env(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no index in") and result.stderr.count("\n") == 1


def test_mismatched_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Back pain\n\nBack pain is common in pregnancy.\n", "utf-8")
    env = fake_env(tmp_path)
    assert CliRunner().invoke(main, ["ingest", str(corpus)], env=env).exit_code == 0
    result = CliRunner().invoke(main, ["search", "back"], env=env | {"MEDCITE_MODEL": "hashing-16"})
    assert result.exit_code == 2
    assert "built with model 'hashing-32'" in result.stderr
    assert "MEDCITE_MODEL=hashing-32" in result.stderr


def test_nothing_to_index_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.bin").write_bytes(b"\x00\x01\x02")
    result = CliRunner().invoke(main, ["ingest", str(empty)], env=fake_env(tmp_path))
    assert result.exit_code == 2 and "nothing to index" in result.stderr


@pytest.mark.slow
def test_search_json_with_the_real_model(seed_index_dir: Path) -> None:
    env = {"MEDCITE_INDEX_DIR": str(seed_index_dir), "MEDCITE_CACHE_DIR": str(cache_dir())}
    result = CliRunner().invoke(
        main, ["search", "why does my back hurt after a miscarriage", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    sources = {p["source"] for p in body["passages"]}
    assert "000_1e25916c291d4d20.txt" in sources
    assert sources & {"001_f6e1ae9f4f4596cb.txt", "004_3a0b4b9e837dc788.txt"}
    assert body["disclaimer"] == DISCLAIMERS["en"]


def test_nothing_but_the_entry_point_imports_the_command_line() -> None:
    """The CLI imports the app (serve) and the evaluation (eval); neither of them, nor any
    other module, imports the CLI back (the ingest they share lives in service.pipeline)."""
    import ast

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in sorted(
        [*root.glob("service/*.py"), *root.glob("index/*.py"), *root.glob("ingest/*.py")]
    ):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(
                n == "medcite.service.cli" or n.startswith("medcite.service.cli.") for n in names
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders
