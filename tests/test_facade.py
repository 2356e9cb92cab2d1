"""The app and its helpers use the library through the ``rcl`` facade only."""

from __future__ import annotations

import ast

import pytest
from helpers import ROOT

import rcl

APP_FILES = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py")), *sorted((ROOT / "app_pages").glob("*.py"))]


def rcl_imports(path) -> list[str]:
    """Every import of ``path`` that reaches past the facade, as written."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("rcl.")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("rcl."):
                bad.append(node.module)
            elif node.module == "rcl":
                bad += [f"rcl.{a.name}" for a in node.names if a.name not in rcl.__all__]
    return bad


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in APP_FILES])
def test_app_imports_only_the_facade(path):
    assert rcl_imports(path) == [], f"{path.name} imports past the rcl facade"


def test_every_facade_name_resolves():
    missing = [name for name in rcl.__all__ if getattr(rcl, name, None) is None]
    assert missing == []
    assert len(set(rcl.__all__)) == len(rcl.__all__)


def test_checker_sees_submodule_imports(tmp_path):
    page = tmp_path / "page.py"
    page.write_text("import rcl\nfrom rcl import paths, pct\nfrom rcl.metrics import TIERS\nimport rcl.runs\n")
    assert rcl_imports(page) == ["rcl.paths", "rcl.metrics", "rcl.runs"]
