"""What `pip install medcite` gets: the wheel built from this tree holds every module and the
data files the service reads, under the one name ``medcite``, so it collides with nothing
of the user's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from support import CORPUS, REPO

PACKAGES = ("ingest", "index", "service")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (setuptools writes build/ next to the source;
    the copy holds medcite/ with its links followed)."""
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "medcite", src / "medcite", ignore=shutil.ignore_patterns("__pycache__"))
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


def test_the_wheel_holds_every_module_of_the_tree_under_medcite(wheel: Path) -> None:
    """A package list written by hand once left out service/routes/: every import of it
    failed from a wheel while the editable install of the tests worked."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        "medcite/" + p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules and modules <= names, sorted(modules - names)
    assert "medcite/__init__.py" in names
    top = {n.split("/")[0] for n in names if not n.startswith("medcite-")}
    assert top == {"medcite"}  # no top-level `index`, `service` or `ingest` to collide with


def test_the_wheel_holds_the_data_files_the_service_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for wanted in (
        "medcite/index/relevance.json",
        "medcite/index/probes.jsonl",
        "medcite/service/static/index.html",
        "medcite/service/static/app.js",
    ):
        assert wanted in names, wanted


def test_installed_beside_a_users_own_service_and_index_modules(
    wheel: Path, tmp_path: Path
) -> None:
    """The wheel in a new venv, run from a folder holding the user's own ``service.py`` and
    ``index/`` package (which used to shadow medcite's): ingest and search work.

    The venv gets the wheel alone (``--no-deps``); the dependencies come from this test's
    own environment as a plain path entry, so its editable medcite (an import hook a .pth
    file installs) is not seen there: medcite can only come from the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", "utf-8")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python)),
            *("install", "--no-deps", "--quiet", str(wheel)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    user = tmp_path / "project"
    (user / "index").mkdir(parents=True)
    (user / "service.py").write_text("raise SystemExit('the user service.py was imported')\n")
    (user / "index" / "__init__.py").write_text("raise SystemExit('the user index was imported')\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MEDCITE_", "PYTHON", "VIRTUAL"))
    }
    env |= {
        "HF_HUB_OFFLINE": "1",
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_INDEX_DIR": str(tmp_path / "idx"),
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(user),  # as if the user's project were on the path
    }
    medcite = str(venv / "bin" / "medcite")

    def run(*args: str) -> str:
        done = subprocess.run(
            args, cwd=user, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = run(str(python), "-c", "import medcite; print(medcite.__file__)")
    assert where.strip().startswith(str(venv))
    run(medcite, "ingest", str(CORPUS))
    body = json.loads(run(medcite, "search", "back pain after a miscarriage", "--json"))
    assert body["query"] == "back pain after a miscarriage" and body["disclaimer"]
