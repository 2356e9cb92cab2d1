"""How long the app's one-click demo takes, from a fresh data directory, beside the old demo config.

Generates the bundled synthetic set (first use only), then trains ``rcl.demo_config()`` and, for a
side-by-side ratio under the same machine load, the previous demo config (small_cnn at 64 px,
4 epochs, 1,500 images). Prints one JSON line per config: wall and CPU seconds (CPU seconds count
this process only, not the image-decoding workers), load averages, the test split's size, its
argmax CER with the bootstrap interval, and the default risk-calibrated decision's CER and F1.

    RCL_HOME=$(mktemp -d) python benchmarks/demo_time.py [new] [new-shuffle] [old]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import rcl
from rcl.config import TrainConfig
from rcl.data import materialize
from rcl.train import run_training

CONFIGS = {
    "new": rcl.demo_config,
    # the demo as it drew its images before the sampling option: each image once per epoch
    "new-shuffle": lambda: replace(rcl.demo_config(), sampling="shuffle", name="demo-shuffle"),
    "old": lambda: TrainConfig(data="synthetic", model="small_cnn", image_size=64, epochs=4, loss="ce",
                               limit=1500, patience=5, sampling="shuffle", name="demo-old"),
}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    keys = sys.argv[1:] or list(CONFIGS)
    wall, cpu = time.perf_counter(), time.process_time()
    materialize()
    generation = {"generation_wall_s": round(time.perf_counter() - wall, 1),
                  "generation_cpu_s": round(time.process_time() - cpu, 1)}
    out = Path(tempfile.mkdtemp(prefix="demo-time-"))
    for key in keys:
        before, wall, cpu = loadavg(), time.perf_counter(), time.process_time()
        metrics = run_training(CONFIGS[key](), out / key)
        test, decision = metrics["test"], metrics["decision"]["test"]
        print(json.dumps({"demo": key, **generation, "train_wall_s": round(time.perf_counter() - wall, 1),
                          "train_cpu_s": round(time.process_time() - cpu, 1), "loadavg_before": before,
                          "loadavg_after": loadavg(), "test_n": test["n"], "test_cer": test["cer"],
                          "test_cer_ci": [test["ci"]["cer"]["low"], test["ci"]["cer"]["high"]],
                          "test_f1_macro": test["f1_macro"], "decision_rule": metrics["decision"]["rule"],
                          "decision_test_cer": decision["cer"], "decision_test_f1_macro": decision["f1_macro"],
                          "epochs_run": metrics["epochs_run"]}), flush=True)


if __name__ == "__main__":
    main()
