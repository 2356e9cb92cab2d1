"""Where rcl keeps its state: one data directory shared by the CLI, the worker and the app.

``$RCL_HOME`` when set, else ``runs/`` in the current directory. Run folders live directly in
it; the job database and caches beside them.
"""

from __future__ import annotations

import os
from pathlib import Path

from rcl.atomic import write_with

RUN_WEIGHTS = "model.safetensors"  # a run folder's trained weights (what triage, export and fine-tunes read)


def home() -> Path:
    """The data directory (created on first use)."""
    path = Path(os.environ.get("RCL_HOME") or "runs").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Decoded-image caches and the generated synthetic data set (``$RCL_CACHE`` to share one)."""
    path = Path(os.environ["RCL_CACHE"]).expanduser().resolve() if os.environ.get("RCL_CACHE") else home() / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def jobs_db() -> Path:
    return home() / "jobs.sqlite"


def models_dir() -> Path:
    """Deployable models promoted by ``rcl export`` (``$RCL_MODELS`` or ``models/`` in the project)."""
    path = Path(os.environ.get("RCL_MODELS") or "models").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def weights_dir() -> Path:
    """Weight files given to training (e.g. uploaded in the app for an offline machine)."""
    path = home() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_weights_file(filename: str, data: bytes) -> Path:
    """Keep an uploaded weights file in :func:`weights_dir` under its own (base) name; return its path.

    Only the file's base name is used (no folders); its suffix must be one of ``WEIGHTS_SUFFIXES``.
    The content is checked when training loads it (``weights_only=True`` for PyTorch files).
    """
    name = Path(str(filename).replace("\\", "/")).name
    if Path(name).suffix.lower() not in WEIGHTS_SUFFIXES or name.startswith("."):
        raise ValueError(f"weights file {filename!r}: expected a {', '.join(WEIGHTS_SUFFIXES)} file")
    if not data:
        raise ValueError(f"weights file {filename!r} is empty")
    path = weights_dir() / name
    write_with(path, lambda tmp: tmp.write_bytes(data))
    return path


# --- the run-folder contract (every reader and writer of run folders relies on it) ------------------
# A run folder is complete iff ``<run_dir>/metrics.json`` exists. While it trains, a run lives in the
# hidden sibling ``<parent>/.<name>.partial/``; the target is replaced only when training succeeds.
COMPLETE_MARKER = "metrics.json"


def partial_dir(run_dir: str | Path) -> Path:
    """Where the run that will become ``run_dir`` trains (hidden, so run listings skip it)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.partial"


def is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / COMPLETE_MARKER).is_file()
