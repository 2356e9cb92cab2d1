"""Does a start the project trains itself help? Each loss fine-tuned from the CE model of the same
split, against the same loss trained from scratch, on real HAM10000.

No ImageNet weights can be downloaded here, but the data at hand can train a start once: the
ablation's CE run. The app's loop is "move α/β, launch training": from scratch every launch costs
the full recipe (24 epochs); from that CE model (``--weights RUN/model.safetensors``) a launch
costs a few epochs. This benchmark measures whether the short fine-tune reaches the same CER and
F1 as the full run, for RCL-Proposed and Focal (the paper's headline pair), over a few fine-tune
schedules. The CE start is the run of the *same seed*: the seed draws the split, so the start
never saw the fine-tune's validation or test images.

    RCL_HOME=/tmp/rclham python benchmarks/finetune_start.py \\
        --from /tmp/rclham/bench-ham10000-cnn4-40px-24ep-auto --seeds 0 1 2 --jobs 2 --threads 1

``--from`` is the folder of ``benchmarks/ham10000.py`` (its ``CE-seedN`` runs are the starts, each
fine-tuned as ``rcl.fine_tune_fields`` says, on its data and split; its other runs the from-scratch side); fine-tunes train into ``$RCL_HOME/bench-finetune-start`` and a
finished one is skipped. Writes ``benchmarks/results/finetune_start.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks.ham10000 import RESULTS, ROOT  # noqa: E402
from benchmarks.parallel import train_all  # noqa: E402
from rcl import paths  # noqa: E402
from rcl.ablation import ablation_configs, method_of  # noqa: E402
from rcl.config import TrainConfig  # noqa: E402
from rcl.fine_tune import FINE_TUNE, fine_tune_fields  # noqa: E402
from rcl.runs import load_run  # noqa: E402
from rcl.text import pct  # noqa: E402

RESULT = RESULTS / "finetune_start.md"
METHODS = ("RCL-Proposed", "Focal")
# Fine-tune schedules (epochs, AdamW learning rate), each a cosine schedule run to its end.
SCHEDULES = {"ft6-lr3e-4": (6, 3e-4), "ft6-lr1e-3": (6, 1e-3), "ft12-lr3e-4": (12, 3e-4)}


def finetune_configs(start_runs: Path, seeds: list[int]) -> list[TrainConfig]:
    """Every (seed, method, schedule): the CE run of that seed fine-tuned the library's way
    (``fine_tune_fields``: its data, split, network and weights) with the method's loss and α/β."""
    configs = []
    for seed in seeds:
        folder = start_runs / f"CE-seed{seed}"
        if not (folder / "metrics.json").is_file():
            raise SystemExit(f"--from: {folder} is not a finished run (train it with benchmarks/ham10000.py first)")
        start = load_run(folder)
        base = TrainConfig.from_dict({**start.train, **fine_tune_fields(start), "sampling": "auto", "name": None})
        for config in ablation_configs(base, [seed]):
            if method_of(config.name) in METHODS:
                configs += [replace(config, epochs=epochs, lr=lr, name=f"{method_of(config.name)}-{schedule}-seed{seed}")
                            for schedule, (epochs, lr) in SCHEDULES.items()]
    return configs


def _row(run: Path, start: str) -> dict | None:
    if not (run / "metrics.json").is_file():
        return None
    metrics = json.loads((run / "metrics.json").read_text())
    train = json.loads((run / "config.json").read_text())["train"]
    decided = metrics["decision"]["test"]
    return {"start": start, "epochs": train["epochs"], "lr": train["lr"], "cer": metrics["test"]["cer"],
            "f1": metrics["test"]["f1_macro"], "decision": metrics["decision"]["rule"],
            "decided_cer": decided["cer"], "decided_f1": decided["f1_macro"], "seconds": metrics["seconds"]}


