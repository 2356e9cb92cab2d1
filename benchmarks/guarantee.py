"""Does the guaranteed miss rate hold on real data? HAM10000, one plain CE model, 500 re-splits.

The guarantee is about the miss rate on *new patients*, not on one small test split (which has its
own sampling noise: a correct procedure "fails" a naive split check far more often than δ). So the
check uses a population proxy: the pool of every non-training image (the run's validation and test
probabilities, ~3,000 images); each re-split draws a random calibration subset from the pool
without replacement, calibrates the rule on it, and judges it by the miss rate on the *whole pool*
(the population the calibration cases were sampled from; the binomial bound is conservative for
sampling without replacement). The held-out rest is also shown, as the naive check.

For targets 2%, 5%, 10%, δ = 0.1, both modes, with and without a referral band: violation
frequency with its exact 95% interval beside δ (high-probability mode), mean risk (expected mode),
and the price on the held-out rest (F1-macro, false alarms among benign, referral rate).

    python benchmarks/guarantee.py [--data ../shared/data/ham10000] [--resplits 500] [--n-cal 1000]

Trains the model once into ``--runs`` (default ``$RCL_HOME/bench-guarantee``; skipped when the run
folder is finished), then writes ``benchmarks/results/guarantee.md`` and ``guarantee.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rcl import paths
from rcl.config import TrainConfig
from rcl.external import evaluate_external
from rcl.posthoc.guarantee import exact_interval, min_malignant_cases
from rcl.posthoc.guarantee_report import guarantee_pool, resplit_check
from rcl.runs import load_run
from rcl.train import run_training

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ham10000"
DEFAULT_SHIFTED = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = (0.02, 0.05, 0.10)
DELTA = 0.1
REFER_ABOVE = 0.5
RULES = (("high-probability", None), ("high-probability", REFER_ABOVE), ("expected", None),
         ("expected", REFER_ABOVE))


def train(data: Path, runs: Path, epochs: int) -> Path:
    config = TrainConfig(data=str(data), preset="isic2018", loss="ce", image_size=32, epochs=epochs, lr=2e-3,
                         seed=0, num_workers=0, name=f"guarantee-bench CE e{epochs}")
    out = runs / f"ham10000-ce-e{epochs}-seed0"
    if not (out / "metrics.json").is_file():
        run_training(config, out)
    return out


def resplit(probs, labels, taxonomy, mode, refer_above, target, n_cal, resplits) -> dict:
    check = resplit_check(probs, labels, taxonomy, target, mode, DELTA, refer_above, n_cal, resplits, seed=0)
    done = check["splits"] > 0
    return {"mode": mode, "rule": "two-way" if refer_above is None else f"refer below {refer_above:g}",
            "target": target, **check,
            "f1": np.nanmean(check["f1_macro"]) if done else None,
            "false_alarm": np.nanmean(check["false_alarm_rate"]) if done else None,
            "referral": np.nanmean(check["referral_rate"]) if done else None,
            "threshold": float(np.median(check["threshold"])) if done else None}


def table(results: list[dict]) -> str:
    lines = ["| mode | rule | target | splits (refused) | median threshold (band: its low edge) | pool CER > target: share (95% CI) | "
             "held-out CER > target | mean pool CER | mean held-out CER | F1-macro | false alarms | referred |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["splits"]:
            lines.append(f"| {r['mode']} | {r['rule']} | {r['target']:.0%} | 0 ({r['refused']}) |" + " – |" * 8)
            continue
        over = int((r["pool_cer"] > r["target"]).sum())
        low, high = exact_interval(over, r["splits"])
        lines.append(
            f"| {r['mode']} | {r['rule']} | {r['target']:.0%} | {r['splits']} ({r['refused']}) | {r['threshold']:.3f} | "
            f"{over / r['splits']:.1%} ({low:.1%}–{high:.1%}) | {(r['rest_cer'] > r['target']).mean():.1%} | "
            f"{r['pool_cer'].mean():.2%} | {r['rest_cer'].mean():.2%} | {r['f1']:.3f} | {r['false_alarm']:.1%} | "
            f"{r['referral']:.1%} |")
    return "\n".join(lines)


def price_summary(results: list[dict], target: float = 0.05) -> str:
    """The price of "CER <= target with 90% confidence", without and with the referral band."""
    two_way, band = (next(r for r in results if r["target"] == target and r["mode"] == "high-probability"
                          and (r["rule"] == "two-way") == plain) for plain in (True, False))
    if not two_way["splits"] or not band["splits"]:
        return ""
    return (f"The price of \"CER ≤ {target:.0%} with {1 - DELTA:.0%} confidence\" on this model: "
            f"{two_way['false_alarm']:.0%} of benign cases called malignant (F1-macro {two_way['f1']:.3f}). "
            f"A referral band below P(malignant) = {REFER_ABOVE:g} cuts false alarms to "
            f"{band['false_alarm']:.0%} (F1-macro of the answered cases {band['f1']:.3f}) by sending "
            f"{band['referral']:.0%} of all cases to a specialist. (A model that separates malignant from benign "
            "better would lower both; not measured here.)")


def shifted_section(run, shifted: Path) -> str:
    """Images from another distribution: the guarantee does not cover them; does the flag catch them?"""
    if not shifted.is_dir():
        return f"Shifted case skipped: {shifted} is not on this machine."
    ood = evaluate_external(run.path, str(shifted), ood_only=True)["ood"]
    return (f"## Shifted images: outside the guarantee\n\nThe guarantee assumes new images come from the "
            f"population of the calibration cases. {ood['n']} Brain Tumor MRI images (`{shifted.name}`) shown to "
            f"this HAM10000 model: the unfamiliar-image flag ({ood['method']} distance beyond the 95th "
            f"percentile of validation) fires on {ood['flagged_share']:.1%} of them ({ood['flagged']} of "
            f"{ood['n']}; about {ood['expected_share_in_distribution']:.0%} expected on in-distribution images). "
            "The flag voids the guarantee for that image (triage answers \"unfamiliar image: refer\"); an "
            "out-of-distribution image the flag missed would get a decision with no guarantee behind it.")


def compare_section(run, other: Path | None, n_cal: int, resplits: int, target: float = 0.05) -> str:
    """The same guarantee (CER ≤ target with 1 − δ confidence) priced on two models, side by side."""
    if other is None:
        return ""
    rows = []
    for source in (run, load_run(other)):
        probs, labels = guarantee_pool(source)
        test = source.metrics["test"]
        for refer_above in (None, REFER_ABOVE):
            r = resplit(probs, labels, source.taxonomy, "high-probability", refer_above, target, n_cal, resplits)
            rows.append(f"| {source.train['model']}, {source.train['image_size']} px, {source.train['epochs']} epochs "
                        f"(test F1-macro {test['f1_macro']:.3f} at argmax) | {r['rule']} | "
                        + (" – | – | – | – |" if r["f1"] is None else
                           f" {r['splits']} | {r['f1']:.3f} | {r['false_alarm']:.1%} | {r['referral']:.1%} |"))
    return (f"## A better model lowers the price\n\nThe same guarantee (CER ≤ {target:.0%} with "
            f"{1 - DELTA:.0%} confidence, high-probability mode, {resplits} re-splits of {n_cal} calibration images) on the "
            f"model above and on `{other.name}`, a better model on the same split (`--compare`). Price: means over "
            "the re-splits on the held-out rest.\n\n| model | rule | splits | F1-macro | false alarms | referred |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(4.2 * len(TARGETS), 4), sharey=False)
    for ax, target in zip(axes, TARGETS):
        chosen = [r for r in results if r["target"] == target]
        ax.boxplot([r["pool_cer"] * 100 for r in chosen], whis=(5, 95), showfliers=False, showmeans=True)
        ax.set_xticks(range(1, len(chosen) + 1),
                      [f"{'HP' if r['mode'] == 'high-probability' else 'E'}\n{r['rule']}"
                       + ("" if r["splits"] else "\n(all refused)") for r in chosen], fontsize=7)
        ax.axhline(target * 100, color="crimson", lw=1.2, label=f"target {target:.0%}")
        ax.set_title(f"target {target:.0%}: pool CER over {chosen[0]['splits']} re-splits", fontsize=9)
        ax.set_ylabel("CER on the whole pool (%)")
        ax.legend(fontsize=7)
    fig.suptitle("HAM10000, CE small_cnn: guaranteed rules (HP: δ=0.1; E: expected), whiskers 5–95%", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resplits", type=int, default=500)
    parser.add_argument("--n-cal", type=int, default=1000)
    parser.add_argument("--compare", type=Path, default=None,
                        help="a better run on the same data and split (e.g. `rcl train --data HAM --preset isic2018 "
                             "--loss ce --seed 0 --out DIR`): its price for the same guarantee, side by side")
    parser.add_argument("--shifted", type=Path, default=DEFAULT_SHIFTED,
                        help="images of another distribution for the unfamiliar-image check")
    args = parser.parse_args()
    run = load_run(train(args.data, args.runs or paths.home() / "bench-guarantee", args.epochs))
    taxonomy = run.taxonomy
    probs, labels = guarantee_pool(run)
    n_malignant = int(np.asarray(taxonomy.is_critical)[labels].sum())
    results = [resplit(probs, labels, taxonomy, mode, refer_above, target, args.n_cal, args.resplits)
               for target in TARGETS for mode, refer_above in RULES]
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "guarantee.png")
    needed = ", ".join(f"{t:.0%}: {min_malignant_cases(t, 'high-probability', DELTA)}" for t in TARGETS)
    compare_flag = " --compare RUN" if args.compare else ""
    compare_note = (" (RUN: `rcl train --data ../shared/data/ham10000 --preset isic2018 --loss ce --seed 0 --out RUN`, "
                    "the CPU defaults)" if args.compare else "")
    text = f"""# Guaranteed miss rate on HAM10000 (population-proxy check)

