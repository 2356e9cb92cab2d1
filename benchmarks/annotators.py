"""Several annotators: does training on their votes (soft targets) find more true malignancies
than training on their majority label?

The synthetic set knows every image's true class (its folder), so three simulated readers can be
laid over it: on a malignant image each reader independently calls it a nevus with probability
``--miss`` (the dangerous disagreement), on a benign image each names another benign class with
probability ``--confuse``. With ``--miss 0.35`` about 28% of malignant images get a benign
*majority* label, while their vote share still says "malignant" a third or two thirds of the time.

For each loss (CE, RCL-proposed) × targets (soft, majority) × seed, one small CPU run; the table
gives the test CER against the majority label (what ``metrics.json`` reports), the expected CER
under the votes (``metrics.json["annotators"]``), and CER and F1-macro against the *true* classes
(argmax), with the mean over seeds.

    python benchmarks/annotators.py [--seeds 0,1] [--limit 1500] [--epochs 6] [--miss 0.35]

Writes ``benchmarks/results/annotators.md``; runs go to ``$RCL_HOME/bench-annotators``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from rcl import paths
from rcl.answers import run_answers
from rcl.config import TrainConfig
from rcl.data.synthetic import materialize
from rcl.metrics import evaluate
from rcl.taxonomy import preset
from rcl.train import run_training

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
READERS = ("reader1", "reader2", "reader3")
LOSSES = ("ce", "rcl")


def readers_csv(folder: Path, miss: float, confuse: float, seed: int = 0) -> Path:
    """The synthetic images (true class = folder name) with three simulated readers' labels."""
    taxonomy = preset("isic2018")
    root = materialize()
    images = sorted(p for p in root.rglob("*.png"))
    truth = [p.parent.name for p in images]
    rng = np.random.default_rng(seed)
    benign = list(taxonomy.benign)
    frame = pd.DataFrame({"path": [str(p) for p in images]})
    for reader in READERS:
        votes = []
        for cls in truth:
            if cls in taxonomy.malignant:
                votes.append("NV" if rng.random() < miss else cls)
            elif rng.random() < confuse:
                votes.append(rng.choice([b for b in benign if b != cls]))
            else:
                votes.append(cls)
        frame[reader] = votes
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "readers.csv", index=False)
    return folder / "readers.csv"


def run(csv: Path, runs: Path, loss: str, targets: str, seed: int, limit: int, epochs: int) -> dict:
    out = runs / f"{loss}-{targets}-s{seed}"
    config = TrainConfig(data=str(csv), preset="isic2018", label_columns=list(READERS), targets=targets, loss=loss,
                         model="small_cnn", image_size=32, epochs=epochs, limit=limit, seed=seed, device="cpu",
                         name=f"annotators {loss} {targets} s{seed}")
    if not (out / "metrics.json").is_file():
        run_training(config, out)
    metrics = json.loads((out / "metrics.json").read_text())
    taxonomy = preset("isic2018")
    with np.load(out / "predictions.npz") as stored:
        ids, logits = stored["test_ids"], stored["test_logits"]
    truth = [taxonomy.index(Path(i).parent.name) for i in ids]  # the synthetic set's folder is the true class
    true_eval = evaluate(truth, logits.argmax(axis=1), taxonomy)
    matrix = json.loads((out / "config.json").read_text())["matrix"]
    decided = evaluate(truth, run_answers(metrics, matrix, taxonomy, logits).decisions, taxonomy)
    return {"loss": loss, "targets": targets, "seed": seed, "cer_majority": metrics["test"]["cer"],
            "expected_cer": metrics["annotators"]["argmax"]["value"], "cer_true": true_eval.cer,
            "f1_true": true_eval.f1_macro, "cer_true_default": decided.cer, "f1_true_default": decided.f1_macro,
            "n_test": int(len(ids)), "malignant_true": int(sum(taxonomy.is_critical[t] for t in truth))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--miss", type=float, default=0.35)
    parser.add_argument("--confuse", type=float, default=0.1)
    args = parser.parse_args()
    runs = paths.home() / "bench-annotators"
    csv = readers_csv(runs / "data", args.miss, args.confuse)
    rows = [run(csv, runs, loss, targets, int(seed), args.limit, args.epochs)
            for seed in args.seeds.split(",") for loss in LOSSES for targets in ("majority", "soft")]
    table = pd.DataFrame(rows)
    agreement = json.loads((runs / f"ce-soft-s{rows[0]['seed']}" / "config.json").read_text())["dataset"]["annotators"]
    columns = ["cer_majority", "expected_cer", "cer_true", "f1_true", "cer_true_default", "f1_true_default"]
    mean = table.groupby(["loss", "targets"], sort=False)[columns].mean()
    lines = ["# Several annotators: soft targets against the majority label (synthetic, simulated readers)", "",
             f"Command: `python benchmarks/annotators.py --seeds {args.seeds} --limit {args.limit} --epochs "
             f"{args.epochs} --miss {args.miss} --confuse {args.confuse}` (small_cnn, 32 px, CPU).", "",
             f"Readers: {len(READERS)}; each calls a malignant image NV with probability {args.miss}, names another "
             f"benign class on a benign image with probability {args.confuse}. Agreement on the {agreement['samples']} "
             f"images used: unanimous {agreement['unanimous_share']:.1%}, Fleiss' kappa {agreement['fleiss_kappa']:.3f} "
             f"(classes), {agreement['fleiss_kappa_superclass']:.3f} (benign/malignant); "
             f"{agreement['majority_benign_with_malignant_vote']} images benign by majority with a malignant vote.", "",
             "Test split. CER and F1 against the true classes are what the readers could not see: under argmax, "
             "and under the run's default decision (Bayes under its matrix, scale tuned on validation for RCL).", "",
             "| loss | targets | seed | CER (majority label) | expected CER (votes) | CER (truth) | F1-macro (truth) "
             "| CER (truth, default decision) | F1-macro (truth, default decision) |",
             "|---|---|---|---|---|---|---|---|---|"]
    header = ["", "Mean over seeds:", "", "| loss | targets | CER (majority label) | expected CER (votes) | CER (truth) "
              "| F1-macro (truth) | CER (truth, default decision) | F1-macro (truth, default decision) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['targets']} | {r['seed']} | "
                     + " | ".join(f"{r[c]:.3f}" for c in columns) + " |")
    lines += header
    for (loss, targets), r in mean.iterrows():
        lines.append(f"| {loss} | {targets} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |")
    lines += ["", f"Test split: {rows[0]['n_test']} images, {rows[0]['malignant_true']} truly malignant."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "annotators.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
