"""Unfamiliar-image detector candidates, measured on a trained run: the share of its own test split
flagged (about the chosen rate, 5%, is right) and the share of foreign images flagged (≥ 95% is
the bar), each candidate's threshold set at the 95th percentile of the run's validation scores.

Candidates: Mahalanobis on the penultimate features (what a run ships), Mahalanobis summed over
every block of the backbone (multi-layer, each layer's score standardised on validation), energy
(−logsumexp of the logits), max-logit, max-softmax, the image gate alone (blank, noise), and the
shipped rule (image gate OR penultimate Mahalanobis).

Foreign sets: uniform-noise, blank and 16-bit noise PNGs drawn here, plus any image folders given
with ``--foreign NAME=FOLDER`` (a sample of ``--per-set`` files). Usage::

    PYTHONPATH=. python benchmarks/ood.py RUN_DIR --foreign "Brain MRI=/path/brain-tumor-mri" \\
        --foreign "HAM10000=/path/ham10000/images" --out benchmarks/results/ood.md
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.special import logsumexp, softmax

from rcl.config import TrainConfig
from rcl.data import load_rgb, preprocess
from rcl.data.table import IMAGE_EXTENSIONS
from rcl.data.transforms import normalize
from rcl.engine import load_run_data
from rcl.ood import fit_mahalanobis, image_gate
from rcl.runs import load_model

FLAG_RATE = 0.05


def drawn_sets(n: int, seed: int = 0) -> dict[str, list]:
    """Noise, blank and 16-bit noise PNGs, decoded through the app's reader."""
    rng = np.random.default_rng(seed)

    def png(array) -> Image.Image:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return load_rgb(buffer.getvalue())

    sizes = rng.integers(40, 600, n)
    return {
        "uniform noise": [png(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)) for s in sizes],
        "blank": [png(np.full((s, s, 3), rng.integers(0, 256), dtype=np.uint8)) for s in sizes],
        "16-bit noise": [png(rng.integers(0, 65536, (s, s), dtype=np.uint16)) for s in sizes],
    }


def folder_set(folder: str, n: int, seed: int = 0) -> list:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return [load_rgb(p) for p in random.Random(seed).sample(files, min(n, len(files)))]


@torch.no_grad()
def passes(model, batch: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits and the pooled output of every block of ``model.features`` (the last = penultimate)."""
    pooled, x = [], batch
    for block in model.features:
        x = block(x)
        pooled.append(x.mean(dim=(2, 3)).numpy())
    return model.forward_head(x).numpy(), pooled


def run_passes(model, tensors: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    outs = [passes(model, tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
    return np.concatenate([o[0] for o in outs]), [np.concatenate(layer) for layer in zip(*(o[1] for o in outs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--foreign", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--per-set", type=int, default=300)
    parser.add_argument("--out", help="append the Markdown table to this file")
    args = parser.parse_args()

    loaded = load_model(args.run_dir)
    model = loaded.model.eval()
    if not hasattr(model, "features"):
        raise SystemExit("this benchmark reads the blocks of the project's small_cnn (model.features)")
    config = TrainConfig.from_dict(json.loads((Path(args.run_dir) / "config.json").read_text())["train"])
    data = load_run_data(config)
    split = {name: torch.from_numpy(data.images[rows]).permute(0, 3, 1, 2) for name, rows in data.splits.items()}
    outputs = {name: run_passes(model, normalize(t)) for name, t in split.items()}
    gate = {"test": np.array([image_gate(i) is not None for i in data.images[data.splits["test"]]])}

    sets = drawn_sets(args.per_set // 3 or 1)
    for spec in args.foreign:
        name, folder = spec.split("=", 1)
        sets[name] = folder_set(folder, args.per_set)
    for name, pictures in sets.items():
        tensors = torch.cat([preprocess(p, loaded.image_size) for p in pictures])
        outputs[name] = run_passes(model, tensors)
        gate[name] = np.array([image_gate(p) is not None for p in pictures])

    train_labels = data.labels[data.splits["train"]]
    layers = len(outputs["train"][1])
    detectors = [fit_mahalanobis(outputs["train"][1][k], train_labels) for k in range(layers)]

    def layer_score(name: str, k: int) -> np.ndarray:
        return detectors[k].score(outputs[name][1][k])

    val_layers = [layer_score("val", k) for k in range(layers)]
    scores = {
        "Mahalanobis, penultimate": lambda name: layer_score(name, layers - 1),
        "Mahalanobis, all blocks": lambda name: sum((layer_score(name, k) - val_layers[k].mean()) / val_layers[k].std()
                                                    for k in range(layers)),
        "energy": lambda name: -logsumexp(outputs[name][0], axis=1),
        "max-logit": lambda name: -outputs[name][0].max(axis=1),
        "max-softmax": lambda name: -softmax(outputs[name][0], axis=1).max(axis=1),
    }
    targets = ["test", *sets]
    rows = []
    for candidate, score in scores.items():
        threshold = np.quantile(score("val"), 1 - FLAG_RATE)
        rows.append((candidate, {t: float((score(t) > threshold).mean()) for t in targets}))
    rows.append(("image gate alone", {t: float(gate[t].mean()) for t in targets}))
    shipped_threshold = np.quantile(scores["Mahalanobis, penultimate"]("val"), 1 - FLAG_RATE)
    rows.append(("shipped: image gate OR penultimate Mahalanobis",
                 {t: float((gate[t] | (scores["Mahalanobis, penultimate"](t) > shipped_threshold)).mean())
                  for t in targets}))

    header = ["candidate", f"own test flagged (n={len(data.splits['test'])})",
              *[f"{name} flagged (n={len(sets[name])})" for name in sets]]
    lines = [f"Run `{args.run_dir}` ({config.model}, {config.image_size} px, data {config.data}, "
             f"limit {config.limit}); thresholds at the 95th percentile of its validation scores.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name, *(f"{shares[t]:.1%}" for t in targets)]) + " |" for name, shares in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
