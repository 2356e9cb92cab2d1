"""Triage latency of one 224 × 224 image on CPU, after the model is loaded and cached (goal: p50 < 150 ms).

Models are built with random weights (latency does not depend on the weights) and wrapped as the
app's cached ``LoadedModel``; the image is a bundled synthetic example. Each timing is the full
``rcl.triage.triage`` call: decode, preprocess, forward pass, Bayes decision. Prints figures only.

    .venv/bin/python benchmarks/triage_latency.py [--models small_cnn resnet18 resnet50] [--repeats 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from rcl.models import make_model
from rcl.runs import LoadedModel
from rcl.severity import severity_matrix
from rcl.taxonomy import preset
from rcl.triage import gradcam, triage

IMAGE = Path(__file__).resolve().parents[1] / "assets" / "synthetic_MEL.png"


def bench(name: str, repeats: int, image: bytes, size: int = 224) -> dict:
    taxonomy = preset("isic2018")
    model = make_model(name, taxonomy.num_classes, image_size=size).eval()
    loaded = LoadedModel(model, taxonomy, severity_matrix(taxonomy), size, name, Path("."), {"dataset": {}})
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        triage(loaded, image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        triage(loaded, image)
        times.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    gradcam(loaded, image)
    cam = 1000 * (time.perf_counter() - started)
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)), "gradcam": cam}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "resnet18", "resnet50"])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    image = IMAGE.read_bytes()
    print(f"torch {torch.__version__} · {torch.get_num_threads()} CPU threads · image {IMAGE.name} at 224 px")
    for name in args.models:
        r = bench(name, args.repeats, image)
        verdict = "meets" if r["p50"] < 150 else "misses"
        print(f"{name:>10} @224: triage p50 {r['p50']:7.1f} ms · p90 {r['p90']:7.1f} ms ({verdict} the 150 ms goal) · "
              f"one Grad-CAM {r['gradcam']:7.1f} ms")
        if name == "small_cnn":  # it has no strided stem: its natural (training) size is 64 px
            r = bench(name, args.repeats, image, size=64)
            print(f"{name:>10}  @64: triage p50 {r['p50']:7.1f} ms · p90 {r['p90']:7.1f} ms · "
                  f"one Grad-CAM {r['gradcam']:7.1f} ms")


if __name__ == "__main__":
    main()
