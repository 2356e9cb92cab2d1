"""The paper's ablation (Table IV; the grid is defined in :mod:`rcl.paper`): baselines CE, WCE,
Focal, LS and the 7 RCL configurations, each over N seeds, summarised as mean ± std in one CSV and one Markdown table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rcl.config import TrainConfig
from rcl.grid import ablation_methods, grid_configs
from rcl.paper import METHODS
from rcl.text import MISSING


def ablation_configs(base: TrainConfig, seeds: Iterable[int]) -> list[TrainConfig]:
    """One config per (seed, method), derived from ``base`` by changing loss, α/β, seed and name
    (``RCL-Proposed-seed2``, after ``base.name`` when it has one: ``hosp-A-CE-seed0``): the sweep grid
    of the paper's methods (:func:`rcl.grid.grid_configs`)."""
    return grid_configs(base, ablation_methods(), seeds=seeds)


def method_of(name: str) -> str:
    """``RCL-Proposed-seed2`` and ``hosp-A-RCL-Proposed-seed2`` → ``RCL-Proposed`` (a name of no
    method of the grid is returned without its seed)."""
    stem = name.rsplit("-seed", 1)[0]
    return next((m for m in METHODS if stem == m or stem.endswith(f"-{m}")), stem)


def summarise(rows: Sequence[dict]) -> pd.DataFrame:
    """Mean and std per method of test CER, F1-macro, accuracy and tier counts, in the paper's order.

    ``rows`` hold ``name`` and a ``metrics.json`` dict under ``metrics``.
    """
    records = []
    for row in rows:
        test = row["metrics"]["test"]
        records.append({"method": method_of(row["name"]), "cer": np.nan if test["cer"] is None else test["cer"],
                        "f1_macro": test["f1_macro"], "accuracy": test["accuracy"],
                        **{f"n_{k}": v for k, v in test["tiers"].items()}})
    frame = pd.DataFrame(records)
    order = [m for m in METHODS if m in set(frame["method"])]
    order += sorted(set(frame["method"]) - set(order))
    stats = frame.groupby("method").agg(["mean", "std", "count"]).reindex(order)
    out = pd.DataFrame(index=stats.index)
    out["seeds"] = stats[("cer", "count")].astype(int)
    for metric in ("cer", "f1_macro", "accuracy", "n_visual_ambiguity", "n_type_1", "n_type_2"):
        out[f"{metric}_mean"] = stats[(metric, "mean")]
        out[f"{metric}_std"] = stats[(metric, "std")].fillna(0.0)
    return out.reset_index()


def to_markdown(summary: pd.DataFrame, title: str = "") -> str:
    def pm(row, metric, scale=1.0, digits=3):
        mean, std = row[f"{metric}_mean"] * scale, row[f"{metric}_std"] * scale
        return MISSING if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = [f"### {title}", ""] if title else []
    lines += ["| method | seeds | CER (%) | F1-macro | accuracy (%) | Type II | Type I | visual ambiguity |",
              "|---|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        lines.append(f"| {row['method']} | {row['seeds']} | {pm(row, 'cer', 100, 2)} | {pm(row, 'f1_macro')} | "
                     f"{pm(row, 'accuracy', 100, 1)} | {pm(row, 'n_type_2', digits=1)} | {pm(row, 'n_type_1', digits=1)} | "
                     f"{pm(row, 'n_visual_ambiguity', digits=1)} |")
    return "\n".join(lines) + "\n"


def run_ablation(configs: Sequence[TrainConfig], out: Path,
                 callback_factory: Callable[[TrainConfig], Callable[[dict], None]] | None = None,
                 train: bool = True) -> dict:
    """Train every config into ``out/<name>`` (skipping finished ones), then write the tables.

    With ``train=False`` nothing is trained: the tables cover the runs finished so far (their
    ``seeds`` column says how many), e.g. to report a long benchmark while it is still running.
    """
    from rcl.runs import load_run
    from rcl.train import run_training

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for config in configs:
        run_dir = out / config.name
        if (run_dir / "metrics.json").is_file():
            metrics = load_run(run_dir).metrics  # already done: an interrupted ablation picks up where it was
        elif train:
            callback = callback_factory(config) if callback_factory else None
            metrics = run_training(config, run_dir, callback)
        else:
            continue
        rows.append({"name": config.name, "metrics": metrics})
    if not rows:
        raise ValueError(f"no finished runs in {out}")
    summary = summarise(rows)
    csv_path, md_path = out / "results.csv", out / "results.md"
    summary.to_csv(csv_path, index=False)
    markdown = to_markdown(summary)
    md_path.write_text(markdown)
    return {"summary": summary, "markdown": markdown, "csv_path": csv_path, "markdown_path": md_path}
