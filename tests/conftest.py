import os
from pathlib import Path

import pytest

# Tests never wait on a hub download: timm/huggingface fail fast when asked for weights.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from rcl.taxonomy import Taxonomy  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def toy_taxonomy() -> Taxonomy:
    """Two benign classes (a, b) and one malignant (m)."""
    return Taxonomy.from_malignant(["a", "b", "m"], malignant=["m"], name="toy")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One image cache for the session: the synthetic set is generated and decoded once."""
    return tmp_path_factory.mktemp("rcl_cache")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, shared_cache):
    """Every test gets its own data directory, so runs and jobs never leak between tests."""
    monkeypatch.setenv("RCL_HOME", str(tmp_path / "rcl_home"))
    monkeypatch.setenv("RCL_CACHE", str(shared_cache))
    monkeypatch.setenv("RCL_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RCL_WORKER_AUTOSTART", "0")  # reading job state never spawns a worker in a test
