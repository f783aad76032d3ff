"""The packages' dependency rules, read from every import of every file (function-level
imports included): the decoding library knows nothing of the study half or the UI, the
study half nothing of the UI, and the database layer nothing of the others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FORBIDDEN = {
    "selfspec": {"study", "db", "ui"},
    "study": {"ui"},
    "db": {"selfspec", "study", "ui"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """The top-level package of every absolute import in a file, with its line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for name, line in sorted(imported_packages(path))
        if name in FORBIDDEN[package]
    ]
    assert not broken, "\n".join(broken)


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from study.notes import seed_notes\n    import ui.app\n")
    assert imported_packages(source) == {("study", 2), ("ui", 3)}
