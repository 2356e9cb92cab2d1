"""A grid of training runs (a sweep) and the executors that run it, each trial one ``TrainConfig``.

A grid is datasets × models × seeds × methods, where a method is a loss with its α/β (a custom
grid: ``losses × alphas × betas``, α/β only for losses that take the severity matrix) or one of the
paper's 11 (``ablation=True``). Each trial trains into ``<out>/<trial name>``; names are derived
from the grid alone, so a sweep run again finds its finished trials and redoes only the others.

Executors (:data:`EXECUTORS`): ``local`` queues the trials for this machine's worker
(:mod:`rcl.jobs`); ``ray`` hands them to a Ray cluster (:mod:`rcl.ray_executor`). Both keep one
row per trial in the job store, grouped by the sweep's name, so ``rcl jobs`` and the Train page
show every trial whichever executor runs it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rcl import paths
from rcl.config import SYNTHETIC, TrainConfig, as_recorded
from rcl.jobs import JobStore, ensure_worker
from rcl.jobs.client import ORPHAN_AFTER
from rcl.jobs.job import Job
from rcl.jobs.processes import child_env, python_command
from rcl.loss_registry import loss_spec
from rcl.paper import ABLATION_CONFIGS, BASELINES

# Fields that say where and how fast a run trains, not what it learns: a finished trial whose
# config differs only in these still counts as that trial.
EXECUTION_FIELDS = ("device", "num_workers")


@dataclass(frozen=True)
class Method:
    """One column of the grid: a loss with its α/β (None: the base config's, or unused)."""

    label: str
    loss: str
    alpha: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its config and the run folder it trains into."""

    config: TrainConfig
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def number_list(text: str | None, kind: type = float, name: str = "values") -> list | None:
    """``"1, 5,10"`` → ``[1.0, 5.0, 10.0]`` (``kind`` int or float); empty → None (the axis is not given)."""
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    try:
        return [kind(item) for item in items] or None
    except ValueError:
        example = "0,1,2" if kind is int else "1,5,10"
        raise ValueError(f"{name}: expected {'whole numbers' if kind is int else 'numbers'} separated by commas "
                         f"like {example}, got {text!r}") from None


def ablation_methods() -> list[Method]:
    """The paper's grid: the 4 baselines, then the 7 RCL configurations (display names as labels)."""
    return ([Method(label, loss) for label, loss in BASELINES.items()]
            + [Method(label, "rcl", alpha, beta) for label, (alpha, beta) in ABLATION_CONFIGS.items()])


def custom_methods(losses: Sequence[str], alphas: Sequence[float] | None = None,
                   betas: Sequence[float] | None = None) -> list[Method]:
    """``losses``, each matrix-taking loss once per (α, β) of ``alphas × betas``; an axis not given
    keeps the base config's value (and stays out of the trial's name)."""
    if not losses:
        raise ValueError("losses: name at least one loss, e.g. ce,focal,rcl")
    methods = []
    for loss in dict.fromkeys(loss_spec(name).name for name in losses):
        if loss_spec(loss).takes_matrix and (alphas or betas):
            methods += [Method("-".join([loss, *([f"a{a:g}"] if a is not None else []),
                                         *([f"b{b:g}"] if b is not None else [])]), loss, a, b)
                        for a in (alphas or [None]) for b in (betas or [None])]
        else:
            methods.append(Method(loss, loss))
    return methods


def grid_configs(base: TrainConfig, methods: Sequence[Method], seeds: Iterable[int] | None = None,
                 models: Sequence[str] | None = None, datasets: Sequence[str] | None = None) -> list[TrainConfig]:
    """One config per (dataset, model, seed, method), in that order, named after what varies.

    A trial's name is the method's label, then the model and the dataset when the grid has more than
    one of them, then ``-seed<N>`` (``RCL-Proposed-seed2``, ``rcl-a5-b20-resnet18-seed0``).
    """
    seeds = list(seeds) if seeds is not None else [base.seed]
    models, datasets = list(models or [base.model]), list(datasets or [base.data])
    for axis, values in (("seeds", seeds), ("models", models), ("datasets", datasets), ("methods", methods)):
        if not values:
            raise ValueError(f"{axis}: the grid needs at least one value")
    configs = []
    for data in datasets:
        for model in models:
            for seed in seeds:
                for method in methods:
                    parts = [*([base.name] if base.name else []), method.label, *([model] if len(models) > 1 else []),
                             *([_data_tag(data)] if len(datasets) > 1 else []), f"seed{seed}"]
                    own = method.alpha is None and method.beta is None  # the base's matrix and parameters
                    params = base.loss_params if method.loss == base.loss and own else {}
                    configs.append(replace(
                        base, data=_pinned(data), model=model, seed=int(seed), loss=method.loss, loss_params=params,
                        alpha=base.alpha if method.alpha is None else method.alpha,
                        beta=base.beta if method.beta is None else method.beta,
                        matrix=base.matrix if own else None, name="-".join(parts)))
    return configs


def sweep_configs(base: TrainConfig, *, ablation: bool = False, losses: Sequence[str] | None = None,
                  alphas: Sequence[float] | str | None = None, betas: Sequence[float] | str | None = None,
                  seeds: Sequence[int] | str | None = None, models: Sequence[str] | None = None,
                  datasets: Sequence[str] | None = None) -> list[TrainConfig]:
    """The configs of a sweep as the CLI and the Train page describe it; number axes may be ``"1,5"`` text.

    ``ablation``: the paper's 11 methods (then no ``losses``/``alphas``/``betas``); else ``losses``
    (default: the base's) with ``alphas × betas`` for the losses that take the matrix.
    """
    alphas, betas = (number_list(v, float, n) if isinstance(v, str) else v for v, n in ((alphas, "alphas"),
                                                                                        (betas, "betas")))
    seeds = number_list(seeds, int, "seeds") if isinstance(seeds, str) else seeds
    if ablation and (losses or alphas or betas):
        raise ValueError("the ablation is the paper's grid: leave out losses, alphas and betas")
    methods = ablation_methods() if ablation else custom_methods(losses or [base.loss], alphas, betas)
    return grid_configs(base, methods, seeds=seeds, models=models, datasets=datasets)


def _data_tag(data: str) -> str:
    return SYNTHETIC if data == SYNTHETIC else Path(data).name or "data"


def _pinned(data: str) -> str:
    """A dataset path made absolute: trials run in other directories, on other machines."""
    return data if data == SYNTHETIC else str(Path(data).expanduser().resolve())


def plan(configs: Sequence[TrainConfig], out: str | Path | None = None) -> list[Trial]:
    """The trials of ``configs``, each training into ``<out>/<name>`` (default: the data directory)."""
    out = Path(out).expanduser().resolve() if out else paths.home()
    names = [config.name for config in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated or not all(names):
        raise ValueError(f"every trial needs its own name; repeated: {', '.join(map(str, repeated)) or 'an empty name'}")
    return [Trial(config, out / config.name) for config in configs]


def split_finished(trials: Sequence[Trial]) -> tuple[list[Trial], list[Trial]]:
    """(to run, finished): a trial is finished when its run folder is complete with the same config.

    A complete folder of another config is refused, never overwritten or mistaken for this trial.
    """
    todo, finished = [], []
    for trial in trials:
        if not paths.is_complete(trial.run_dir):
            todo.append(trial)
        elif _same_config(trial):
            finished.append(trial)
        else:
            raise ValueError(f"{trial.run_dir} holds a finished run of another config: choose another --out, or "
                             "move that folder away")
    return todo, finished


def _same_config(trial: Trial) -> bool:
    try:
        saved = json.loads((trial.run_dir / "config.json").read_text()).get("train", {})
    except (OSError, ValueError, AttributeError):
        return False
    mine, saved = as_recorded(trial.config.to_dict()), as_recorded(saved)
    return all(saved[key] == mine[key] for key in mine if key not in EXECUTION_FIELDS)


def refuse_busy(trials: Sequence[Trial], executor: str, store: JobStore) -> None:
    """Refuse trials that another process is running: a live Ray sweep's, or (for Ray) the local worker's.

    Two processes training one run folder would race on its partial folder; a local trial still
    queued or running is simply left to the worker when the sweep runs locally again.
    """
    folders = {t.run_dir for t in trials}
    now = time.time()
    for job in store.list(states=["queued", "running"]):
        if job.run_dir not in folders:
            continue
        if job.executor != "local" and now - (job.heartbeat or job.created) < ORPHAN_AFTER:
            raise ValueError(f"trial {job.name} is being run by another sweep (pid {job.worker_pid}, job {job.id}): "
                             f"wait for it (`rcl jobs --group {job.group}`) or cancel it first")
        if job.executor == "local" and executor != "local":
            raise ValueError(f"trial {job.name} is {job.state} on this machine's worker (job {job.id}): "
                             "let it finish, or `rcl cancel` it, before sending the sweep to Ray")


def sweep_group(trials: Sequence[Trial]) -> str:
    """A name for the sweep that is the same every time the same grid runs into the same folder."""
    digest = hashlib.sha1("\n".join(str(t.run_dir) for t in trials).encode()).hexdigest()[:8]
    return f"sweep-{digest}"


# --- executors ---------------------------------------------------------------------------------------

Update = Callable[[list[Job]], None]


def run_local(trials: Sequence[Trial], group: str, store: JobStore, wait: bool = True, poll: float = 2.0,
              on_update: Update | None = None, **options) -> list[Job]:
    """Queue the trials for this machine's worker (started if needed); with ``wait``, follow them to the end."""
    if options:
        raise ValueError(f"the local executor takes no {', '.join(sorted(options))} option")
    jobs = store.submit_many([t.config for t in trials], group=group, run_dirs=[t.run_dir for t in trials])
    ensure_worker(store=store)
    ids = {job.id for job in jobs}
    while True:
        jobs = [job for job in store.list(group=group) if job.id in ids]
        if on_update:
            on_update(jobs)
        if not wait or all(job.is_finished for job in jobs):
            return jobs
        time.sleep(poll)


def run_ray(trials: Sequence[Trial], group: str, store: JobStore, **options) -> list[Job]:
    from rcl.ray_executor import run_trials

    return run_trials(trials, group, store, **options)


EXECUTORS: dict[str, Callable[..., list[Job]]] = {"local": run_local, "ray": run_ray}


def run_sweep(configs: Sequence[TrainConfig], out: str | Path | None = None, executor: str = "local",
              group: str | None = None, store: JobStore | None = None, **options) -> dict:
    """Run the trials of ``configs`` that are not finished yet; return what happened.

    ``{"group", "trials", "skipped": finished before, "jobs": the job rows of the trials run now}``.
    ``options`` go to the executor (``wait``, ``on_update``; for Ray ``address``, ``max_retries``,
    ``gpus_per_trial``, ``cpus_per_trial``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    trials = plan(configs, out)
    todo, finished = split_finished(trials)
    group = group or sweep_group(trials)
    store = store or JobStore()
    refuse_busy(todo, executor, store)
    jobs = EXECUTORS[executor](todo, group, store, **options) if todo else []
    return {"group": group, "trials": trials, "skipped": finished, "jobs": jobs}


def launch_sweep(configs: Sequence[TrainConfig], executor: str = "local", address: str | None = None,
                 out: str | Path | None = None, store: JobStore | None = None) -> str:
    """Start a sweep in the background (the app's way); return its group name.

    ``local``: the trials are queued for the worker. ``ray``: a detached ``rcl sweep`` process
    drives the cluster, so the sweep outlives the page that launched it.
    """
    store = store or JobStore()
    if executor == "local":
        return run_sweep(configs, out, "local", store=store, wait=False)["group"]
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    trials = plan(configs, out)
    split_finished(trials)  # refuse a clashing folder here, not in a background log
    group = sweep_group(trials)
    plan_file = store.home / ".sweeps" / f"{group}.json"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps({"configs": [t.config.to_dict() for t in trials],
                                     "out": str(trials[0].run_dir.parent), "group": group}))
    command = [*python_command(), "-m", "rcl", "sweep", "--plan", str(plan_file), "--executor", executor]
    if address:
        command += ["--ray-address", address]
    with plan_file.with_suffix(".log").open("ab") as log:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=store.home,
                         env=child_env(store.home), start_new_session=True)
    return group


def load_plan(path: str | Path) -> tuple[list[TrainConfig], str, str]:
    """(configs, out, group) of a plan file written by :func:`launch_sweep`."""
    data = json.loads(Path(path).read_text())
    return [TrainConfig.from_dict(c) for c in data["configs"]], data["out"], data["group"]


# --- progress of a grid --------------------------------------------------------------------------------

def job_fraction(job: Job) -> float:
    """How far one trial is, 0..1: steps done of all its steps (epochs before the first step); 1 once done."""
    if job.state == "done":
        return 1.0
    if job.step and job.total_steps:
        return min(1.0, job.step / job.total_steps)
    return min(1.0, (job.epoch or 0) / job.epochs) if job.epochs else 0.0


def grid_rows(jobs: Iterable[Job]) -> list[dict]:
    """One row per sweep (jobs sharing a group), newest first: trials by state and overall progress.

    ``state``: ``running`` while any trial is queued or running, else ``failed`` if any failed or was
    cancelled, else ``done``. ``progress`` is the mean of the trials' fractions (:func:`job_fraction`).
    """
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.group:
            groups.setdefault(job.group, []).append(job)
    rows = []
    for group, members in groups.items():
        counts = {state: sum(j.state == state for j in members) for state in ("queued", "running", "done", "failed",
                                                                               "cancelled")}
        state = ("running" if counts["queued"] + counts["running"] else
                 "failed" if counts["failed"] + counts["cancelled"] else "done")
        summary = " · ".join([f"{counts['done']}/{len(members)} done",
                              *(f"{counts[s]} {s}" for s in ("running", "queued", "failed", "cancelled") if counts[s])])
        rows.append({"group": group, "executor": ", ".join(sorted({j.executor for j in members})),
                     "trials": len(members), **counts, "state": state, "summary": summary,
                     "progress": sum(job_fraction(j) for j in members) / len(members),
                     "created": min(j.created for j in members)})
    return sorted(rows, key=lambda row: row["created"], reverse=True)


def trial_rows(jobs: Iterable[Job], group: str) -> list[dict]:
    """The trials of one sweep, in grid order: name, state, progress, validation figures, last message."""
    return [{"id": j.id, "trial": j.name, "state": j.state, "progress": job_fraction(j), "epochs": j.progress,
             "val CER": j.val_cer, "val F1": j.val_f1, "message": _first_line(j.error or j.message)}
            for j in jobs if j.group == group]


def _first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""
