"""docs/ARCHITECTURE.md's module table names every module of the package, and only those."""

from __future__ import annotations

import re

from helpers import ROOT


def documented() -> set[str]:
    table = (ROOT / "docs" / "ARCHITECTURE.md").read_text().split("## Modules", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(rcl/[^`]*)` \|", table, flags=re.MULTILINE))


def present() -> set[str]:
    package = ROOT / "rcl"
    modules = {str(p.relative_to(ROOT)) for p in package.rglob("*.py")
               if "__pycache__" not in p.parts and not (p.name == "__init__.py" and p.parent != package)}
    packages = {f"{p.parent.relative_to(ROOT)}/" for p in package.rglob("__init__.py") if p.parent != package}
    return modules | packages


def test_every_module_has_a_line_in_the_architecture_table():
    missing = present() - documented()
    assert not missing, f"add a line to docs/ARCHITECTURE.md's module table for: {sorted(missing)}"


def test_every_line_of_the_architecture_table_names_a_module_that_exists():
    stale = documented() - present()
    assert not stale, f"docs/ARCHITECTURE.md names modules that do not exist: {sorted(stale)}"