Produced by `python benchmarks/guarantee.py --resplits {args.resplits} --n-cal {args.n_cal} --epochs {args.epochs}{compare_flag}`{compare_note}:
one plain cross-entropy `small_cnn` trained from scratch at 32 px for {args.epochs} epochs (AdamW lr 0.002,
lesion-grouped split, seed 0, CPU; test F1-macro {run.metrics['test']['f1_macro']:.3f}, argmax CER
{run.metrics['test']['cer']:.1%}). Pool = every non-training image: {labels.size} images, {n_malignant}
malignant (validation + test softmax probabilities). Each of {args.resplits} re-splits draws {args.n_cal}
calibration images from the pool at random (without replacement) and calibrates the rule on them;
the rest ({labels.size - args.n_cal} images) gives the price.

Decision rules (`rcl guarantee`): malignant iff P(malignant) ≥ threshold (two-way), or with a referral band
below {REFER_ABOVE:g} (three-way: malignant at P ≥ {REFER_ABOVE:g}, refer a calibrated band, benign below; its CER
counts the malignant cases the model answers). HP = high-probability mode (Learn-then-Test, exact binomial,
δ = {DELTA:g}: P(CER > target) ≤ δ); E = expected mode (conformal risk control: E[CER] ≤ target).

How to read it: the guarantee is about new patients, so each rule is judged by its CER on the **whole pool**
(the population the calibration cases were drawn from). For HP the share of re-splits whose pool CER exceeds
the target must stay at or below δ = {DELTA:g} (exact 95% interval shown); for E the **mean** CER must stay at or
below the target. The "held-out CER > target" column is the naive check on the rest of the pool: it has its
own sampling noise on a few hundred malignant cases, so it exceeds δ even for a correct rule. The price
columns (F1-macro of answered cases, false alarms among all benign, referral rate among all cases) are means
over the re-splits on the held-out rest. Malignant calibration cases needed with zero misses (HP, δ = {DELTA:g}):
{needed}; splits with fewer are refused and counted.

{table(results)}

{price_summary(results)}

![pool CER across re-splits](guarantee.png)

Figure: CER on the whole pool of each re-split's rule (boxes: quartiles, triangle: mean, whiskers 5–95%), against the
target line; decision rules as labelled, each box rests on the number of re-splits in the table.

{compare_section(run, args.compare, args.n_cal, args.resplits)}

{shifted_section(run, args.shifted)}
"""
    (RESULTS / "guarantee.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
