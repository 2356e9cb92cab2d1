"""Which CPU defaults train the best HAM10000 model in a few minutes? Measured side by side.

(a) A plain PyTorch script, the bar to beat: a 4-block CNN (conv-BN-ReLU-maxpool, 32/64/128/256
    channels) at 32 px, 28 epochs, AdamW lr 1e-3, cosine schedule, random rotations and flips,
    cross-entropy, checkpoint by best validation F1-macro. It uses the project's lesion-grouped
    split and image cache, so both sides see the same images.
(b) Candidate recipes through the project's own ``run_training`` (preset isic2018, CE, seed 0).

For each: test F1-macro and CER of the argmax decision, the seconds it took end to end (data,
training, per-epoch validation, final evaluation) and ``/proc/loadavg`` before and after: the
machine is shared, so compare times only within one sitting. Results are appended to
``benchmarks/results/cpu_recipe.json``; a finished entry is skipped, and an interrupted candidate
resumes from its run folder's ``last.pt`` (its seconds then count only the resumed part).

    python benchmarks/cpu_recipe.py [--data ../shared/data/ham10000] [--only NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rcl import paths
from rcl.config import TrainConfig
from rcl.data import ImageArrayDataset
from rcl.engine import load_run_data
from rcl.metrics import evaluate
from rcl.train import run_training

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ham10000"
RESULTS = ROOT / "benchmarks" / "results" / "cpu_recipe.json"
PLAIN = "plain-4block-32px-28ep"

# Candidate recipes: TrainConfig fields over the project's defaults (loss ce, preset isic2018, seed 0).
_CNN4_32 = {"model": "cnn4", "image_size": 32, "epochs": 28, "batch_size": 64, "lr": 1e-3, "patience": None}
CANDIDATES: dict[str, dict] = {
    "cnn4-32px-28ep-rotate_flip": {**_CNN4_32, "augment": "rotate_flip"},
    "cnn4-32px-28ep-colour": {**_CNN4_32, "augment": "rotate_flip_colour"},
    "cnn4-48px-20ep-colour": {**_CNN4_32, "image_size": 48, "epochs": 20, "augment": "rotate_flip_colour"},
    # channels-last on the CPU (about 1.6× faster training steps) leaves room for more pixels
    "cnn4-32px-28ep-ema": {**_CNN4_32, "weight_decay": 0.05, "ema": 0.998},
    "cnn4-40px-28ep": {**_CNN4_32, "image_size": 40, "weight_decay": 0.05},
    "cnn4-40px-28ep-ema": {**_CNN4_32, "image_size": 40, "weight_decay": 0.05, "ema": 0.998},
    "cnn4-48px-24ep-ema": {**_CNN4_32, "image_size": 48, "epochs": 24, "weight_decay": 0.05, "ema": 0.998},
    # the same convolution work as 40 px × 28 epochs (pixels × epochs), spent on more pixels
    "cnn4-44px-24ep": {**_CNN4_32, "image_size": 44, "epochs": 24, "weight_decay": 0.05},
    "cnn4-48px-20ep": {**_CNN4_32, "image_size": 48, "epochs": 20, "weight_decay": 0.05},
    "cnn4-40px-28ep-lr2e-3": {**_CNN4_32, "image_size": 40, "lr": 2e-3, "weight_decay": 0.05},
    "cnn4-40px-28ep-wd0.01": {**_CNN4_32, "image_size": 40, "weight_decay": 0.01},
    # the rare classes (dermatofibroma: 1% of the images) cost F1-macro most
    "cnn4-40px-28ep-wd0.01-sqrt": {**_CNN4_32, "image_size": 40, "weight_decay": 0.01, "sampling": "sqrt_balanced"},
    "cnn4-40px-28ep-wd0.01-zoom": {**_CNN4_32, "image_size": 40, "weight_decay": 0.01, "augment": "rotate_flip_zoom"},
    # the quiet-machine timing of the sqrt run was 5 min 31 s: two ways to spend about 15% less
    "cnn4-40px-24ep-wd0.01-sqrt": {**_CNN4_32, "image_size": 40, "epochs": 24, "weight_decay": 0.01,
                                   "sampling": "sqrt_balanced"},
    "cnn4-36px-28ep-wd0.01-sqrt": {**_CNN4_32, "image_size": 36, "weight_decay": 0.01, "sampling": "sqrt_balanced"},
}

# The search (--search): variations of the defaults whose CPU cost stays near theirs, each trained
# over several seeds (a seed also draws the split), on any device. Cost: convolution work per image
# grows with the pixel count, so (size / 40)² × epochs / 24 estimates the CPU time against the
# defaults; the chosen recipe's real CPU time is then measured on the CPU (cpu_recipe.md).
_BASE = {"model": "cnn4", "image_size": 40, "epochs": 24, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01,
         "augment": "rotate_flip", "ema": None, "sampling": "sqrt_balanced"}  # the defaults (cpu_recipe.md)
SEARCH: dict[str, dict] = {
    "defaults": {},
    "shuffle": {"sampling": "shuffle"},
    "wd0.05": {"weight_decay": 0.05},
    "lr2e-3": {"lr": 2e-3},
    "lr5e-4": {"lr": 5e-4},
    "batch32": {"batch_size": 32},
    "colour": {"augment": "rotate_flip_colour"},
    "zoom": {"augment": "rotate_flip_zoom"},
    "ema": {"ema": 0.998},
    "36px-30ep": {"image_size": 36, "epochs": 30},
    "44px-20ep": {"image_size": 44, "epochs": 20},
    "48px-17ep": {"image_size": 48, "epochs": 17},
    "32px-37ep": {"image_size": 32, "epochs": 37},
    "40px-28ep": {"epochs": 28},
}
AFFORDABLE = 1.15  # at most this estimated CPU cost against the defaults (4 min 13 s), to stay within 5 minutes


def search_config(name: str) -> dict:
    return {**_BASE, **SEARCH[name]}


def estimated_cost(config: dict) -> float:
    """Estimated CPU time against the defaults: pixels per image × epochs."""
    return (config["image_size"] / _BASE["image_size"]) ** 2 * config["epochs"] / _BASE["epochs"]


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class PlainCNN(nn.Module):
    """The plain script's model: four conv-BN-ReLU-maxpool blocks, global average pool, linear."""

    def __init__(self, num_classes: int):
        super().__init__()
        layers, cin = [], 3
        for cout in (32, 64, 128, 256):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.net(x)


