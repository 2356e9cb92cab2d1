"""The paper's ablation on real HAM10000 (= ISIC 2018 Task 3 training set) at a CPU-feasible size.

Trains the baselines (CE, WCE, Focal, LS) and the 7 RCL configurations over N seeds with a
lesion-grouped split, then writes ``benchmarks/results/ham10000.md`` (and ``.csv``) with the
paper's ISIC 2018 ResNet-50 numbers beside ours, and the paper's headline comparison: how much
RCL-Proposed cuts CER relative to Focal, and how much of Focal's F1 it keeps.

Then, from the stored predictions (no retraining), two more tables:
- decision rules: each loss with plain argmax vs a Bayes minimum-risk decision under the
  Proposed matrix (α=5, β=20) vs a decision tuned on validation to a CER target;
- selection rules: the checkpoint chosen by best F1 vs F1 under a CER cap vs lowest expected cost,
  re-applied to each run's stored per-epoch logits.

    python benchmarks/ham10000.py [--data ../shared/data/ham10000] [--seeds 3] [--epochs N] [--model M]

Without --model/--image-size/--epochs/--lr it uses TrainConfig's defaults: the CPU recipe of
``benchmarks/results/cpu_recipe.md`` on a CPU.

Run folders go to ``--runs`` (default ``$RCL_HOME/bench-ham10000-MODEL-SIZEpx-EPOCHSep-SAMPLING``, never into the repository);
an interrupted benchmark resumes, skipping finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from rcl import paper, paths
from rcl.ablation import ablation_configs, method_of, run_ablation
from rcl.calibration import apply_temperature, fit_temperature
from rcl.config import TrainConfig
from rcl.decision import decide
from rcl.decision_scale import DEFAULT_SCALES, scaled_matrix, tune_decision_scale
from rcl.metrics import evaluate, pareto_front
from rcl.runs import load_run
from rcl.selection import select_epoch
from rcl.severity import severity_matrix
from rcl.text import pct, plural
from rcl.uncertainty import bootstrap_ci

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ham10000"
RESULTS = ROOT / "benchmarks" / "results"

# The paper's setting closest to this benchmark: ISIC 2018, ResNet-50 at 224 px, ImageNet-pretrained.
PAPER_SETTING = ("ISIC 2018", "ResNet-50")


def trained_on(runs: Path) -> str:
    """The devices (and precision) the finished runs trained on, from their config.json."""
    found = set()
    for config in runs.glob("*/config.json"):
        saved = json.loads(config.read_text())
        found.add(f"{saved.get('device', '?')} ({saved.get('precision', '?')})")
    return ", ".join(sorted(found)) or "?"


def headline(summary) -> str:
    rows = summary.set_index("method")
    if not {"Focal", "RCL-Proposed"} <= set(rows.index):
        return ""
    focal, rcl = rows.loc["Focal"], rows.loc["RCL-Proposed"]
    cut = 1 - rcl["cer_mean"] / focal["cer_mean"] if focal["cer_mean"] > 0 else None
    kept = rcl["f1_macro_mean"] / focal["f1_macro_mean"]
    claim = paper.headline(*PAPER_SETTING)
    return (f"RCL-Proposed vs Focal: CER {pct(focal['cer_mean'])} → {pct(rcl['cer_mean'])} "
            f"(relative cut {pct(cut)}; paper: {pct(claim['cer_cut'])}), F1-macro kept {pct(kept)} of Focal's "
            f"(goal ≥ 90%; paper: {pct(claim['f1_kept'])}).")


# The combinations compared on stored predictions: which losses, selection and decision rules.
ANALYSED_METHODS = ("CE", "WCE", "Focal", "LS", "RCL-Proposed", "RCL-Sparse")
SELECTIONS = {"best F1": ("f1", {}), "F1 with val CER ≤ 10%": ("f1_cer_cap", {"cer_cap": 0.10}),
              "lowest expected cost": ("expected_cost", {})}
TARGET_CER = 0.08  # the goal: a point with CER ≤ 8% at F1-macro ≥ 0.55


def decisions(val_probs, val_labels, taxonomy, matrix) -> dict[str, np.ndarray | None]:
    """Decision rules, each a matrix for the Bayes rule (None = argmax), chosen on validation only."""
    tuned = tune_decision_scale(val_probs, val_labels, taxonomy, matrix, target_cer=TARGET_CER)
    return {"argmax": None, "Bayes, Proposed matrix": matrix,
            f"Bayes, scale tuned for val CER ≤ {TARGET_CER:.0%}": scaled_matrix(matrix, tuned["scale"])}


def combination_rows(run_dirs: list[Path]) -> list[dict]:
    """Test CER/F1 for every (run, selection rule, decision rule), from stored per-epoch logits."""
    rows = []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        taxonomy, history = run.taxonomy, run.history()
        matrix = severity_matrix(taxonomy, 5, 20)
        labels = {split: run.predictions(split)["labels"] for split in ("val", "test")}
        with np.load(run.path / "epochs.npz") as saved:
            logits = {split: saved[f"{split}_logits"] for split in ("val", "test")}
        for selection, (rule, kwargs) in SELECTIONS.items():
            epoch = select_epoch(history, rule, **kwargs)
            temperature = fit_temperature(logits["val"][epoch], labels["val"])
            probs = {split: apply_temperature(logits[split][epoch], temperature) for split in logits}
            for decision, decision_matrix in decisions(probs["val"], labels["val"], taxonomy, matrix).items():
                predicted = probs["test"].argmax(axis=1) if decision_matrix is None else decide(probs["test"], decision_matrix)
                result = evaluate(labels["test"], predicted, taxonomy)
                ci = bootstrap_ci(labels["test"], predicted, taxonomy, n_resamples=1000, seed=0)
                rows.append({"method": method_of(run.id), "selection": selection, "decision": decision,
                             "cer": result.cer, "f1": result.f1_macro, "cer_low": ci["cer"]["low"],
                             "cer_high": ci["cer"]["high"], "f1_low": ci["f1_macro"]["low"],
                             "f1_high": ci["f1_macro"]["high"]})
    return rows


def frontier_section(rows: list[dict], plot_path: Path) -> str:
    """Mean over seeds per combination, the Pareto set, and which combinations are dominated."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    keys = ["method", "selection", "decision"]
    stats = frame.groupby(keys, sort=False).agg(cer=("cer", "mean"), cer_std=("cer", "std"), f1=("f1", "mean"),
                                                f1_std=("f1", "std"), cer_low=("cer_low", "mean"),
                                                cer_high=("cer_high", "mean"), f1_low=("f1_low", "mean"),
                                                f1_high=("f1_high", "mean"), seeds=("cer", "count")).reset_index()
    front = set(pareto_front(stats[["cer", "f1"]].to_numpy()))
    stats["pareto"] = [i in front for i in range(len(stats))]
    lines = ["| loss | selection | decision | seeds | test CER (%) | 95% CI | test F1-macro | 95% CI | Pareto |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in stats.sort_values("cer").iterrows():
        lines.append(f"| {r['method']} | {r['selection']} | {r['decision']} | {r['seeds']} | "
                     f"{100 * r['cer']:.1f} ± {100 * np.nan_to_num(r['cer_std']):.1f} | "
                     f"{100 * r['cer_low']:.1f}–{100 * r['cer_high']:.1f} | {r['f1']:.3f} ± {np.nan_to_num(r['f1_std']):.3f} | "
                     f"{r['f1_low']:.3f}–{r['f1_high']:.3f} | {'yes' if r['pareto'] else ''} |")
    words = []
    for _, r in stats[~stats["pareto"]].iterrows():
        better = stats[(stats["cer"] <= r["cer"]) & (stats["f1"] >= r["f1"]) & stats["pareto"]]
        if len(better):
            b = better.iloc[0]
            words.append(f"- {r['method']} · {r['selection']} · {r['decision']} (CER {r['cer']:.1%}, F1 {r['f1']:.3f}) "
                         f"is dominated by {b['method']} · {b['selection']} · {b['decision']} "
                         f"(CER {b['cer']:.1%}, F1 {b['f1']:.3f}).")
    goal = stats[(stats["cer"] <= TARGET_CER) & (stats["f1"] >= 0.55)]
    best = goal.sort_values("f1").iloc[-1] if len(goal) else None
    goal_text = (f"Goal (CER ≤ 8% at F1-macro ≥ 0.55): met by {len(goal)} combination(s); the highest F1 among them: "
                 f"{best['method']} · {best['selection']} · {best['decision']} (test CER {best['cer']:.1%}, 95% CI "
                 f"{best['cer_low']:.1%}–{best['cer_high']:.1%}; F1-macro {best['f1']:.3f}, 95% CI "
                 f"{best['f1_low']:.3f}–{best['f1_high']:.3f})." if len(goal) else
                 "Goal (CER ≤ 8% at F1-macro ≥ 0.55): not met by any combination in this setting; the "
                 "Pareto rows above are the best trade-offs reached.")
    plot_frontier(stats, plot_path)
    return "\n".join([*lines, "", goal_text, "", f"![Pareto frontier]({plot_path.name})", "",
                      "Dominated combinations, in plain words:", "", *words, ""])


def plot_frontier(stats, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    markers = {d: m for d, m in zip(stats["decision"].unique(), "osD^v")}
    colours = {m: c for m, c in zip(stats["method"].unique(), plt.get_cmap("tab10").colors)}
    for _, r in stats.iterrows():
        ax.errorbar(100 * r["cer"], r["f1"], xerr=[[100 * (r["cer"] - r["cer_low"])], [100 * (r["cer_high"] - r["cer"])]],
                    yerr=[[r["f1"] - r["f1_low"]], [r["f1_high"] - r["f1"]]], fmt=markers[r["decision"]],
                    color=colours[r["method"]], alpha=0.9 if r["pareto"] else 0.35, ms=6, lw=0.8)
    front = stats[stats["pareto"]].sort_values("cer")
    ax.plot(100 * front["cer"], front["f1"], "k--", lw=1, label="Pareto frontier")
    for method, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=method)
    for decision, marker in markers.items():
        ax.plot([], [], marker, color="grey", label=decision)
    ax.set_xlabel("test CER (%) — lower is safer")
    ax.set_ylabel("test F1-macro")
    ax.set_title("HAM10000: training loss × selection rule × decision rule (mean of seeds, 95% bootstrap CI)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def matched_f1_section(run_dirs: list[Path]) -> str:
    """The decision issue's comparison at matched F1, per seed, everything chosen on validation.

    RCL-Proposed + argmax sets the reference validation F1. For "CE + Bayes" and "RCL-Proposed +
    Bayes", the decision matrix 1 + s·(M − 1) (M: α=5, β=20) takes the scale s whose validation
    F1 is closest to that reference; the table then reports test CER and F1 of each.
    """
    by_seed: dict[str, dict[str, Path]] = {}
    for d in run_dirs:
        method, seed = d.name.rsplit("-seed", 1)
        by_seed.setdefault(seed, {})[method] = d
    rows = []
    for runs in by_seed.values():
        if not {"CE", "RCL-Proposed"} <= set(runs):
            continue
        arrays = {m: {s: load_run(runs[m]).predictions(s) for s in ("val", "test")} for m in ("CE", "RCL-Proposed")}
        taxonomy = load_run(runs["CE"]).taxonomy
        matrix = severity_matrix(taxonomy, 5, 20)
        reference = arrays["RCL-Proposed"]
        target_f1 = evaluate(reference["val"]["labels"], reference["val"]["probs"].argmax(1), taxonomy).f1_macro
        rows.append(("RCL-Proposed + argmax", None, reference["test"], None))
        for method in ("CE", "RCL-Proposed"):
            val = arrays[method]["val"]
            gaps = [abs(evaluate(val["labels"], decide(val["probs"], scaled_matrix(matrix, s)), taxonomy).f1_macro - target_f1)
                    for s in DEFAULT_SCALES]  # includes s = 0, plain argmax
            scale = DEFAULT_SCALES[int(np.argmin(gaps))]
            rows.append((f"{method} + Bayes (scale matched on val F1)", scale, arrays[method]["test"],
                         scaled_matrix(matrix, scale)))
    if not rows:
        return "(needs finished CE and RCL-Proposed runs of the same seed)\n"
    table: dict[str, list[tuple[float, float, float]]] = {}
    for name, scale, test, decision_matrix in rows:
        predicted = test["probs"].argmax(1) if decision_matrix is None else decide(test["probs"], decision_matrix)
        result = evaluate(test["labels"], predicted, taxonomy)
        table.setdefault(name, []).append((result.cer, result.f1_macro, scale))
    lines = ["| training loss + decision | seeds | decision scale s | test CER (%) | test F1-macro |", "|---|---|---|---|---|"]
    for name, values in table.items():
        cer, f1 = (np.array(v, dtype=float) for v in list(zip(*values))[:2])
        scales = ", ".join("—" if s is None else f"{s:.3g}" for s in (v[2] for v in values))
        ddof = 1 if len(values) > 1 else 0  # sample std, as in the ablation table
        lines.append(f"| {name} | {len(values)} | {scales} | {100 * cer.mean():.1f} ± {100 * cer.std(ddof=ddof):.1f} | "
                     f"{f1.mean():.3f} ± {f1.std(ddof=ddof):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--runs", default=None,
                        help="folder for run folders (default $RCL_HOME/bench-ham10000-MODEL-SIZEpx-EPOCHSep-SAMPLING)")
    parser.add_argument("--seeds", type=int, default=3)
    # Unset: TrainConfig's defaults, i.e. the recipe a user gets without flags (cpu_recipe.md).
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--recipe", default=None,
                        help="a JSON file of TrainConfig fields over the defaults (e.g. cpu_recipe.py --best's output)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (with --jobs)")
    parser.add_argument("--summarise-only", action="store_true",
                        help="train nothing: write the tables from the runs finished so far")
    args = parser.parse_args()

    if not Path(args.data).is_dir():
        raise SystemExit(f"HAM10000 not found at {args.data}: pass --data (see ../shared/data/README.md)")
    recipe = json.loads(Path(args.recipe).read_text()) if args.recipe else {}
    recipe.pop("recipe", None)  # cpu_recipe.py --best names the recipe beside its fields
    chosen = {**recipe, **{k: v for k, v in (("model", args.model), ("image_size", args.image_size),
                                             ("epochs", args.epochs), ("lr", args.lr)) if v is not None}}
    base = TrainConfig(data=args.data, preset="isic2018", patience=None, select="f1", device=args.device,
                       **chosen).check()
    runs = (Path(args.runs) if args.runs else
            paths.home() / f"bench-ham10000-{base.model}-{base.image_size}px-{base.epochs}ep-{base.sampling}")
    configs = ablation_configs(base, range(args.seeds))
    if args.jobs > 1 and not args.summarise_only:
        from parallel import train_all

        train_all(configs, runs, args.jobs, args.threads)
    result = run_ablation(configs, runs, train=not args.summarise_only)
    summary = result["summary"]

    paper_table = ["| method | paper CER (%) | paper F1-macro |", "|---|---|---|"]
    paper_table += [f"| {r['method']} | {100 * r['cer']:.2f} | {r['f1_macro']:.3f} |"
                    for r in paper.published(*PAPER_SETTING)]
    text = "\n".join([
        "# HAM10000 (ISIC 2018 Task 3) ablation",
        "",
        "Reproduce (finished runs are skipped, so a larger `--seeds` adds seeds to these):",
        "",
        f"    python benchmarks/ham10000.py --data {os.path.relpath(args.data, ROOT)} --seeds {args.seeds} "
        f"--jobs {args.jobs}{f' --threads {args.threads}' if args.threads else ''}"
        + (f" --recipe {args.recipe}" if args.recipe else "")
        + "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("model", args.model), ("image_size", args.image_size),
                                                               ("epochs", args.epochs), ("lr", args.lr)) if v is not None),
        "",
        f"Produced by `benchmarks/ham10000.py`: {base.model} from scratch (no ImageNet weights) at {base.image_size} px, "
        f"{base.epochs} epochs, AdamW lr {base.lr:g} (weight decay {base.weight_decay:g}), batch {base.batch_size}, "
        f"cosine schedule, augmentation {base.augment}, sampling {base.sampling}"
        + (" (shuffle for WCE, which weights classes itself; sqrt_balanced for the others)" if base.sampling == "auto"
           else "") + f", weight average {base.ema or 'none'}, {plural(args.seeds, 'seed')} "
        f"requested, lesion-grouped 70/15/15 split, checkpoint chosen by validation F1, trained on "
        f"{trained_on(runs)}. Test-split figures, mean ± std over the seeds finished (the seeds column; std is 0 "
        "for one seed).",
        "",
        result["markdown"],
        headline(summary),
        "",
        "## The paper's figures (ISIC 2018, ResNet-50, ImageNet-pretrained, 224 px)",
        "",
        *paper_table,
        "",
        "The paper fine-tunes a pretrained ResNet-50 at 224 px on a GPU; this table trains a small CNN from "
        "scratch at low resolution, so absolute figures are not comparable: compare the "
        "direction and relative size of the CER/F1 trade-off between losses.",
        "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_dirs = sorted(d for d in runs.iterdir() if (d / "metrics.json").is_file() and method_of(d.name) in ANALYSED_METHODS)
    rows = combination_rows(run_dirs)
    text += "\n".join([
        "",
        "## Training the costs in, or deciding with them? (at matched F1)",
        "",
        "\"CE + Bayes decision\" against \"RCL-Proposed + argmax\" and \"RCL + Bayes decision\": the Bayes "
        "decision uses the Proposed matrix scaled as 1 + s·(M − 1), with s chosen on validation so that validation "
        "F1 matches RCL-Proposed + argmax. Stored test probabilities of the checkpoints chosen by validation F1.",
        "",
        matched_f1_section(run_dirs),
        "## The full frontier: training loss × checkpoint selection × decision rule",
        "",
        frontier_section(rows, RESULTS / "ham10000_frontier.png"),
    ])
    ood_runs = [d for d in run_dirs if method_of(d.name) in ("CE", "RCL-Proposed")]
    brain = DEFAULT_DATA.parent / "brain-tumor-mri"
    if ood_runs and brain.is_dir():
        from rcl.external import evaluate_external

        results = {d.name: evaluate_external(d, str(brain), ood_only=True)["ood"] for d in ood_runs}
        (RESULTS / "ham10000_ood_brain_mri.json").write_text(json.dumps(results, indent=2))
        in_dist = {d.name: load_run(d).metrics["ood"]["test_flagged"] for d in ood_runs}
        text += "\n".join([
            "",
            "## Unfamiliar images: Brain Tumor MRI shown to HAM10000 models",
            "",
            "`rcl evaluate RUN --data ../shared/data/brain-tumor-mri --ood-only` (full output: "
            "`ham10000_ood_brain_mri.json`). Threshold set on validation to flag about 5% of HAM10000 images.",
            "",
            "| run | Brain MRI flagged | HAM10000 test flagged |",
            "|---|---|---|",
            *[f"| {name} | {r['flagged_share']:.1%} of {r['n']} | {in_dist[name]:.1%} |" for name, r in results.items()],
            "",
        ])
    (RESULTS / "ham10000.md").write_text(text)
    summary.to_csv(RESULTS / "ham10000.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
