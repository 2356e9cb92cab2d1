"""A light app: pages that need no model never import torch or timm (seconds and hundreds of MB).

Each page runs in a fresh interpreter (AppTest), over a data directory with finished runs, and
reports which heavy modules it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, make_runs

PAGES = {"home": "app.py", "severity_matrix": "app_pages/1_Severity_matrix.py", "train": "app_pages/2_Train.py",
         "pareto": "app_pages/3_Pareto_frontier.py", "confusion": "app_pages/4_Confusion.py",
         "run_card": "app_pages/6_Run_card.py", "label_quality": "app_pages/8_Label_quality.py"}

PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
print(json.dumps({"exceptions": [e.value for e in at.exception],
                  "heavy": sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache) -> dict:
    base = tmp_path_factory.mktemp("light")
    home, models = base / "home", base / "models"
    home.mkdir()
    make_runs(home, models, shared_cache)
    return {"home": home, "models": models}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAGES))
def test_page_without_a_model_imports_no_torch(name, trained):
    env = {**os.environ, "RCL_HOME": str(trained["home"]), "RCL_MODELS": str(trained["models"]),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / PAGES[name])], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"exceptions": [], "heavy": []}