def _predict(model, dataset, batch_size=256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(dataset.batch(range(i, min(i + batch_size, len(dataset))))[0]).argmax(1).numpy()
                               for i in range(0, len(dataset), batch_size)])


def plain_baseline(data: str, seed: int = 0, epochs: int = 28, batch_size: int = 64) -> dict:
    """The plain script: its own loop, the project's split and cache; returns test figures."""
    run_data = load_run_data(TrainConfig(data=data, preset="isic2018", image_size=32, seed=seed))
    torch.manual_seed(seed)
    sets = {s: ImageArrayDataset(run_data.images, run_data.labels, train=s == "train", indices=run_data.splits[s])
            for s in ("train", "val", "test")}
    labels = {s: run_data.labels[run_data.splits[s]] for s in sets}
    model = PlainCNN(run_data.taxonomy.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = len(sets["train"]) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps * epochs)
    loss_fn = nn.CrossEntropyLoss()
    best_f1, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(sets["train"]))
        for step in range(steps):
            images, targets = sets["train"].batch(order[step * batch_size:(step + 1) * batch_size].numpy())
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        f1 = evaluate(labels["val"], _predict(model, sets["val"]), run_data.taxonomy).f1_macro
        if f1 > best_f1:
            best_f1, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = evaluate(labels["test"], _predict(model, sets["test"]), run_data.taxonomy)
    return {"test_f1_macro": test.f1_macro, "test_cer": test.cer, "val_f1_macro": best_f1,
            "epochs_run": epochs, "test_n": int(len(labels["test"]))}


