"""The Ray executor of a sweep: one Ray task per trial, this process as its driver.

Plain Ray tasks, not Ray Tune: a trial is one ``run_training`` call whose outcome is a run folder,
so a task is all it needs. Ray's own task retries (``max_retries`` for a worker or node that dies,
``retry_exceptions`` for a storage hiccup) re-run a lost trial, which resumes from the ``last.pt``
of its partial folder; the run-folder contract decides what is finished; progress goes to the
same job store as the local worker's, through a small relay actor that this driver drains.

Each task asks for one GPU when the cluster has GPUs (``gpus_per_trial`` for a share of one) and
one CPU otherwise. Every node must see the run folders' parent (shared storage) and have rcl
installed; the job store stays on the driver's machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rcl import errors, paths
from rcl.jobs import JobStore
from rcl.jobs.client import STOPPED
from rcl.jobs.job import Job, job_dir
from rcl.jobs.processes import PACKAGE_ROOT
from rcl.jobs.progress import progress_reporter

if TYPE_CHECKING:
    from rcl.grid import Trial

ADDRESS_ENV = "RCL_RAY_ADDRESS"
MAX_RETRIES = 3
RETRY_EXCEPTIONS = [OSError]  # shared storage that blinked; a bad config or dataset fails at once


def default_address() -> str | None:
    """The Ray cluster sweeps go to unless told otherwise: ``$RCL_RAY_ADDRESS`` (None: a local Ray)."""
    return os.environ.get(ADDRESS_ENV) or None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the Ray cluster at ``address`` (default ``$RCL_RAY_ADDRESS``; none: a local Ray).

    Returns whether this call connected (and so should disconnect): an already connected process
    (a test's ``ray.init``) is reused as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or default_address()
    if address is None and PACKAGE_ROOT.name not in ("site-packages", "dist-packages"):
        # A local Ray's workers inherit this environment: let them import this checkout of rcl.
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError) as exc:
        raise ValueError(f"could not reach the Ray cluster at {address}: {exc} (check the address, "
                         f"or leave --ray-address and ${ADDRESS_ENV} unset to start a local Ray)") from exc
    return True


def trial_resources(cluster: dict, gpus_per_trial: float | None = None, cpus_per_trial: float = 1.0) -> dict:
    """What one trial asks Ray for: a GPU (or ``gpus_per_trial`` of one) where the cluster has GPUs."""
    if gpus_per_trial is not None and not 0 < gpus_per_trial <= max(1.0, cluster.get("GPU", 0)):
        raise ValueError(f"gpus_per_trial must be in (0, {max(1, int(cluster.get('GPU', 0)))}], got {gpus_per_trial}")
    if cpus_per_trial <= 0:
        raise ValueError(f"cpus_per_trial must be > 0, got {cpus_per_trial}")
    gpus = (gpus_per_trial or 1.0) if cluster.get("GPU", 0) > 0 else 0
    return {"num_cpus": cpus_per_trial, "num_gpus": gpus}


class Relay:
    """A Ray actor between the trials and the driver: trials post job-store updates, the driver drains them."""

    def __init__(self):
        self.events: list[tuple[int, dict]] = []

    def post(self, job_id: int, fields: dict) -> None:
        self.events.append((job_id, fields))

    def drain(self) -> list[tuple[int, dict]]:
        events, self.events = self.events, []
        return events

    def sync(self) -> None:
        """Nothing: a trial waits for this call so that its earlier posts (run in order) are in."""


class RelaySink:
    """Looks like a job store to :func:`progress_reporter`; each update goes to the relay actor."""

    def __init__(self, relay):
        self.relay = relay

    def update_progress(self, job_id: int, **fields) -> bool:
        self.relay.post.remote(job_id, fields)
        return True


def train_trial(job_id: int, config: dict, run_dir: str, relay) -> str:
    """One trial, run by a Ray worker: train ``config`` into ``run_dir``, logging to the job's ``train.log``."""
    import ray

    from rcl.config import TrainConfig
    from rcl.train import run_training

    run_dir = Path(run_dir)
    relay.post.remote(job_id, {"started": os.getpid(), "host": socket.gethostname()})
    if paths.is_complete(run_dir):  # an attempt lost after publishing its folder: nothing left to do
        return "complete"
    os.environ["RCL_HOME"] = str(run_dir.parent)  # caches (the synthetic set) beside the run folders
    log = job_dir(run_dir) / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        print(f"trial {run_dir.name} on {socket.gethostname()} (pid {os.getpid()})", flush=True)
        run_training(TrainConfig.from_dict(config), run_dir, progress_reporter(job_id, RelaySink(relay)))
    ray.get(relay.sync.remote())  # the last epoch's figures reach the driver before the task's result
    return "trained"


