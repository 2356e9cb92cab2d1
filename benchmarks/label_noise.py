"""Does RCL make label noise worse, or does it help? CE, WCE, Focal and RCL-Proposed on HAM10000
with injected train-label noise, and the label-issue finder's precision on injected misses.

Each (loss, noise, seed) trains through ``rcl.run_training`` with ``--label-noise`` on the train
split only (validation and test keep the dataset's labels), so the table shows what wrong
training labels cost on clean test labels. Defaults: CE, WCE, Focal, RCL-Proposed (α 5, β 20)
× {none, symmetric 10/20%, miss 10/20%} × seeds 0, 1, 2 = 60 runs; the recipe is TrainConfig's
defaults (resolved for the device) unless --model/--image-size/--epochs/... say otherwise.

    python benchmarks/label_noise.py --data ../shared/data/ham10000 --preset isic2018 --jobs 4   # train, record
    python benchmarks/label_noise.py --data ../shared/data/ham10000 --preset isic2018 --finder   # finder precision@k
    python benchmarks/label_noise.py --table                                                       # label_noise.md + .png

Run folders go to ``--runs`` (default ``$RCL_HOME/bench-label-noise-MODEL-SIZEpx-EPOCHSep-SAMPLING``);
a finished run folder is skipped, so an interrupted benchmark resumes. Each finished run adds a
row to ``label_noise.json`` / ``.csv`` in ``--out`` (default benchmarks/results; a row of the same
run and recipe is replaced). ``--table`` reads only those files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks.ham10000 import DEFAULT_DATA, RESULTS, ROOT  # noqa: E402
from benchmarks.parallel import train_all  # noqa: E402
from rcl import paths  # noqa: E402
from rcl.ablation import method_of  # noqa: E402
from rcl.config import TrainConfig  # noqa: E402
from rcl.grid import ablation_methods, grid_configs  # noqa: E402
from rcl.text import plural  # noqa: E402

LOSSES = ("CE", "WCE", "Focal", "RCL-Proposed")
NOISES = ("none", "symmetric:0.1", "symmetric:0.2", "miss:0.1", "miss:0.2")
DECISIONS = ("argmax", "default")  # the run's default decision: see rcl.posthoc.defaults
FINDER_NOISE = "miss:0.1"
FINDER_AIM = 0.8  # the issue's aim for precision@k on HAM10000
N_RESAMPLES = 1000


def noise_tag(noise: str) -> str:
    """``miss:0.1`` → ``miss0.1`` (a run-name part); ``none`` → ``clean``."""
    return "clean" if noise == "none" else noise.replace(":", "")


def recipe_of(config: TrainConfig) -> dict:
    """What makes two rows comparable: everything but loss, noise and seed (the data as given, the device resolved)."""
    from rcl.models import pick_device

    keys = ("data", "preset", "model", "image_size", "epochs", "batch_size", "lr", "weight_decay", "sampling", "limit",
            "max_steps")
    return {**{k: getattr(config, k) for k in keys}, "device": pick_device(config.device).type}


def benchmark_configs(base: TrainConfig, losses, noises, seeds) -> list[TrainConfig]:
    """One config per (noise, seed, loss), named ``miss0.1-RCL-Proposed-seed2``."""
    methods = [m for m in ablation_methods() if m.label in losses]
    configs = []
    for noise in noises:
        noisy = replace(base, label_noise=None if noise == "none" else noise, name=noise_tag(noise))
        configs += grid_configs(noisy, methods, seeds=seeds)
    return configs


def run_row(run_dir: Path, recipe: dict) -> dict:
    """Test CER/F1 of a finished run under argmax and its default decision, with bootstrap 95% CIs."""
    from rcl.decision import decide
    from rcl.decision_scale import scaled_matrix
    from rcl.runs import load_run
    from rcl.uncertainty import bootstrap_ci

    run = load_run(run_dir)
    labels = run.predictions("test")["labels"]
    scale = float(run.metrics.get("decision", {}).get("scale", 1.0))
    predicted = {"argmax": run.predictions("test")["probs"].argmax(axis=1),
                 "default": decide(run.calibrated_probs("test"), scaled_matrix(run.matrix.values, scale))}
    noise = run.train.get("label_noise") or "none"
    row = {"kind": "training", "name": run.id, "loss": method_of(run.id),
           "noise": noise, "noise_kind": noise.split(":")[0], "rate": float(noise.split(":")[1]) if ":" in noise else 0.0,
           "seed": run.train["seed"], "n_test": int(labels.size), "decision_scale": scale, "recipe": recipe}
    for decision, pred in predicted.items():
        ci = bootstrap_ci(labels, pred, run.taxonomy, n_resamples=N_RESAMPLES, seed=0)
        for metric, key in (("cer", "cer"), ("f1", "f1_macro")):
            row[f"{decision}_{metric}"] = ci[key]["value"]
            row[f"{decision}_{metric}_low"], row[f"{decision}_{metric}_high"] = ci[key]["low"], ci[key]["high"]
    return row


def finder_row(base: TrainConfig, seed: int, folds: int | None = None, epochs: int | None = None) -> dict:
    """The label-issue finder on the train split with 10% injected misses: its default settings
    unless ``folds``/``epochs`` say otherwise. The same out-of-fold probabilities are ranked by every
    rank method (``by_method``): the data behind the default ranking's choice."""
    from rcl.labels.issues import FINDER_DEFAULTS, RANK_METHOD, RANK_METHODS, out_of_fold, rank_label_issues

    folds, epochs = folds or FINDER_DEFAULTS["folds"], epochs or FINDER_DEFAULTS["epochs"]
    oof = out_of_fold(replace(base, label_noise=FINDER_NOISE, seed=seed, epochs=epochs), folds)
    results = {method: rank_label_issues(oof, method) for method in RANK_METHODS}
    result = results[RANK_METHOD]
    default = (folds, epochs) == (FINDER_DEFAULTS["folds"], FINDER_DEFAULTS["epochs"])
    return {"kind": "finder", "name": f"finder-{noise_tag(FINDER_NOISE)}{'' if default else f'-{folds}folds-{epochs}ep'}"
                                      f"-seed{seed}", "noise": FINDER_NOISE,
            "seed": seed, "n": result["n"], "flagged": result["flagged"], "method": result["method"],
            "source": result["source"], "folds": folds, "epochs": epochs, "default_settings": default,
            **result["precision"], "by_method": {m: r["precision"] for m, r in results.items()},
            "recipe": recipe_of(base)}  # the benchmark's recipe: one table for both


