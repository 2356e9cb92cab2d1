"""What the app and the CLI call: submit, list, cancel, read logs, and keep a worker serving the queue.

Whatever reads the job state here also restarts the worker when jobs wait and none serves them
(``$RCL_WORKER_AUTOSTART=0`` turns that off, e.g. where a scheduler runs the workers).

The worker's lifetime: a worker started here stops itself after ``WORKER_IDLE_MINUTES`` with
nothing queued or running, and at once when the process that started it (the app) exits while no
job runs; :func:`stop_worker` (``rcl worker --stop``) stops it by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rcl import paths
from rcl.jobs.job import LOCAL, Job
from rcl.jobs.logs import tail as read_tail
from rcl.jobs.processes import child_env, pid_alive, python_command
from rcl.jobs.store import JobStore

if TYPE_CHECKING:
    from rcl.config import TrainConfig

_SPAWNED: list[subprocess.Popen] = []  # workers this process started; polled so they never linger as zombies
WORKER_IDLE_MINUTES = 10.0  # a worker started by ensure_worker exits after this long with nothing to do
STOP_TIMEOUT = 15.0  # seconds stop_worker waits for the worker (and the children it stops) to exit


def autostart() -> bool:
    """May a reader of job state start a worker? (``$RCL_WORKER_AUTOSTART``, default yes)."""
    return os.environ.get("RCL_WORKER_AUTOSTART", "1").strip().lower() not in ("0", "false", "no", "off")


def worker_status(store: JobStore | None = None, revive: bool = True) -> dict:
    """Is a worker serving this data directory? ``alive``, ``pid``, ``heartbeat``, ``running`` job ids,
    ``starting`` (the pid of a worker this process started that has not reported yet), ...

    With ``revive`` (and autostart allowed), a worker is started when jobs are queued or left
    running and none is alive; ``revived`` is then its pid (None otherwise).
    """
    store = store or JobStore()
    for process in _SPAWNED:
        process.poll()  # reap a spawned worker that exited, so its pid reads as gone
    now, host = time.time(), socket.gethostname()
    status: dict[str, Any] = {"alive": False, "pid": None, "heartbeat": None, "started": None,
                              "max_parallel": None, "log": str(store.home / "worker.log"), "revived": None,
                              "starting": None}
    for row in store.workers():
        fresh = now - row["heartbeat"] < max(30.0, 5 * row["poll_interval"])
        if fresh and (row["host"] != host or pid_alive(row["pid"])):
            status.update(alive=True, pid=row["pid"], heartbeat=row["heartbeat"], started=row["started"],
                          max_parallel=row["max_parallel"])
            break
    if not status["alive"]:  # started here a moment ago, before its first heartbeat
        status["starting"] = next((p.pid for p in _SPAWNED if p.returncode is None), None)
    status["running"] = [job.id for job in store.list(states=["running"], executor=LOCAL)]
    status["queued"] = store.count("queued", LOCAL)
    if revive and autostart() and not status["alive"] and (status["queued"] or status["running"]):
        status["revived"] = status["starting"] = ensure_worker(store=store)
    return status


def ensure_worker(max_parallel: int | None = None, store: JobStore | None = None) -> int:
    """Start a detached ``rcl worker`` unless one is alive; return the live worker's pid.

    Detached (own session, in the data directory, output to ``worker.log``) so it outlives the app
    and the terminal. Two callers racing here may start two workers; the worker lock lets only one run.
    """
    store = store or JobStore()
    status = worker_status(store, revive=False)
    if status["alive"]:
        return status["pid"]
    starting = [p for p in _SPAWNED if p.poll() is None]
    if starting:  # started by an earlier call and not yet beating (app reruns come fast)
        return starting[-1].pid
    command = [*python_command(), "-m", "rcl", "worker", "--idle-exit", f"{WORKER_IDLE_MINUTES:g}"]
    if max_parallel is not None:
        command += ["--max-parallel", str(max_parallel)]
    with (store.home / "worker.log").open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=store.home, env=child_env(store.home), start_new_session=True)
    _SPAWNED.append(process)
    return process.pid


def stop_worker(store: JobStore | None = None, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the worker serving this data directory; return its pid (None when none was running).

    The worker stops its running jobs, which go back to the queue and resume from their last
    checkpoint under the next worker. Raises ``RuntimeError`` when it is still alive after ``timeout``.
    """
    store = store or JobStore()
    status = worker_status(store, revive=False)
    if not status["alive"]:
        return None
    pid = status["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in _SPAWNED:
            process.poll()
        if not pid_alive(pid):
            return pid
        time.sleep(0.1)
    raise RuntimeError(f"the worker (pid {pid}) did not stop within {timeout:g} s; `kill {pid}` stops it")


def _stop_idle_spawned_workers() -> None:
    """At exit of the process that started workers (the app): stop them unless a job needs them."""
    alive = [p for p in _SPAWNED if p.poll() is None]
    if not alive:
        return
    try:
        busy = JobStore().count(["queued", "running"])
    except Exception:  # noqa: BLE001 - at exit with a broken store: leave the worker to its idle timer
        return
    if not busy:
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)


atexit.register(_stop_idle_spawned_workers)


def submit(configs: Iterable[TrainConfig | dict], group: str | None = None, start_worker: bool = True,
           store: JobStore | None = None) -> list[Job]:
    """Queue configs in one transaction (all or none) and, unless told not to, make sure a worker runs."""
    store = store or JobStore()
    jobs = store.submit_many(configs, group=group)
    if start_worker:
        ensure_worker(store=store)
    return jobs


def list_jobs(states: Iterable[str] | str | None = None, group: str | None = None,
              store: JobStore | None = None) -> tuple[list[Job], dict]:
    """The jobs (queue order) and the worker's status; a needed worker is started on the way."""
    store = store or JobStore()
    status = worker_status(store)
    settle_orphans(store)
    return store.list(states=states, group=group), status


ORPHAN_AFTER = 60.0  # seconds without a heartbeat after which a job run elsewhere has lost its driver
STOPPED = ("the sweep stopped before this trial finished: run the same sweep again (finished trials are "
           "skipped, the others resume from their last epoch)")


def settle_orphans(store: JobStore | None = None) -> list[int]:
    """Fail the trials of a sweep driver (``rcl sweep --executor ray``) that stopped without settling them."""
    return (store or JobStore()).fail_orphans(ORPHAN_AFTER, STOPPED)


def cancel(job_ids: Iterable[int | str], store: JobStore | None = None) -> list[Job]:
    """Cancel jobs: queued ones at once, running ones by the worker within seconds."""
    store = store or JobStore()
    return [store.request_cancel(job_id) for job_id in job_ids]


def job_logs(job_id: int | str, tail: int = 200, store: JobStore | None = None) -> str:
    """The last ``tail`` lines of the job's ``train.log`` ("" before it started)."""
    job = (store or JobStore()).get(job_id)
    legacy = job.run_dir / "train.log"  # jobs queued before job folders existed logged there
    return read_tail(job.log_path if job.log_path.is_file() or not legacy.is_file() else legacy, tail)


def job_history(job: Job | int | str, store: JobStore | None = None) -> list[dict]:
    """Per-epoch validation metrics so far, from the run's ``history.jsonl`` (training or finished)."""
    from rcl.runs import read_history

    if not isinstance(job, Job):
        job = (store or JobStore()).get(job)
    folder = job.run_dir if paths.is_complete(job.run_dir) else paths.partial_dir(job.run_dir)
    return read_history(folder if folder.is_dir() else job.run_dir)