def candidate(name: str, overrides: dict, data: str, runs: Path, seed: int = 0) -> dict:
    config = TrainConfig(data=data, preset="isic2018", loss="ce", seed=seed, name=name, **overrides)
    metrics = run_training(config, runs / name)
    return {"test_f1_macro": metrics["test"]["f1_macro"], "test_cer": metrics["test"]["cer"],
            "val_f1_macro": metrics["val"]["f1_macro"], "epochs_run": metrics["epochs_run"],
            "selected_epoch": metrics["selected_epoch"], "test_n": int(metrics["test"]["n"]), "config": overrides}


SEARCH_RESULTS = ROOT / "benchmarks" / "results" / "recipe_search.json"


def search_configs(data: str, seeds: list[int], device: str, overrides: dict | None = None) -> list[TrainConfig]:
    return [TrainConfig(data=data, preset="isic2018", loss="ce", seed=seed, device=device, patience=None,
                        name=f"{name}-seed{seed}", **{**search_config(name), **(overrides or {})})
            for name in SEARCH for seed in seeds]


def search_rows(runs: Path) -> list[dict]:
    """One row per finished search run: its recipe, seed, device and val/test figures (argmax)."""
    rows = []
    for name in SEARCH:
        for folder in sorted(runs.glob(f"{name}-seed*")):
            if not (folder / "metrics.json").is_file() or folder.name.rsplit("-seed", 1)[0] != name:
                continue
            metrics = json.loads((folder / "metrics.json").read_text())
            config = json.loads((folder / "config.json").read_text())
            rows.append({"recipe": name, "seed": config["train"]["seed"], "device": config["device"],
                         "val_f1_macro": metrics["val"]["f1_macro"], "test_f1_macro": metrics["test"]["f1_macro"],
                         "test_cer": metrics["test"]["cer"], "selected_epoch": metrics["selected_epoch"],
                         "seconds": metrics["seconds"], "config": search_config(name)})
    return rows


def best_recipe(rows: list[dict]) -> str | None:
    """The rule fixed before looking: the highest mean validation F1-macro among the affordable
    recipes (estimated CPU cost ≤ AFFORDABLE) with every seed finished; test figures play no part."""
    seeds = max((sum(r["recipe"] == name for r in rows) for name in SEARCH), default=0)
    means = {name: np.mean([r["val_f1_macro"] for r in rows if r["recipe"] == name]) for name in SEARCH
             if sum(r["recipe"] == name for r in rows) == seeds and estimated_cost(search_config(name)) <= AFFORDABLE}
    return max(means, key=means.get) if means and seeds else None


def search_table(rows: list[dict]) -> str:
    """Mean ± sd over seeds per recipe, the affordable best by validation marked."""
    best = best_recipe(rows)
    lines = ["| recipe | changes from the defaults | est. CPU cost | seeds | val F1-macro | test F1-macro | test CER (argmax) "
             "| selected epochs |", "|---|---|---|---|---|---|---|---|"]
    for name in SEARCH:
        mine = [r for r in rows if r["recipe"] == name]
        if not mine:
            continue

        def stat(key, scale=1.0, digits=3, mine=mine):
            values = np.array([r[key] for r in mine if r[key] is not None], dtype=float) * scale
            return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}"

        changes = ", ".join(f"{k} {v}" for k, v in SEARCH[name].items()) or "—"
        marker = " **(chosen)**" if name == best else ""
        lines.append(f"| {name}{marker} | {changes} | {estimated_cost(search_config(name)):.2f}× | {len(mine)} "
                     f"| {stat('val_f1_macro')} | {stat('test_f1_macro')} | {stat('test_cer', 100, 1)}% "
                     f"| {', '.join(str(r['selected_epoch']) for r in mine)} |")
    return "\n".join(lines)