def record(rows: list[dict], out: Path) -> None:
    """Add ``rows`` to ``label_noise.json`` (replacing a row of the same kind, name and recipe) and rewrite the CSV."""
    import pandas as pd

    path = out / "label_noise.json"
    kept = json.loads(path.read_text()) if path.is_file() else []
    key = lambda r: (r["kind"], r["name"], json.dumps(r["recipe"], sort_keys=True))  # noqa: E731
    new = {key(r) for r in rows}
    kept = [r for r in kept if key(r) not in new] + rows
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept, indent=1))
    flat = pd.json_normalize(kept)
    flat.to_csv(out / "label_noise.csv", index=False)


def reproduce_command(recipe: dict, training: list[dict], finder: list[dict]) -> str:
    """The commands that give these rows: one grid command per set of seeds the noises were run
    with (naming only the losses and noises trained), one finder command per fold setting, then
    the table."""
    data = recipe["data"] if recipe["data"] == "synthetic" else os.path.relpath(recipe["data"], ROOT)
    flags = [f"--data {data}", *([f"--preset {recipe['preset']}"] if recipe["preset"] else []),
             f"--model {recipe['model']}", f"--image-size {recipe['image_size']}", f"--epochs {recipe['epochs']}",
             *([f"--limit {recipe['limit']}"] if recipe["limit"] else []),
             *([f"--max-steps {recipe['max_steps']}"] if recipe["max_steps"] else []), f"--device {recipe['device']}"]
    script = "python benchmarks/label_noise.py " + " ".join(flags)
    losses = [x for x in LOSSES if any(r["loss"] == x for r in training)]
    by_seeds: dict[tuple, list[str]] = {}
    for noise in [x for x in NOISES if any(r["noise"] == x for r in training)]:
        by_seeds.setdefault(tuple(sorted({r["seed"] for r in training if r["noise"] == noise})), []).append(noise)
    lines = [f"{script} --seeds {' '.join(map(str, seeds))}"
             + (f" --losses {','.join(losses)}" if set(losses) != set(LOSSES) else "")
             + (f" --noises {','.join(noises)}" if set(noises) != set(NOISES) else "") + " --jobs 2"
             for seeds, noises in by_seeds.items()]
    settings: dict[tuple, set] = {}
    for r in finder:
        settings.setdefault((r.get("default_settings", True), r["folds"], r["epochs"]), set()).add(r["seed"])
    lines += [f"{script} --seeds {' '.join(map(str, sorted(seeds)))} --finder"
              + ("" if default else f" --folds {folds} --finder-epochs {epochs}")
              for (default, folds, epochs), seeds in settings.items()]
    return "\n".join([*lines, "python benchmarks/label_noise.py --table"])


