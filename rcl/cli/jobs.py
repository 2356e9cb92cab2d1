"""Background training (``rcl.jobs``): ``submit``, ``jobs``, ``cancel``, ``logs``, ``worker``."""

from __future__ import annotations

import argparse
import sys

from rcl.cli import command, fmt, print_json, print_table
from rcl.cli.training import add_train_options, config_from_args


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def add_submit(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--ablation", action="store_true",
                   help="queue the paper's grid: CE, WCE, Focal, LS and the 7 RCL configurations × --seeds")
    p.add_argument("--seeds", type=int, help="with --ablation: seeds per configuration (default 3)")
    p.add_argument("--group", help="a label for the submitted jobs (default with --ablation: ablation-<time>)")
    p.add_argument("--no-worker", action="store_true", help="only queue; start no worker")
    p.add_argument("--json", action="store_true", help="print the queued jobs as JSON")


@command("submit", "queue training jobs for the background worker (same options as train)", add_submit)
def cmd_submit(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rcl.jobs import ensure_worker, submit

    base = config_from_args(args)
    if args.ablation:
        from rcl.ablation import ablation_configs

        group = args.group or f"ablation-{datetime.now():%Y%m%d-%H%M%S}"
        configs = ablation_configs(base, range(args.seeds or 3))
    elif args.seeds is not None:
        raise ValueError("--seeds needs --ablation (for one config, use --seed)")
    else:
        group, configs = args.group, [base]
    jobs = submit(configs, group=group, start_worker=False)
    if args.json:
        print_json([job.to_dict() for job in jobs])
    else:
        for job in jobs:
            print(f"queued job {job.id}: {job.name} → {job.run_dir}")
    if args.no_worker:
        print("no worker started: run `rcl worker` to train them", file=sys.stderr)
    else:
        print(f"worker pid {ensure_worker()} (log: {jobs[0].run_dir.parent / 'worker.log'})", file=sys.stderr)
    return 0


def add_jobs(p: argparse.ArgumentParser) -> None:
    from rcl.jobs import STATES

    p.add_argument("--state", action="append", choices=STATES, help="only jobs in this state (repeatable)")
    p.add_argument("--group", help="only jobs of this group (e.g. one ablation)")
    p.add_argument("--json", action="store_true")


@command("jobs", "list background jobs and their progress (starts a worker if jobs wait for one)", add_jobs)
def cmd_jobs(args: argparse.Namespace) -> int:
    import time

    from rcl import paths
    from rcl.jobs import list_jobs

    jobs, status = list_jobs(states=args.state, group=args.group)
    if args.json:
        print_json([job.to_dict() for job in jobs])
        return 0
    if not jobs:
        print(f"no jobs in {paths.jobs_db()}: try `rcl submit --data synthetic --epochs 3`")
    now = time.time()
    print_table([{"id": job.id, "name": job.name, "state": job.state, "on": job.executor, "progress": job.progress,
                  "val_cer": fmt(job.val_cer) if job.epoch else "", "val_f1": fmt(job.val_f1) if job.epoch else "",
                  "run": job.run_id, "age": _age(now - job.created)} for job in jobs],
                ["id", "name", "state", "on", "progress", "val_cer", "val_f1", "run", "age"])
    for job in jobs:
        if job.state == "failed" and job.error:
            print(f"job {job.id} failed: {job.error.splitlines()[0]} (`rcl logs {job.id}`)")
    if status["alive"]:
        print(f"worker pid {status['pid']}: running {status['running'] or 'nothing'}, {status['queued']} queued")
    elif status["revived"]:
        print(f"no worker was running: started one (pid {status['revived']}) for the waiting jobs")
    elif status["queued"] or status["running"]:
        print("no worker is running: start one with `rcl worker`")
    return 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", metavar="ID", nargs="+", help="job ids (see `rcl jobs`)")


@command("cancel", "cancel queued or running background jobs", add_cancel)
def cmd_cancel(args: argparse.Namespace) -> int:
    from rcl.jobs import cancel

    for job in cancel(args.ids):
        if job.state == "running":
            print(f"job {job.id}: cancel requested; the worker stops it within a few seconds")
        elif job.state == "cancelled":
            print(f"job {job.id}: cancelled")
        else:
            print(f"job {job.id}: already {job.state}, nothing to cancel")
    return 0


def add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID")
    p.add_argument("--tail", type=int, default=200, help="last N lines (default 200)")


@command("logs", "show the training log of a background job", add_logs)
def cmd_logs(args: argparse.Namespace) -> int:
    from rcl.jobs import JobStore, job_logs

    store = JobStore()
    job = store.get(args.id)
    text = job_logs(job.id, args.tail, store)
    print(text if text else f"job {job.id} ({job.state}) has no log yet: {job.log_path}")
    if job.error:
        print(f"\njob {job.id} failed: {job.error.splitlines()[0]}")
    return 0


def add_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-parallel", type=int,
                   help="jobs at once (default $RCL_MAX_PARALLEL, else one per visible GPU, one on CPU)")
    p.add_argument("--once", action="store_true", help="run one queued job, then exit")
    p.add_argument("--stop-when-idle", action="store_true", help="exit when nothing is queued or running")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between queue checks (default 1)")
    p.add_argument("--idle-exit", type=float, metavar="MINUTES",
                   help="exit after this many minutes with nothing queued or running (the app's worker: 10)")
    p.add_argument("--stop", action="store_true",
                   help="stop the worker serving this data directory (its running jobs resume later) and exit")


@command("worker", "run queued jobs in child processes (one worker per data directory)", add_worker)
def cmd_worker(args: argparse.Namespace) -> int:
    from rcl import paths
    from rcl.jobs import run_worker, stop_worker

    if args.stop:
        pid = stop_worker()
        print(f"worker pid {pid} stopped" if pid else f"no worker is running for {paths.home()}")
        return 0
    print(f"worker serving {paths.home()}", flush=True)
    finished = run_worker(max_parallel=args.max_parallel, poll_interval=args.poll_interval, once=args.once,
                          stop_when_idle=args.stop_when_idle,
                          idle_exit=None if args.idle_exit is None else 60 * args.idle_exit)
    print(f"worker stopped after {finished} job(s)", flush=True)
    return 0
