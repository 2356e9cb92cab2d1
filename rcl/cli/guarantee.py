"""``rcl guarantee``: a malignancy threshold with a guaranteed miss rate, stored in the run folder."""

from __future__ import annotations

import argparse

from rcl.cli import command, fmt, print_json


def add_guarantee(p: argparse.ArgumentParser) -> None:
    from rcl.posthoc.guarantee import DEFAULT_REFER_ABOVE, GUARANTEE_MODES
    from rcl.posthoc.guarantee_report import SPLITS

    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--max-cer", type=float, required=True,
                   help="the miss rate to guarantee: share of malignant cases called benign, e.g. 0.05")
    p.add_argument("--delta", type=float, default=0.1,
                   help="high-probability mode: the guarantee may fail with at most this probability (default 0.1)")
    p.add_argument("--mode", choices=GUARANTEE_MODES, default="high-probability",
                   help="expected: E[CER] <= target (conformal risk control); high-probability: "
                        "P(CER <= target) >= 1 - delta (Learn-then-Test, exact binomial); default high-probability")
    p.add_argument("--refer", action="store_true",
                   help="three-way rule: refer a calibrated band of cases to a specialist instead of calling them")
    p.add_argument("--refer-above", type=float, default=DEFAULT_REFER_ABOVE,
                   help=f"with --refer: call malignant at P(malignant) >= this (default {DEFAULT_REFER_ABOVE})")
    p.add_argument("--calibration", choices=SPLITS, default="val",
                   help="split to calibrate on; the other split reports the cost (default val)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _ci(entry: dict, percent: bool = True) -> str:
    if entry["value"] is None:
        return "n/a"
    scale, unit = (100, "%") if percent else (1, "")
    digits = 1 if percent else 3
    text = f"{entry['value'] * scale:.{digits}f}{unit}"
    if entry["low"] is not None:
        text += f" (95% CI {entry['low'] * scale:.{digits}f}–{entry['high'] * scale:.{digits}f}{unit})"
    return text


@command("guarantee", "choose a malignancy threshold with a guaranteed miss rate (conformal risk control)",
         add_guarantee)
def cmd_guarantee(args: argparse.Namespace) -> int:
    from rcl.posthoc.guarantee import save_guarantee
    from rcl.posthoc.guarantee_report import guarantee_for_run
    from rcl.runs import load_run

    run = load_run(args.run_dir)
    rule, report = guarantee_for_run(run, args.max_cer, args.mode, args.delta,
                                 args.refer_above if args.refer else None, args.calibration)
    path = save_guarantee(rule, run.path, {"report": report})
    if args.json:
        print_json({**rule.to_dict(), "report": report, "saved": str(path)})
        return 0
    band = (f" · refer {fmt(rule.refer_low)} <= P(malignant) < {fmt(rule.threshold)}" if rule.refers else "")
    kind = "E[CER] bound" if rule.mode == "expected" else f"CER upper bound at {1 - rule.delta:.0%} confidence"
    print(f"rule: malignant iff P(malignant) >= {rule.threshold:.4f}{band}")
    print(f"guarantee: {rule.sentence()}")
    print(f"calibration ({rule.calibration_split}): {rule.n_calibration} cases, {rule.n_malignant} malignant, "
          f"{rule.misses_calibration} missed · {kind} {rule.bound:.4f} <= target {rule.target:g}")
    print(f"cost on {report['split']} ({report['n']} cases, rule above):")
    print(f"  CER {_ci(report['cer'])}: {report['misses']} of {report['n_answered_malignant']} answered malignant")
    print(f"  F1-macro {_ci(report['f1_macro'], percent=False)} · false alarms {_ci(report['false_alarm_rate'])} "
          f"of {report['false_alarm_rate']['n']} benign · referred {_ci(report['referral_rate'])}")
    print(f"saved {path}")
    return 0
