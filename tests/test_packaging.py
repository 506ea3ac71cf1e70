"""What `pip install medcite` gets: the wheel built from this tree holds every module and the
data files the service reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO

PACKAGES = ("ingest", "index", "service")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (setuptools writes build/ next to the source)."""
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        cwd=out,
        timeout=300,
    )
    (found,) = out.glob("medcite-*.whl")
    return found


def test_the_wheel_holds_every_module_of_the_tree(wheel: Path) -> None:
    """A package list written by hand once left out service/routes/: every import of it
    failed from a wheel while the editable install of the tests worked."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules and modules <= names, sorted(modules - names)


def test_the_wheel_holds_the_data_files_the_service_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for wanted in (
        "index/relevance.json",
        "index/probes.jsonl",
        "service/static/index.html",
        "service/static/app.js",
    ):
        assert wanted in names, wanted
