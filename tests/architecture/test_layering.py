"""Import contracts between the layers, read from the source (function-level imports included).

    kernel  <-  models  <-  tasks  <-  flows  <-  emoflow (CLI and web: the shell)
    kernel  <-  stores  <-  tasks

The kernel (errors, settings, job fields, thread budget, crash points) is a leaf any layer may import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# layer -> top-level modules it must never import
FORBIDDEN = {
    "kernel": {"models", "stores", "tasks", "flows", "emoflow", "prefect", "sqlalchemy", "alembic"},
    "models": {"prefect", "sqlalchemy", "alembic", "stores", "tasks", "flows", "emoflow"},
    "stores": {"models", "tasks", "flows", "emoflow", "prefect"},
    "tasks": {"flows", "emoflow"},
    "flows": {"emoflow"},
    "emoflow": {"tasks"},
}


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative ones resolved to their package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
    return found


def violations(layer: str, root: Path = ROOT) -> list[str]:
    forbidden = FORBIDDEN[layer]
    found = []
    for path in sorted((root / layer).rglob("*.py")):
        for line, module in imported_modules(path, root):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(root)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_keeps_its_import_contract(layer: str) -> None:
    assert violations(layer) == []


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    sample = tmp_path / "models" / "probe.py"
    sample.write_text("def f():\n    from stores.store import ArtifactStore\n\nfrom . import types\n")
    assert sorted(imported_modules(sample, tmp_path)) == [(2, "stores.store"), (4, "models")]
    assert violations("models", tmp_path) == ["models/probe.py:2 imports stores.store"]