def _latest_recipe(rows: list[dict]) -> dict:
    return rows[-1]["recipe"]


def summary_frame(rows: list[dict]):
    """Mean, sd and mean bootstrap bounds over seeds per (loss, noise, decision)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    long = []
    for decision in DECISIONS:
        for metric in ("cer", "f1"):
            part = frame[["loss", "noise", "noise_kind", "rate", "seed"]].copy()
            part["decision"], part["metric"] = decision, metric
            for end in ("", "_low", "_high"):
                part[f"value{end}"] = pd.to_numeric(frame[f"{decision}_{metric}{end}"], errors="coerce")
            long.append(part)
    data = pd.concat(long)
    stats = data.groupby(["decision", "metric", "loss", "noise", "noise_kind", "rate"], sort=False).agg(
        mean=("value", "mean"), sd=("value", "std"), low=("value_low", "mean"), high=("value_high", "mean"),
        seeds=("seed", "nunique")).reset_index()
    return data, stats


def _cell(stats, decision, metric, loss, noise, scale) -> tuple[str, str]:
    row = stats[(stats["decision"] == decision) & (stats["metric"] == metric) & (stats["loss"] == loss)
                & (stats["noise"] == noise)]
    if row.empty or np.isnan(row["mean"].iloc[0]):
        return "–", "–"
    r = row.iloc[0]
    digits = 1 if scale == 100 else 3
    sd = 0.0 if np.isnan(r["sd"]) else r["sd"]
    ci = "–" if np.isnan(r["low"]) else f"{scale * r['low']:.{digits}f}–{scale * r['high']:.{digits}f}"
    return f"{scale * r['mean']:.{digits}f} ± {scale * sd:.{digits}f}", ci


def results_table(stats) -> str:
    lines = ["| loss | train-label noise | seeds | CER % (argmax) | 95% CI | F1 (argmax) | 95% CI | "
             "CER % (default decision) | 95% CI | F1 (default decision) | 95% CI |", "|---" * 11 + "|"]
    losses = [x for x in LOSSES if x in set(stats["loss"])]
    noises = [x for x in NOISES if x in set(stats["noise"])] + sorted(set(stats["noise"]) - set(NOISES))
    for loss in losses:
        for noise in noises:
            seeds = stats[(stats["loss"] == loss) & (stats["noise"] == noise)]["seeds"]
            if seeds.empty:
                continue
            cells = [c for d in DECISIONS for m, k in (("cer", 100), ("f1", 1)) for c in _cell(stats, d, m, loss, noise, k)]
            lines.append(f"| {loss} | {noise} | {int(seeds.max())} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def degradation(data, kind: str, decision: str):
    """Per loss: mean over seeds and rates of (noisy − clean) CER and F1, with the sd over seeds."""
    import pandas as pd

    part = data[data["decision"] == decision].pivot_table(index=["loss", "seed", "noise_kind", "rate"],
                                                          columns="metric", values="value").reset_index()
    clean = part[part["rate"] == 0].set_index(["loss", "seed"])[["cer", "f1"]]
    noisy = part[(part["noise_kind"] == kind) & (part["rate"] > 0)]
    if noisy.empty or clean.empty:
        return pd.DataFrame()
    joined = noisy.merge(clean.add_suffix("_clean").reset_index(), on=["loss", "seed"]).dropna(subset=["cer_clean"])
    joined["d_cer"], joined["d_f1"] = joined["cer"] - joined["cer_clean"], joined["f1"] - joined["f1_clean"]
    per_seed = joined.groupby(["loss", "seed"])[["d_cer", "d_f1"]].mean()
    out = per_seed.groupby("loss").agg(d_cer=("d_cer", "mean"), d_cer_sd=("d_cer", "std"), d_f1=("d_f1", "mean"))
    # clean figures of the seeds that have this kind of noise: the "clean → noisy" pair is one set of seeds
    paired = joined.drop_duplicates(["loss", "seed"]).groupby("loss")[["cer_clean", "f1_clean"]].mean()
    out = out.join(paired.rename(columns={"cer_clean": "clean_cer", "f1_clean": "clean_f1"}))
    worst = joined[joined["rate"] == joined["rate"].max()].groupby("loss")[["cer", "f1"]].mean()
    return out.join(worst.rename(columns={"cer": "worst_cer", "f1": "worst_f1"})).sort_values("d_cer")


def answer(data, kind: str, decision: str) -> str:
    """Which loss's test CER rises least under ``kind`` noise, and what its F1 costs: from the numbers."""
    table = degradation(data, kind, decision)
    if len(table) < 2:
        return f"(needs clean and {kind}-noise runs of at least two losses)"
    best, runner = table.index[0], table.index[1]
    b = table.loc[best]
    rate = data[data["noise_kind"] == kind]["rate"].max()
    best_f1 = table["clean_f1"].idxmax()
    gap = table.loc[runner, "d_cer"] - b["d_cer"]
    sds = [sd for sd in (b["d_cer_sd"], table.loc[runner, "d_cer_sd"]) if not np.isnan(sd)]
    spread = max(sds) if sds else np.nan
    judged = ("is none: a tie" if abs(gap) < 1e-9 else
              f"is {'larger than' if gap > spread else 'within'} the seed-to-seed sd of these changes "
              f"({100 * spread:.1f} points)" if not np.isnan(spread) else "cannot be judged: one seed, no spread")
    others = ", ".join(f"{loss} {100 * r['d_cer']:+.1f}" for loss, r in table.iloc[1:].iterrows())
    cost = (f"the highest clean F1 of the {len(table)} losses ({b['clean_f1']:.3f})" if best == best_f1 else
            f"{b['clean_f1']:.3f} clean against {table.loc[best_f1, 'clean_f1']:.3f} for {best_f1}, the best")
    return (f"With {kind} noise in the training labels and the {'argmax' if decision == 'argmax' else 'default'} "
            f"decision, **{best}** degrades least: its test CER moves {100 * b['d_cer']:+.1f} points on average over "
            f"the noise rates ({100 * b['clean_cer']:.1f}% clean → {100 * b['worst_cer']:.1f}% at {rate:.0%}), against "
            f"{others} points for the others. The gap to {runner} ({100 * gap:.1f} points) {judged}. "
            f"Its F1-macro: {cost}; "
            f"{b['worst_f1']:.3f} at {rate:.0%} {kind} noise ({b['d_f1']:+.3f} on average under noise). "
            + safest_at_worst(table, best, kind, rate))


