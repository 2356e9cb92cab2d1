"""``rcl sweep``: a grid of training runs on this machine's worker or on a Ray cluster."""

from __future__ import annotations

import argparse

from rcl.cli import command, fmt, print_table
from rcl.cli.training import add_train_options, config_from_args


def _numbers(kind: type, name: str):
    """An argparse type: ``A,B`` as a list of ``kind`` (the library's parser, its message on a bad item)."""
    from rcl.grid import number_list

    def parse(text: str) -> list:
        try:
            return number_list(text, kind, name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _items(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_sweep(p: argparse.ArgumentParser) -> None:
    from rcl.grid import EXECUTORS
    from rcl.ray_executor import ADDRESS_ENV, MAX_RETRIES

    add_train_options(p)
    grid = p.add_argument_group("the grid (each axis multiplies the trials; a train option fixes the rest)")
    grid.add_argument("--losses", type=_items, metavar="A,B", help="losses, e.g. ce,focal,rcl (default: --loss)")
    grid.add_argument("--alphas", type=_numbers(float, "--alphas"), metavar="A,B", help="false-alarm penalties, for losses that take the matrix")
    grid.add_argument("--betas", type=_numbers(float, "--betas"), metavar="A,B", help="miss penalties, for losses that take the matrix")
    grid.add_argument("--seeds", type=_numbers(int, "--seeds"), metavar="A,B", help="seeds (default: --seed)")
    grid.add_argument("--models", type=_items, metavar="A,B", help="models (default: --model)")
    grid.add_argument("--datasets", type=_items, metavar="A,B", help="datasets (default: --data)")
    grid.add_argument("--ablation", action="store_true",
                      help="the paper's 11 methods (CE, WCE, Focal, LS, 7 RCL α/β) instead of --losses/--alphas/--betas")
    run = p.add_argument_group("where it runs")
    run.add_argument("--out", help="folder of the trials' run folders (default: the data directory)")
    run.add_argument("--group", help="the sweep's name in `rcl jobs` (default: derived from the grid and --out)")
    run.add_argument("--executor", choices=list(EXECUTORS), default="local",
                     help="local: this machine's worker; ray: one Ray task per trial (default local)")
    run.add_argument("--ray-address", help=f"Ray cluster address (default ${ADDRESS_ENV}; none: start a local Ray)")
    run.add_argument("--max-retries", type=int, default=MAX_RETRIES,
                     help=f"Ray: times a trial whose worker or node dies is run again (default {MAX_RETRIES})")
    run.add_argument("--gpus-per-trial", type=float, help="Ray: GPUs per trial where the cluster has GPUs (default 1)")
    run.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs per trial (default 1)")
    run.add_argument("--no-wait", action="store_true", help="local: queue the trials and return")
    run.add_argument("--dry-run", action="store_true", help="list the trials and what would be skipped; run nothing")
    run.add_argument("--plan", help=argparse.SUPPRESS)  # a plan file written by the app's launcher


def configs_from_args(args: argparse.Namespace):
    from rcl.grid import sweep_configs

    return sweep_configs(config_from_args(args), ablation=args.ablation, losses=args.losses, alphas=args.alphas,
                         betas=args.betas, seeds=args.seeds, models=args.models, datasets=args.datasets)


def _penalties(config) -> dict:
    """α and β where the loss uses them (blank otherwise)."""
    from rcl.loss_registry import loss_spec

    used = loss_spec(config.loss).takes_matrix
    return {"alpha": fmt(config.alpha) if used else "", "beta": fmt(config.beta) if used else ""}


class Reporter:
    """One line per trial whenever its state or epoch changes."""

    def __init__(self):
        self.seen: dict[int, tuple] = {}

    def __call__(self, jobs) -> None:
        for job in jobs:
            key = (job.state, job.epoch, job.message)
            if self.seen.get(job.id) != key:
                self.seen[job.id] = key
                note = job.error.splitlines()[0] if job.error else job.message or ""
                print(f"  {job.name}: {job.state} {job.progress} {note}".rstrip(), flush=True)


@command("sweep", "run a grid of trainings (losses × α × β × models × datasets × seeds, or the paper's "
         "ablation) on this machine or a Ray cluster; finished trials are skipped", add_sweep)
def cmd_sweep(args: argparse.Namespace) -> int:
    from rcl.grid import load_plan, plan, run_sweep, split_finished

    if args.plan:
        configs, out, group = load_plan(args.plan)
    else:
        configs, out, group = configs_from_args(args), args.out, args.group
    if args.dry_run:
        todo, finished = split_finished(plan(configs, out))
        print_table([{"trial": t.name, "loss": t.config.loss, **_penalties(t.config), "model": t.config.model, "seed": t.config.seed, "run folder": t.run_dir,
                      "status": "finished: skipped" if t in finished else "to run"} for t in [*finished, *todo]],
                    ["trial", "loss", "alpha", "beta", "model", "seed", "status", "run folder"])
        return 0
    options = ({"address": args.ray_address, "max_retries": args.max_retries, "gpus_per_trial": args.gpus_per_trial,
                "cpus_per_trial": args.cpus_per_trial} if args.executor == "ray" else {"wait": not args.no_wait})
    print(f"sweep of {len(configs)} trials on {args.executor}", flush=True)
    result = run_sweep(configs, out, args.executor, group=group, on_update=Reporter(), **options)
    jobs = result["jobs"]
    print(f"sweep {result['group']}: {len(result['skipped'])} finished before (skipped), "
          + ", ".join(f"{sum(j.state == s for j in jobs)} {s}" for s in ("done", "failed", "cancelled", "queued",
                                                                            "running")))
    for job in jobs:
        if job.state == "failed":
            print(f"trial {job.name} failed: {(job.error or '').splitlines()[0] if job.error else ''} "
                  f"(`rcl logs {job.id}`)")
    if jobs and not all(j.is_finished for j in jobs):
        print(f"follow it with `rcl jobs --group {result['group']}`")
    print(f"run folders: {result['trials'][0].run_dir.parent}")
    return 1 if any(j.state == "failed" for j in jobs) else 0