def report(start_runs: Path, runs: Path, seeds: list[int], command: str) -> str:
    lines = ["# Fine-tuning from a CE model trained on the same data, against training from scratch", "",
             f"Reproduce: `{command}`", "",
             "Test split of the start runs' data (lesion-grouped on HAM10000; the seed draws it); argmax = the model's own decision; "
             "'run's decision' = the decision the run stores by default (Bayes minimum risk under α 5, β 20 "
             "for losses without costs, the validation-tuned scale for cost-sensitive ones). Seconds: each "
             "run's own wall time on one thread beside other runs, from sittings of differing load: the epochs "
             "(6 or 12 of 24) are the steadier ratio. A fine-tune's cost excludes its CE start, trained once and shared by every launch.", ""]
    means: dict[tuple[str, str], list[dict]] = {}
    for seed in seeds:
        lines += [f"## Seed {seed}", "",
                  "| method | start | epochs | lr | argmax CER | argmax F1 | run's decision: CER | F1 | seconds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        entries = [("CE", "scratch", start_runs / f"CE-seed{seed}")]
        for method in METHODS:
            entries.append((method, "scratch", start_runs / f"{method}-seed{seed}"))
            entries += [(method, "CE model", runs / f"{method}-{schedule}-seed{seed}") for schedule in SCHEDULES]
        for method, start, folder in entries:
            row = _row(folder, start)
            if row is None:
                lines.append(f"| {method} | {start} | | | not finished ({folder.name}) | | | | |")
                continue
            means.setdefault((method, f"{start}, {row['epochs']} ep, lr {row['lr']:g}"), []).append({**row, "seed": seed})
            lines.append(f"| {method} | {start} | {row['epochs']} | {row['lr']:g} | {pct(row['cer'])} | "
                         f"{row['f1']:.3f} | {pct(row['decided_cer'])} | {row['decided_f1']:.3f} | {row['seconds']:.0f} |")
        lines.append("")
    mean = {key: {m: float(np.mean([r[m] for r in rows])) for m in ("cer", "f1", "seconds")} | {"seeds": len(rows)}
            for key, rows in means.items()}
    lines += ["## Mean over the seeds above", "",
              "| method | start | seeds | argmax CER | argmax F1 | seconds |", "|---|---|---|---|---|---|"]
    for (method, start), m in mean.items():
        lines.append(f"| {method} | {start} | {m['seeds']} | {pct(m['cer'])} | {m['f1']:.3f} | {m['seconds']:.0f} |")
    lines += ["", "## The paper's headline pair, each started the same way (argmax, means above)", "",
              "| start | seeds (both finished) | Focal CER | RCL-Proposed CER | relative CER cut | F1 kept of Focal's |", "|---|---|---|---|---|---|"]
    for start in dict.fromkeys(start for _, start in mean):
        pair = {m: {r["seed"]: r for r in means.get((m, start), [])} for m in ("Focal", "RCL-Proposed")}
        both = sorted(set(pair["Focal"]) & set(pair["RCL-Proposed"]))  # seeds where both finished: a paired mean
        if not both:
            continue
        focal, rcl_run = ({k: np.mean([pair[m][s][k] for s in both]) for k in ("cer", "f1")} for m in pair)
        lines.append(f"| {start} | {len(both)} | {pct(focal['cer'])} | {pct(rcl_run['cer'])} | "
                     f"{pct(1 - rcl_run['cer'] / focal['cer']) if focal['cer'] > 0 else '—'} | "
                     f"{pct(rcl_run['f1'] / focal['f1'])} |")
    lines += ["", verdict(mean)]
    return "\n".join(lines) + "\n"


def verdict(mean: dict) -> str:
    """The answer in plain words for the schedule the library uses (``rcl.fine_tune.FINE_TUNE``)."""
    chosen = f"CE model, {FINE_TUNE['epochs']} ep, lr {FINE_TUNE['lr']:g}"
    parts = []
    for method in METHODS:
        tuned, scratch = mean.get((method, chosen)), next(
            (m for (name, start), m in mean.items() if name == method and start.startswith("scratch")), None)
        if tuned and scratch:
            parts.append(f"{method} CER {pct(scratch['cer'])} → {pct(tuned['cer'])}, F1 {scratch['f1']:.3f} → "
                         f"{tuned['f1']:.3f}, in {pct(tuned['seconds'] / scratch['seconds'], 0)} of the seconds "
                         f"({min(tuned['seeds'], scratch['seeds'])} seeds)")
    if not parts:
        return f"**Verdict**: not measured yet for the library's schedule ({chosen})."
    return (f"**Verdict** for the schedule `rcl` uses to fine-tune a run (`rcl.fine_tune.FINE_TUNE`: {chosen}), "
            f"from scratch → fine-tuned from the CE run of the same split: " + "; ".join(parts) + ".")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="start_runs", type=Path, required=True,
                        help="the folder of benchmarks/ham10000.py runs (CE-seedN are the starts)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runs", type=Path, default=None, help="default: $RCL_HOME/bench-finetune-start")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report-only", action="store_true", help="write the report from finished runs")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"the report (default: {RESULT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if not args.start_runs.is_dir():
        raise SystemExit(f"--from: {args.start_runs} is not a folder of finished runs")
    runs = args.runs or paths.home() / "bench-finetune-start"
    if not args.report_only:
        failed = train_all(finetune_configs(args.start_runs, args.seeds), runs, args.jobs, args.threads)
        if failed:
            print(f"failed: {', '.join(failed)}", file=sys.stderr)
    home, start_runs = paths.home(), args.start_runs.resolve()
    shown_from = f"$RCL_HOME/{start_runs.relative_to(home)}" if start_runs.is_relative_to(home) else str(start_runs)
    command = (f"RCL_HOME=... python benchmarks/finetune_start.py --from {shown_from} "
               f"--seeds {' '.join(map(str, args.seeds))} --jobs 2 --threads 1")
    args.out.write_text(report(args.start_runs, runs, args.seeds, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