def safest_at_worst(table, best: str, kind: str, rate: float) -> str:
    """Degrading least is not being safest: which loss has the lowest test CER at the highest rate."""
    safest = table["worst_cer"].idxmin()
    s = table.loc[safest]
    return (f"At {rate:.0%} {kind} noise the lowest test CER is {safest}'s ({100 * s['worst_cer']:.1f}%, F1 "
            f"{s['worst_f1']:.3f})" + (": the same loss." if safest == best else
                                       f", against {100 * table.loc[best, 'worst_cer']:.1f}% for {best}: the loss "
                                       "that degrades least is not the safest one there."))


def plot(stats, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("symmetric", "miss") if k in set(stats["noise_kind"])] or sorted(set(stats["noise_kind"]) - {"none"})
    fig, axes = plt.subplots(2, max(1, len(kinds)), figsize=(4.5 * max(1, len(kinds)), 6.5), dpi=110, squeeze=False)
    colours = dict(zip(LOSSES, plt.get_cmap("tab10").colors))
    part = stats[stats["decision"] == "argmax"]
    for col, kind in enumerate(kinds):
        for row, (metric, label, scale) in enumerate((("cer", "test CER (%)", 100), ("f1", "test F1-macro", 1))):
            ax = axes[row][col]
            for loss in [x for x in LOSSES if x in set(part["loss"])]:
                line = part[(part["metric"] == metric) & (part["loss"] == loss)
                            & part["noise_kind"].isin([kind, "none"])].sort_values("rate")
                ax.errorbar(100 * line["rate"], scale * line["mean"], yerr=scale * line["sd"].fillna(0), marker="o",
                            capsize=3, color=colours[loss], label=loss)
            ax.set_xlabel(f"{kind} noise in train labels (%)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{kind} noise")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Test CER and F1 against train-label noise\n(argmax, mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def finder_section(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(not measured yet: run with --finder)"]
    lines = ["| seed | fold models | train labels checked | flips (k) | flagged | precision@k | precision@k/2 | "
             "flagged precision | flagged recall |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['folds']} × {r['epochs']} epochs | {r['n']} | {r['k']} | {r['flagged']} | "
              f"{r['precision_at_k']:.3f} | {r['precision_at_half_k']:.3f} | "
              f"{r['flagged_precision']:.3f} | {r['flagged_recall']:.3f} |" for r in rows]
    default = [r for r in rows if r.get("default_settings", True)]
    mean = float(np.mean([r["precision_at_k"] for r in default])) if default else float("nan")
    verdict = "met" if mean >= FINDER_AIM else "not met"
    described = (default or rows)[-1]  # the finder as it runs by default, unless only other settings ran
    text = [f"{described['source']}; {described['method']}.", "", *lines, "",
            f"Aim: precision@k ≥ {FINDER_AIM} at k = number of flips with the finder's default settings: "
            f"**{verdict}** (mean {mean:.3f} over {plural(len(default), 'seed')})."]
    ranked = [r for r in rows if "by_method" in r]
    if ranked:
        text += ["", "The same out-of-fold probabilities ranked by each method (flagged misses first, then the "
                 "rest flagged; precision against the injected flips):", "",
                 "| fold models | seed | " + " | ".join(f"{m}: p@k / p@k/2" for m in ranked[0]["by_method"]) + " |",
                 "|---|---|" + "---|" * len(ranked[0]["by_method"])]
        text += [f"| {r['folds']} × {r['epochs']} epochs | {r['seed']} | " + " | ".join(
            f"{p['precision_at_k']:.3f} / {p['precision_at_half_k']:.3f}" for p in r["by_method"].values()) + " |"
            for r in ranked]
    return text


def write_report(out: Path) -> str:
    """``label_noise.md`` and ``label_noise.png`` from ``label_noise.json`` (the latest recipe's rows)."""
    path = out / "label_noise.json"
    if not path.is_file():
        raise SystemExit(f"no results at {path}: train first (see --help)")
    rows = json.loads(path.read_text())
    recipe = _latest_recipe(rows)
    same = [r for r in rows if r["recipe"] == recipe]
    training, finder = [r for r in same if r["kind"] == "training"], [r for r in same if r["kind"] == "finder"]
    text = ["# Label noise: which loss degrades least when malignant training labels are wrong?", "",
            "Reproduce (`python benchmarks/label_noise.py --help`):", "", "```bash",
            reproduce_command(recipe, training, finder), "```", "",
            f"Recipe: {recipe['model']} at {recipe['image_size']} px, {plural(recipe['epochs'], 'epoch')}, batch "
            f"{recipe['batch_size']}, lr {recipe['lr']:g}, sampling {recipe.get('sampling', 'shuffle')}"
            + (" (per loss: shuffle for WCE, which weights classes itself; else sqrt_balanced)"
               if recipe.get("sampling") == "auto" else "") + f", device {recipe['device']}"
            + (f", at most {recipe['limit']} images" if recipe["limit"] else "")
            + (f", at most {recipe['max_steps']} steps per epoch" if recipe["max_steps"] else "")
            + ". Noise is injected into the **train split only** (`--label-noise`); every figure is on the "
            "clean test split. Mean ± sd over seeds; the 95% CI is the mean of the seeds' bootstrap intervals "
            f"({N_RESAMPLES} test-set resamples each). Default decision: each run's own (`rcl evaluate`).", ""]
    if training:
        data, stats = summary_frame(training)
        plot(stats, out / "label_noise.png")
        text += [results_table(stats), "", "![CER and F1 against noise rate](label_noise.png)", "",
                 "## In plain words", "", answer(data, "miss", "argmax"), "", answer(data, "miss", "default"), "",
                 answer(data, "symmetric", "argmax"), ""]
    text += ["## The label-issue finder on injected misses", "", *finder_section(finder), ""]
    markdown = "\n".join(text)
    (out / "label_noise.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--preset", default="isic2018")
    # Unset: TrainConfig's defaults, resolved for the device (the recipe a user gets without flags).
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated, of: {', '.join(LOSSES)}")
    parser.add_argument("--noises", default=",".join(NOISES), help="comma-separated KIND:RATE, or none")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run in parallel processes")
    parser.add_argument("--runs", default=None, help="folder for run folders")
    parser.add_argument("--reuse", nargs="*", default=[],
                        help="folders of finished runs (e.g. benchmarks/ham10000.py's) whose runs of the same "
                             "training are copied instead of trained again")
    parser.add_argument("--out", default=str(RESULTS), help="folder for label_noise.json/.csv/.md/.png")
    parser.add_argument("--finder", action="store_true",
                        help="measure the label-issue finder instead (its default folds and epochs; this recipe's model, size, device)")
    parser.add_argument("--folds", type=int, default=None, help="with --finder: fold models (default: the finder's)")
    parser.add_argument("--finder-epochs", type=int, default=None,
                        help="with --finder: epochs per fold model (default: the finder's)")
    parser.add_argument("--table", action="store_true", help="train nothing: write label_noise.md and .png")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(write_report(out))
        return 0
    if args.data != "synthetic" and not Path(args.data).exists():
        raise SystemExit(f"data not found at {args.data}: pass --data (see ../shared/data/README.md)")
    losses = [x.strip() for x in args.losses.split(",") if x.strip()]
    unknown = sorted(set(losses) - set(LOSSES))
    if unknown or args.jobs < 1:
        raise SystemExit(f"--losses: unknown {', '.join(unknown)}; choose from {', '.join(LOSSES)}" if unknown
                         else f"--jobs must be >= 1, got {args.jobs}")
    chosen = {k: v for k, v in (("model", args.model), ("image_size", args.image_size), ("epochs", args.epochs),
                                ("limit", args.limit), ("max_steps", args.max_steps)) if v is not None}
    base = TrainConfig(data=args.data, preset=args.preset, device=args.device, **chosen).check()
    recipe = recipe_of(base)
    if args.finder:
        rows = [finder_row(base, seed, args.folds, args.finder_epochs) for seed in args.seeds]
        record(rows, out)
        for row in rows:
            print(f"{row['name']}: precision@{row['k']} {row['precision_at_k']:.3f}, flagged recall "
                  f"{row['flagged_recall']:.3f}")
        return 0
    noises = [x.strip() for x in args.noises.split(",") if x.strip()]
    configs = benchmark_configs(base, losses, noises, args.seeds)
    for config in configs:
        config.check()  # a bad --noises entry fails here, before anything trains
    runs = (Path(args.runs) if args.runs else
            paths.home() / f"bench-label-noise-{base.model}-{base.image_size}px-{base.epochs}ep-{base.sampling}")
    failed = train_all(configs, runs, args.jobs, reuse=[Path(r) for r in args.reuse])
    if failed:
        print(f"not finished, run the command again: {', '.join(failed)}", file=sys.stderr)
    run_dirs = [runs / c.name for c in configs if c.name not in failed]
    record([run_row(d, recipe) for d in run_dirs], out)
    print(f"recorded {len(run_dirs)} runs in {out / 'label_noise.json'}; write the table with --table", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
