"""The models package's shape (issue 24): small modules, and torch only where it belongs."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jobping_pipeline" / "models"
MODULES = sorted(PACKAGE.glob("*.py"))
TORCH_LIBRARIES = {"torch", "transformers", "sentence_transformers"}
TORCH_IMPORTERS = {"torch_backend.py", "export.py"}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_module_is_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300


def test_only_the_torch_backend_and_the_export_import_torch():
    assert len(MODULES) > 10
    importers = {path.name for path in MODULES if imported(path) & TORCH_LIBRARIES}
    assert importers == TORCH_IMPORTERS
