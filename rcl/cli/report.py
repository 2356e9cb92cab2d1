"""``rcl card``, ``rcl redecide``, ``rcl frontier``: the Run card, Severity and Pareto pages'
results from the command line, for scripts and reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rcl.cli import command, print_json, print_table


def find_run(name: str):
    """A run by folder path, else by its id in the data directory (``ValueError`` when neither)."""
    from rcl import paths
    from rcl.runs import load_run

    path = Path(name).expanduser()
    if not path.is_dir() and (paths.home() / name).is_dir():
        path = paths.home() / name
    run = load_run(path)
    if not run.finished:
        raise ValueError(f"run {run.id} is not finished yet: wait for training to end (`rcl jobs`)")
    return run


def add_card(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_name", metavar="RUN", help="run folder, or run id in the data directory")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--html", action="store_true", help="one self-contained HTML page (prints on A4)")
    form.add_argument("--md", action="store_true", help="Markdown (the default)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of the terminal")


@command("card", "the stakeholder run card of a finished run (Markdown or HTML)", add_card)
def cmd_card(args: argparse.Namespace) -> int:
    from rcl.atomic import write_text
    from rcl.run_card import run_card_html, run_card_markdown
    from rcl.runs import Run, list_runs

    run = find_run(args.run_name)
    others = [r for r in list_runs(run.path.parent, finished_only=True) if isinstance(r, Run)]
    text = (run_card_html if args.html else run_card_markdown)(run, others)
    if args.output:
        write_text(args.output, text)
        print(f"run card of {run.id} written to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def add_redecide(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_name", metavar="RUN", help="run folder, or run id in the data directory")
    p.add_argument("--matrix", metavar="M.json", help="a severity matrix JSON (as the Severity page saves it)")
    p.add_argument("--alpha", type=float, help="false-alarm cost, when no --matrix (default 5)")
    p.add_argument("--beta", type=float, help="miss cost, when no --matrix (default 20)")
    p.add_argument("--json", action="store_true")


@command("redecide", "a finished run's test figures re-decided under a severity matrix (the Severity page)",
         add_redecide)
def cmd_redecide(args: argparse.Namespace) -> int:
    from rcl.paper import PROPOSED_ALPHA, PROPOSED_BETA
    from rcl.redecision import redecide_run, redecision_text
    from rcl.severity import SeverityMatrix

    run = find_run(args.run_name)
    if args.matrix and (args.alpha is not None or args.beta is not None):
        raise ValueError("give either --matrix or --alpha/--beta, not both")
    if args.matrix:
        matrix = SeverityMatrix.load(args.matrix, run.taxonomy)
    else:
        matrix = SeverityMatrix.from_penalties(run.taxonomy, PROPOSED_ALPHA if args.alpha is None else args.alpha,
                                               PROPOSED_BETA if args.beta is None else args.beta)
    summary = redecide_run(run, matrix)
    if args.json:
        print_json(summary)
    else:
        print(redecision_text(summary))
    return 0


def add_frontier(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="NAME", help="dataset name (default: the group with the most runs)")
    p.add_argument("--split", metavar="FINGERPRINT", help="test split fingerprint (or its first characters)")
    p.add_argument("--csv", action="store_true", help="CSV on stdout (the Pareto page's download)")


@command("frontier", "finished runs on one test split as (CER, F1) points and their Pareto front", add_frontier)
def cmd_frontier(args: argparse.Namespace) -> int:
    from rcl.comparison import comparable, frontier_csv, pick_group, split_groups, with_splits
    from rcl.listing import run_rows
    from rcl.text import num, pct

    rows = with_splits(run_rows())
    groups = split_groups(rows)
    group = pick_group(groups, args.data, args.split)
    points = comparable(rows, group)
    if args.csv:
        sys.stdout.write(frontier_csv(points))
    else:
        print(f"{group['label']} (argmax decision on each run's test split)")
        print_table([{**p, "cer": pct(p["cer"]), "f1_macro": num(p["f1_macro"]),
                      "front": "yes" if p["on_front"] else ""} for p in points],
                    ["label", "loss", "model", "seed", "cer", "f1_macro", "type_2", "front", "id"])
    others = [g["label"] for g in groups if g is not group]
    if others:
        print(f"not comparable with these (other data or test split): {'; '.join(others)}", file=sys.stderr)
    return 0


__all__ = ["cmd_card", "cmd_frontier", "cmd_redecide", "find_run"]
