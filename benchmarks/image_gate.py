"""The image gate's two statistics (``rcl.ood.gate_statistics``) on in-distribution and foreign
images: the grey-level spread (blank below 0.01) and the neighbouring-pixel correlation (noise
below 0.25). The lowest in-distribution values and the highest noise values show the margin.

    PYTHONPATH=. python benchmarks/image_gate.py --ham /path/ham10000/images --mri /path/brain-tumor-mri
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from rcl.data import load_rgb
from rcl.data.synthetic import generate
from rcl.data.table import IMAGE_EXTENSIONS
from rcl.ood import BLANK_STD, NOISE_CORRELATION, gate_statistics


def noise_pngs(seed: int = 0) -> list:
    rng, pictures = np.random.default_rng(seed), []
    for size in (16, 32, 64, 80, 224, 600, 1500):
        for channels in (3, 1, 4, 16):
            array = rng.integers(0, 65536, (size, size), dtype=np.uint16) if channels == 16 else \
                rng.integers(0, 256, (size, size, channels), dtype=np.uint8).squeeze()
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            pictures.append(load_rgb(buffer.getvalue()))
    return pictures


def sample(folder: str, n: int) -> list:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return [load_rgb(p) for p in random.Random(0).sample(files, min(n, len(files)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ham")
    parser.add_argument("--mri")
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    sets = {f"synthetic {s} px": list(generate(n=1000, image_size=s, seed=1)[0]) for s in (32, 64, 224)}
    for name, folder in (("HAM10000", args.ham), ("Brain MRI", args.mri)):
        if folder:
            sets[name] = sample(folder, args.n)
    sets["noise PNGs (8/16-bit, RGB/grey/RGBA, 16-1500 px)"] = noise_pngs()
    print(f"gate: blank if spread < {BLANK_STD}, noise if correlation < {NOISE_CORRELATION}\n")
    print("| images | n | spread min | correlation min | correlation 1% quantile | correlation max |")
    print("|---|---|---|---|---|---|")
    for name, pictures in sets.items():
        stats = np.array([gate_statistics(p) for p in pictures])
        print(f"| {name} | {len(stats)} | {stats[:, 0].min():.3f} | {stats[:, 1].min():.3f} | "
              f"{np.quantile(stats[:, 1], 0.01):.3f} | {stats[:, 1].max():.3f} |")


if __name__ == "__main__":
    main()
