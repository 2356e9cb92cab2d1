"""Time the Pareto frontier page with 1,000 runs (goal: under 2 s per render).

The runs are FAKE, generated for this benchmark only in a temporary folder: well-formed run folders
(config.json, metrics.json with stored bootstrap intervals) whose metrics are random. Rendering goes
through Streamlit's AppTest, i.e. the real page script. Prints figures only.

    .venv/bin/python benchmarks/pareto_render.py [--runs 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("small_cnn", "resnet18", "resnet50", "vit_base_patch16_224")


def make_fake_runs(root: Path, n: int, seed: int = 0) -> None:
    """``n`` fake run folders under ``root`` (marked ``"benchmark_fake": true`` in their config)."""
    from rcl.loss_registry import LOSSES
    from rcl.severity import severity_matrix
    from rcl.taxonomy import preset

    taxonomy = preset("isic2018")
    matrix = severity_matrix(taxonomy).tolist()
    rng = np.random.default_rng(seed)
    k = taxonomy.num_classes
    for i in range(n):
        loss, model = list(LOSSES)[i % len(LOSSES)], MODELS[(i // len(LOSSES)) % len(MODELS)]
        cer, f1 = float(rng.uniform(0.02, 0.5)), float(rng.uniform(0.3, 0.8))
        confusion = rng.integers(0, 30, (k, k)).tolist()
        ci = {"cer": {"value": cer, "low": max(cer - 0.05, 0), "high": cer + 0.05},
              "f1_macro": {"value": f1, "low": f1 - 0.04, "high": f1 + 0.04}}
        test = {"n": 1500, "cer": cer, "f1_macro": f1, "accuracy": float(rng.uniform(0.5, 0.9)),
                "sensitivity": 1 - cer, "specificity": 0.8, "confusion": confusion, "classes": list(taxonomy.classes),
                "tiers": {"correct": 1000, "visual_ambiguity": 200, "type_1": 200, "type_2": 100}, "ci": ci,
                "split_fingerprint": "fake0001"}  # one test split: every run is comparable
        folder = root / f"20240101-{i:06d}-fake-{loss}-{model}"
        folder.mkdir()
        config = {"train": {"data": "synthetic", "model": model, "loss": loss, "alpha": 5.0, "beta": 20.0,
                            "seed": i, "epochs": 10, "image_size": 64, "lr": 1e-3, "name": None},
                  "taxonomy": taxonomy.to_dict(), "matrix": matrix, "benchmark_fake": True,
                  "dataset": {"name": "synthetic", "synthetic": True, "layout": "synthetic"}}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps({"test": test, "val": test, "epochs_run": 10}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rcl-bench-pareto-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        started = time.perf_counter()
        make_fake_runs(home, args.runs)
        print(f"generated {args.runs} fake runs in {time.perf_counter() - started:.1f} s")
        os.environ["RCL_HOME"] = str(home)
        os.environ["RCL_MODELS"] = str(Path(tmp) / "models")
        started = time.perf_counter()
        import plotly.graph_objects  # noqa: F401  (a running server has these imported already)
        from streamlit.testing.v1 import AppTest

        import ui.common  # noqa: F401

        print(f"imports (once per server process, not per render): {time.perf_counter() - started:.1f} s")

        page = str(ROOT / "app_pages" / "3_Pareto_frontier.py")
        times = []
        for repeat in range(args.repeats + 1):
            at = AppTest.from_file(page, default_timeout=120)
            started = time.perf_counter()
            at.run()
            elapsed = time.perf_counter() - started
            if at.exception:
                raise SystemExit(f"the page raised: {at.exception[0].value}")
            label = "cold (first render: empty data caches)" if repeat == 0 else f"warm render {repeat}"
            print(f"{label}: {elapsed:.2f} s")
            times.append(elapsed)
        print(f"runs {args.runs} · cold {times[0]:.2f} s · warm median {statistics.median(times[1:]):.2f} s "
              f"(goal < 2 s)")


if __name__ == "__main__":
    main()
