"""The stages import only downstream: ingest -> index -> service, never back up, not even
inside a function or under TYPE_CHECKING (issue 15: no import circle)."""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

ORDER = ("ingest", "index", "service")


def imported_stages(path: Path) -> set[str]:
    """The medcite stages a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medcite" and len(parts) > 1 and parts[1] in ORDER:
                found.add(parts[1])
    return found


def test_no_stage_imports_a_later_one() -> None:
    upward = []
    for rank, stage in enumerate(ORDER):
        for path in sorted((REPO / stage).rglob("*.py")):
            later = {s for s in imported_stages(path) if ORDER.index(s) > rank}
            upward += [f"{path.relative_to(REPO)} imports medcite.{s}" for s in sorted(later)]
    assert upward == []


def test_the_check_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from medcite.service.settings import Settings\n"
        "def f():\n    import medcite.index.tokenize\n",
        "utf-8",
    )
    assert imported_stages(module) == {"service", "index"}
