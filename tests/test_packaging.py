"""`pip install .` gives a working package: `import rcl` and `rcl --help` in a fresh virtualenv.

A full fresh install downloads torch and its CUDA libraries (gigabytes; minutes even on a fast
network), so the fresh venv reuses the test interpreter's installed dependencies through a
``.pth`` line and pip installs offline (``--no-index``). pip still reads ``pyproject.toml``'s
dependency list and refuses the install if any of them is missing or out of range, so the
declared dependencies are checked, and the package imports from the new venv, not the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_gives_a_working_rcl(tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not the checkout
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "_reuse_installed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # Built from a copy of what a clean clone holds: a build/ folder left in the checkout by an
    # earlier build would otherwise be reused by setuptools, stale files and all.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "rcl", source / "rcl", ignore=shutil.ignore_patterns("__pycache__"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
         "--no-build-isolation", str(source)],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    where = subprocess.run([str(python), "-c", "import rcl; print(rcl.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    help_text = subprocess.run([str(venv / "bin" / "rcl"), "--help"], capture_output=True, text=True, cwd=tmp_path,
                               env=env)
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "train" in help_text.stdout and "evaluate" in help_text.stdout
