"""The ``rcl`` command line: every job the app does, for scripts and clusters.

Each sub-command is a ``cmd_*`` function that takes the parsed arguments and returns an exit
code; a user error (bad path, bad matrix, unknown model, ...) is printed as one line, never a
traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    """Register ``cmd_<name>`` with its argument set-up (``add_<name>``)."""

    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (globals()[f"add_{name.replace('-', '_')}"], run, help)
        return run

    return wrap


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table (no dependency) for terminal listings."""
    if not rows:
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# --- sub-commands are added below, one section per library module -------------------------------


# --- training: train, evaluate, predict, runs, export, ablation ---


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``rcl train`` and ``rcl submit`` (one TrainConfig field each)."""
    from rcl.config import TrainConfig
    from rcl.losses import LOSSES
    from rcl.selection import SELECTION_RULES

    d = TrainConfig()
    p.add_argument("--config", help="a config.json (from a run folder or written by hand); flags override it")
    p.add_argument("--data", help="dataset folder or CSV, or 'synthetic' (default) for the bundled synthetic set")
    p.add_argument("--preset", help="built-in taxonomy: brain_mri, isic2018, breakhis, sicapv2")
    p.add_argument("--taxonomy", help="a taxonomy JSON file (classes and which are malignant)")
    p.add_argument("--loss", choices=sorted(LOSSES), help=f"training loss (default {d.loss})")
    p.add_argument("--alpha", type=float, help=f"false-alarm penalty, benign→malignant (default {d.alpha:g})")
    p.add_argument("--beta", type=float, help=f"miss penalty, malignant→benign (default {d.beta:g})")
    p.add_argument("--matrix", help="a severity matrix JSON file (overrides --alpha/--beta)")
    p.add_argument("--model", help=f"small_cnn, resnet18, resnet50, vit_base_patch16_224 or any timm name (default {d.model})")
    p.add_argument("--pretrained", action="store_true", default=None, help="start from timm's ImageNet weights (needs a network once)")
    p.add_argument("--weights", help="local .safetensors/.pt weights to start from (offline machines)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--image-size", type=int, help=f"pixels, square (default {d.image_size})")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay:g}")
    p.add_argument("--patience", type=int, help=f"early stopping patience in epochs (default {d.patience})")
    p.add_argument("--select", choices=sorted(SELECTION_RULES), help="checkpoint selection rule on validation (default f1)")
    p.add_argument("--cer-cap", type=float, help="for --select f1_cer_cap")
    p.add_argument("--f1-floor", type=float, help="for --select cer_f1_floor")
    p.add_argument("--limit", type=int, help="use at most N samples (stratified), for quick runs")
    p.add_argument("--max-steps", type=int, help="at most N optimiser steps per epoch (smoke tests)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no mixed precision on GPU")
    p.add_argument("--num-workers", type=int, help="data loader worker processes (default 0)")
    p.add_argument("--name", help="a label for tables and plots")


def config_from_args(args: argparse.Namespace):
    """A checked TrainConfig from ``--config`` (if any) overridden by explicit flags."""
    from rcl.config import TrainConfig
    from rcl.severity import SeverityMatrix
    from rcl.taxonomy import Taxonomy

    config = TrainConfig.load(args.config) if args.config else TrainConfig()
    updates = {}
    for field in ("data", "preset", "loss", "alpha", "beta", "model", "pretrained", "weights", "epochs",
                  "batch_size", "image_size", "lr", "weight_decay", "patience", "select", "cer_cap", "f1_floor",
                  "limit", "max_steps", "val_fraction", "test_fraction", "seed", "device", "amp", "num_workers",
                  "name"):
        value = getattr(args, field, None)
        if value is not None:
            updates[field] = value
    if getattr(args, "taxonomy", None):
        updates["taxonomy"] = Taxonomy.load(args.taxonomy).to_dict()
    config = type(config).from_dict({**config.to_dict(), **updates})
    if getattr(args, "matrix", None):
        taxonomy = config.resolved_taxonomy()
        matrix = SeverityMatrix.load(args.matrix, taxonomy)
        config.matrix = matrix.values.tolist()
        if config.taxonomy is None and config.preset is None and config.data != "synthetic":
            config.taxonomy = matrix.taxonomy.to_dict()
    return config.check()


class ProgressBar:
    """Training events shown as a tqdm bar (steps), with one line per epoch."""

    def __init__(self):
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        kind = event["kind"]
        if kind == "start":
            sizes = event["sizes"]
            tqdm.write(f"device {event['device']} · train {sizes['train']} · val {sizes['val']} · test {sizes['test']}")
            self.bar = tqdm(total=event["total_steps"], unit="step", dynamic_ncols=True)
            self.bar.update(event["resumed_from_epoch"] * event["total_steps"] // max(event["epochs"], 1))
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(epoch=f"{event['epoch']}/{event['epochs']}", loss=f"{event['loss']:.3f}")
        elif kind == "epoch":
            cer = "n/a" if event["val_cer"] is None else f"{event['val_cer']:.3f}"
            tqdm.write(f"epoch {event['epoch']}/{event['epochs']}: train loss {event['train_loss']:.4f} · "
                       f"val CER {cer} · val F1 {event['val_f1_macro']:.3f} · selected epoch {event['selected_epoch']}")
        elif kind == "message":
            tqdm.write(event["message"])
        elif kind == "end" and self.bar is not None:
            self.bar.close()


def _fmt(value, digits: int = 3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def add_train(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--out", help="run folder to write (default: a new folder in $RCL_HOME or ./runs)")
    p.add_argument("--job-id", help=argparse.SUPPRESS)  # set by the background worker


@command("train", "train a model and write a run folder")
def cmd_train(args: argparse.Namespace) -> int:
    from rcl import paths
    from rcl.train import make_run_id, run_training

    config = config_from_args(args)
    out = args.out or str(paths.home() / make_run_id(config))
    callback = ProgressBar()
    if args.job_id:
        from rcl.jobs import progress_reporter

        report = progress_reporter(args.job_id)

        def callback(event, bar=callback):
            bar(event)
            report(event)

    metrics = run_training(config, out, callback)
    test = metrics["test"]
    print(f"run folder: {out}")
    print(f"test: CER {_fmt(test['cer'])} · F1-macro {_fmt(test['f1_macro'])} · accuracy {_fmt(test['accuracy'])} · "
          f"tiers {test['tiers']}")
    return 0


def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="dataset in a layout the run's classes fit")
    p.add_argument("--preset", help="taxonomy preset of the data, when it cannot be detected")
    p.add_argument("--ood-only", action="store_true",
                   help="data of other classes: report only the share of images flagged as unfamiliar")
    p.add_argument("--out", help="write the metrics JSON here (default: print it)")


@command("evaluate", "evaluate a trained run on another dataset (external test set)")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from rcl.train import evaluate_external

    result = evaluate_external(args.run_dir, args.data, args.preset, ood_only=args.ood_only)
    if not args.out:
        print_json(result)
        return 0
    from pathlib import Path

    Path(args.out).write_text(json.dumps(result, indent=2))
    summary = [f"wrote {args.out}: {result['n']} images"]
    if "test" in result:
        test = result["test"]
        summary.append(f"CER {_fmt(test['cer'])} · F1-macro {_fmt(test['f1_macro'])} · accuracy {_fmt(test['accuracy'])}")
    if "ood" in result:
        summary.append(f"{result['ood']['flagged_share']:.1%} flagged as unfamiliar "
                       f"(about {result['ood']['expected_share_in_distribution']:.0%} expected in distribution)")
    print(" · ".join(summary))
    return 0


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN_DIR", help="a run folder or an exported model folder (models/NAME)")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--matrix", help="decide under this severity matrix JSON instead of the model's own")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("predict", "classify images with a trained run or exported model")
def cmd_predict(args: argparse.Namespace) -> int:
    from rcl.runs import load_model
    from rcl.triage import triage

    loaded = load_model(args.source)
    matrix = None
    if args.matrix:
        from rcl.severity import SeverityMatrix

        matrix = SeverityMatrix.load(args.matrix, loaded.taxonomy)
    results, failed = [], 0
    for image in args.images:
        try:
            results.append({"image": image, **triage(loaded, image, matrix).to_dict()})
        except ValueError as exc:
            failed += 1
            results.append({"image": image, "error": str(exc)})
    if args.json:
        print_json(results)
    else:
        if loaded.synthetic:
            print("note: this model was trained on SYNTHETIC images; its predictions on real images mean nothing")
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
                continue
            flags = "".join(f" · {f}" for f in r["flags"])
            print(f"{r['image']}: {r['argmax']} (p={r['probabilities'][r['argmax']]:.2f}) · "
                  f"P(malignant)={r['malignant_probability']:.2f} · risk-calibrated decision: {r['decision']}{flags}")
    return 1 if failed == len(results) else 0


def add_runs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include unfinished runs")


@command("runs", "list run folders in the data directory")
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


@command("export", "promote a run to models/NAME for the triage page")
def cmd_export(args: argparse.Namespace) -> int:
    from rcl.runs import export_run

    print(f"exported to {export_run(args.run_dir, args.name, overwrite=args.overwrite)}")
    return 0


def add_reselect(p: argparse.ArgumentParser) -> None:
    from rcl.selection import SELECTION_RULES

    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--select", required=True, choices=sorted(SELECTION_RULES))
    p.add_argument("--cer-cap", type=float)
    p.add_argument("--f1-floor", type=float)
    p.add_argument("--json", action="store_true")


@command("reselect", "apply another checkpoint-selection rule to a finished run, from its stored per-epoch predictions")
def cmd_reselect(args: argparse.Namespace) -> int:
    from rcl.runs import load_run

    result = load_run(args.run_dir).reselect(args.select, args.cer_cap, args.f1_floor)
    if args.json:
        print_json(result)
        return 0
    print(f"rule {args.select}: epoch {result['epoch']} (trained with {result['trained_with']}: "
          f"epoch {result['trained_epoch']})")
    for split in ("val", "test"):
        m = result[split]
        print(f"  {split}: CER {_fmt(m['cer'])} · F1-macro {_fmt(m['f1_macro'])} · accuracy {_fmt(m['accuracy'])}")
    return 0


def add_ablation(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    p.add_argument("--out", required=True, help="folder for the run folders and results.csv/.md")


@command("ablation", "the paper's baselines and 7 RCL configurations over N seeds, one results table")
def cmd_ablation(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rcl.ablation import ablation_configs, run_ablation

    base = config_from_args(args)
    configs = ablation_configs(base, range(args.seeds))
    table = run_ablation(configs, Path(args.out), callback_factory=lambda config: ProgressBar())
    print(table["markdown"])
    print(f"wrote {table['csv_path']} and {table['markdown_path']}")
    return 0


# --- jobs ---
# Background training (rcl/jobs.py): submit, jobs, cancel, logs, worker.


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


@command("submit", "queue training jobs for the background worker (same options as train)")
def cmd_submit(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rcl.jobs import JobStore, ensure_worker, make_ablation_configs

    base = config_from_args(args)
    store = JobStore()
    if args.ablation:
        group = args.group or f"ablation-{datetime.now():%Y%m%d-%H%M%S}"
        jobs = store.submit_many(make_ablation_configs(base, args.seeds or 3), group=group)
    elif args.seeds is not None:
        raise ValueError("--seeds needs --ablation (for one config, use --seed)")
    else:
        jobs = [store.submit(base, group=args.group)]
    if args.json:
        print_json([job.to_dict() for job in jobs])
    else:
        for job in jobs:
            print(f"queued job {job.id}: {job.name} → {job.run_dir}")
    if args.no_worker:
        print("no worker started: run `rcl worker` to train them", file=sys.stderr)
    else:
        print(f"worker pid {ensure_worker()} (log: {store.home / 'worker.log'})", file=sys.stderr)
    return 0


def add_jobs(p: argparse.ArgumentParser) -> None:
    from rcl.jobs import STATES

    p.add_argument("--state", action="append", choices=STATES, help="only jobs in this state (repeatable)")
    p.add_argument("--group", help="only jobs of this group (e.g. one ablation)")
    p.add_argument("--json", action="store_true")


@command("jobs", "list background jobs and their progress")
def cmd_jobs(args: argparse.Namespace) -> int:
    import time

    from rcl.jobs import JobStore, worker_status

    store = JobStore()
    jobs = store.list(states=args.state, group=args.group)
    if args.json:
        print_json([job.to_dict() for job in jobs])
        return 0
    if not jobs:
        print(f"no jobs in {store.path}: try `rcl submit --data synthetic --epochs 3`")
    now = time.time()
    print_table([{"id": job.id, "name": job.name, "state": job.state, "progress": job.progress,
                  "val_cer": _fmt(job.val_cer) if job.epoch else "", "val_f1": _fmt(job.val_f1) if job.epoch else "",
                  "run": job.run_id, "age": _age(now - job.created)} for job in jobs],
                ["id", "name", "state", "progress", "val_cer", "val_f1", "run", "age"])
    for job in jobs:
        if job.state == "failed" and job.error:
            print(f"job {job.id} failed: {job.error.splitlines()[0]} (`rcl logs {job.id}`)")
    status = worker_status(store)
    if status["alive"]:
        print(f"worker pid {status['pid']}: running {status['running'] or 'nothing'}, {status['queued']} queued")
    elif status["queued"] or status["running"]:
        print("no worker is running: start one with `rcl worker`")
    return 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", metavar="ID", nargs="+", help="job ids (see `rcl jobs`)")


@command("cancel", "cancel queued or running background jobs")
def cmd_cancel(args: argparse.Namespace) -> int:
    from rcl.jobs import JobStore

    store = JobStore()
    for job_id in args.ids:
        job = store.request_cancel(job_id)
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


@command("logs", "show the training log of a background job")
def cmd_logs(args: argparse.Namespace) -> int:
    from rcl.jobs import JobStore, job_logs

    store = JobStore()
    job = store.get(args.id)
    text = job_logs(job.id, args.tail, store)
    print(text if text else f"job {job.id} ({job.state}) has no log yet: {job.run_dir / 'train.log'}")
    if job.error:
        print(f"\njob {job.id} failed: {job.error.splitlines()[0]}")
    return 0


def add_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-parallel", type=int,
                   help="jobs at once (default $RCL_MAX_PARALLEL, else one per visible GPU, one on CPU)")
    p.add_argument("--once", action="store_true", help="run one queued job, then exit")
    p.add_argument("--stop-when-idle", action="store_true", help="exit when nothing is queued or running")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between queue checks (default 1)")


@command("worker", "run queued jobs in child processes (one worker per data directory)")
def cmd_worker(args: argparse.Namespace) -> int:
    from rcl import paths
    from rcl.jobs import run_worker

    print(f"worker serving {paths.home()}", flush=True)
    finished = run_worker(max_parallel=args.max_parallel, poll_interval=args.poll_interval, once=args.once,
                          stop_when_idle=args.stop_when_idle)
    print(f"worker stopped after {finished} job(s)", flush=True)
    return 0


# --- data: audit ---


def add_audit(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset folder or CSV, or 'synthetic'")
    p.add_argument("--preset", help="built-in taxonomy: brain_mri, isic2018, breakhis, sicapv2")
    p.add_argument("--malignant", help="comma-separated names of the malignant classes (generic datasets)")
    p.add_argument("--taxonomy", help="a taxonomy JSON file (classes and which are malignant)")
    p.add_argument("--magnification", help="BreaKHis only: 40, 100, 200 or 400")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits audited (default 0)")
    p.add_argument("--no-near", action="store_true", help="skip near-duplicates (no image decoding: fast)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("audit", "check a dataset: class counts per split, duplicates, group leakage, unreadable files")
def cmd_audit(args: argparse.Namespace) -> int:
    from rcl.data import audit, load_dataset
    from rcl.data.audit import NEAR_DUPLICATE_THRESHOLD

    table = load_dataset(args.data, preset=args.preset, taxonomy=args.taxonomy, malignant=args.malignant,
                         magnification=args.magnification)
    report = audit(table, seed=args.seed, near_duplicate_threshold=None if args.no_near else NEAR_DUPLICATE_THRESHOLD)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcl",
        description="Risk-calibrated medical image classification: train, evaluate, explore.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"rcl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
