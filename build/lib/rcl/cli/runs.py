"""``rcl runs`` and ``rcl export``: the run folders of the data directory."""

from __future__ import annotations

import argparse

from rcl.cli import command, print_json, print_table


def add_runs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include unfinished runs")


@command("runs", "list run folders in the data directory", add_runs)
def cmd_runs(args: argparse.Namespace) -> int:
    from rcl import paths
    from rcl.runs import list_runs

    rows = [r.summary() for r in list_runs(finished_only=not args.all)]
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs in {paths.home()} yet: try `rcl train --data synthetic --epochs 3`")
    else:
        for r in rows:
            for key in ("cer", "f1_macro", "accuracy"):
                r[key] = None if r[key] is None else f"{r[key]:.3f}"
        print_table(rows, ["id", "status", "dataset", "model", "loss", "alpha", "beta", "seed", "epochs",
                           "cer", "f1_macro", "accuracy"])
    return 0


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--name", required=True, help="folder name under models/")
    p.add_argument("--overwrite", action="store_true")


@command("export", "promote a run to models/NAME for the triage page", add_export)
def cmd_export(args: argparse.Namespace) -> int:
    from rcl.runs import export_run

    print(f"exported to {export_run(args.run_dir, args.name, overwrite=args.overwrite)}")
    return 0