def _apply(store: JobStore, job_id: int, fields: dict, where: dict[int, list[str]]) -> None:
    """Write one relayed event into the store (a trial's start, or a progress update).

    ``where`` keeps each trial's attempts (``node (pid)``): a retried trial says so in its message.
    """
    if "started" in fields:
        where.setdefault(job_id, []).append(f"{fields['host']} (pid {fields['started']})")
        store.mark_started(job_id, fields["started"], _where(where[job_id]))
    else:
        if fields.get("message") == "started" and job_id in where:  # training began: keep saying where
            fields = {**fields, "message": _where(where[job_id])}
        store.update_progress(job_id, **fields)


def _where(attempts: list[str]) -> str:
    again = f", attempt {len(attempts)}: Ray retried it after its worker died" if len(attempts) > 1 else ""
    return f"on Ray node {attempts[-1]}{again}"


def _settle(store: JobStore, job: Job, ref) -> None:
    """Record a finished task: done iff its run folder is complete; otherwise failed, in one line."""
    import ray

    try:
        ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        store.mark_cancelled(job.id, "cancelled while running on Ray")
        return
    except ray.exceptions.RayTaskError as exc:  # the trial raised: its own exception, explained
        store.mark_failed(job.id, errors.explain(exc.cause or exc))
        return
    except ray.exceptions.RayError as exc:  # workers or nodes lost more often than max_retries
        store.mark_failed(job.id, f"Ray gave up on this trial: {str(exc).splitlines()[0]}")
        return
    if paths.is_complete(job.run_dir):
        store.mark_done(job.id)
    else:
        store.mark_failed(job.id, "the trial ended without writing metrics.json")


def run_trials(trials: Sequence[Trial], group: str, store: JobStore, address: str | None = None,
               max_retries: int = MAX_RETRIES, gpus_per_trial: float | None = None, cpus_per_trial: float = 1.0,
               poll: float = 1.0, on_update: Callable[[list[Job]], None] | None = None) -> list[Job]:
    """Run ``trials`` as Ray tasks until each is done, failed or cancelled; return their job rows."""
    import ray

    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    owner = os.getpid()
    jobs = store.submit_many([t.config for t in trials], group=group, run_dirs=[t.run_dir for t in trials],
                             executor="ray", owner=owner)
    started_here = connect(address)
    try:
        options = trial_resources(ray.cluster_resources(), gpus_per_trial, cpus_per_trial)
        relay = ray.remote(num_cpus=0)(Relay).remote()
        task = ray.remote(train_trial).options(max_retries=max_retries, retry_exceptions=RETRY_EXCEPTIONS, **options)
        pending = {task.remote(job.id, job.config, str(job.run_dir), relay): job for job in jobs}
        where: dict[int, list[str]] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll)
            for job_id, fields in ray.get(relay.drain.remote()):
                _apply(store, job_id, fields, where)
            for ref in done:
                _settle(store, pending.pop(ref), ref)
            rows = {job.id: job for job in store.list(group=group, executor="ray")}
            for ref, job in list(pending.items()):
                row = rows.get(job.id)
                if row is None or row.cancel_requested or row.state == "cancelled":
                    ray.cancel(ref, force=True)
                    store.mark_cancelled(job.id, "cancelled while running on Ray")
                    del pending[ref]
            store.beat_jobs(owner)
            if on_update:
                on_update([row for row in store.list(group=group, executor="ray") if row.id in {j.id for j in jobs}])
    finally:
        for job in jobs:  # stopped early (an error, Ctrl-C): the unfinished ones say how to finish
            store.mark_failed(job.id, STOPPED)
        if started_here:
            ray.shutdown()
    ids = {job.id for job in jobs}
    return [row for row in store.list(group=group) if row.id in ids]