def read_results() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def table(results: list[dict]) -> str:
    """The recorded entries as a Markdown table, in the order they finished."""
    lines = ["| recipe | val F1-macro (the choice) | test F1-macro | test CER (argmax) | test n | epochs run (selected) "
             "| wall s | CPU s | threads | load avg before → after | finished |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cer = "n/a" if r["test_cer"] is None else f"{r['test_cer']:.1%}"
        epochs = f"{r['epochs_run']} ({r['selected_epoch']})" if "selected_epoch" in r else str(r["epochs_run"])
        lines.append(f"| {r['name']} | {r['val_f1_macro']:.3f} | {r['test_f1_macro']:.3f} | {cer} | {r['test_n']} | {epochs} | {r['seconds']:.0f} "
                     f"| {r['cpu_seconds']:.0f} | {r['threads']} | {r['loadavg_before']} → {r['loadavg_after']} "
                     f"| {r['finished']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--runs", default=None, help="folder for run folders (default $RCL_HOME/bench-cpu-recipe)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these entries (names as in --list)")
    parser.add_argument("--rerun", action="store_true", help="run entries again even if already recorded")
    parser.add_argument("--list", action="store_true", help="print the entry names and stop")
    parser.add_argument("--table", action="store_true", help="print the recorded results as Markdown and stop")
    parser.add_argument("--search", action="store_true",
                        help="train the search grid (SEARCH × --seeds) side by side, then write recipe_search.json")
    parser.add_argument("--seeds", default="0,1", help="seeds of the search, e.g. 0,1,2")
    parser.add_argument("--device", default="auto", help="device of the search runs (auto, cpu, cuda)")
    parser.add_argument("--jobs", type=int, default=1, help="search runs trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per search process")
    parser.add_argument("--overrides", default=None,
                        help="JSON of TrainConfig fields set on every search run (smoke tests: limit, max_steps)")
    parser.add_argument("--best", action="store_true", help="print the chosen recipe's TrainConfig fields as JSON")
    args = parser.parse_args()
    if args.search or args.best:
        runs = Path(args.runs) if args.runs else paths.home() / "bench-recipe-search"
        if args.search:
            from parallel import train_all

            seeds = [int(s) for s in args.seeds.split(",")]
            overrides = json.loads(args.overrides) if args.overrides else None
            train_all(search_configs(args.data, seeds, args.device, overrides), runs, args.jobs, args.threads)
        rows = search_rows(runs)  # whatever finished, also after an interrupted search
        SEARCH_RESULTS.write_text(json.dumps(rows, indent=2))
        print(search_table(rows), file=sys.stderr)
        if args.best:
            best = best_recipe(rows)
            print(json.dumps({"recipe": best, **search_config(best)} if best else {}))
        return
    names = [PLAIN, *CANDIDATES]
    if args.list or args.table:
        print("\n".join(names) if args.list else table(read_results()))
        return
    runs = Path(args.runs) if args.runs else paths.home() / "bench-cpu-recipe"
    done = {r["name"] for r in read_results()}
    for name in args.only or names:
        if name not in names:
            raise SystemExit(f"unknown entry {name!r}; --list shows the names")
        if name in done and not args.rerun:
            continue
        before, began, cpu_began = loadavg(), time.perf_counter(), time.process_time()
        if name == PLAIN:
            figures = plain_baseline(args.data)
        else:
            figures = candidate(name, CANDIDATES[name], args.data, runs / name)  # resumes from its last.pt
        record = {"name": name, **figures, "seconds": round(time.perf_counter() - began, 1),
                  "cpu_seconds": round(time.process_time() - cpu_began, 1),
                  "loadavg_before": before, "loadavg_after": loadavg(), "finished": time.strftime("%Y-%m-%d %H:%M"),
                  "threads": torch.get_num_threads()}
        RESULTS.write_text(json.dumps([*read_results(), record], indent=2))  # re-read: another run may have added
        print(json.dumps(record))


if __name__ == "__main__":
    main()
