"""The supervisor: one worker per data directory claims queued jobs and runs each in a child process.

Each child is ``rcl train --job-id ID`` in its own process session, started in the data directory,
so a job survives the browser, the app and the worker itself. A worker never loses or mislabels a
job, whatever happened before it started (:meth:`_Worker.recover`):

- a child still alive from a crashed worker (same pid AND start time) is **adopted** and watched;
- a child that finished meanwhile is **settled** from its run folder (complete → done, once);
- a child that died meanwhile is **requeued**: the next child resumes from the run's last checkpoint.

The worker imports neither torch nor the training engine; GPUs are counted in a throw-away interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rcl import paths
from rcl.jobs.job import LOCAL, Job
from rcl.jobs.logs import with_log
from rcl.jobs.processes import (
    KILL_GRACE,
    child_env,
    exit_reason,
    is_job_child,
    python_command,
    signal_group,
    start_time,
    stop_group,
    visible_gpu,
)
from rcl.jobs.store import JobStore

RESUME_NOTE = "it resumes from its last checkpoint when a worker runs"


def default_command(job: Job, config_path: Path) -> list[str]:
    """The child a job runs: ``rcl train`` of this interpreter, reporting progress to the store."""
    return [*python_command(), "-m", "rcl", "train", "--config", str(config_path), "--out", str(job.run_dir),
            "--job-id", str(job.id)]


def _gpu_ids() -> list[str]:
    """The GPUs this worker may hand out, as ``CUDA_VISIBLE_DEVICES`` values.

    Counted by ``torch.cuda.device_count()`` in a throw-away interpreter, so the long-lived worker
    never loads torch or holds a CUDA context. ``CUDA_VISIBLE_DEVICES=""`` means no GPU, uncounted.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    try:
        result = subprocess.run([*python_command(), "-c", "import torch; print(torch.cuda.device_count())"],
                                capture_output=True, text=True, timeout=120, check=True)
        count = int(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(count)]
    return ids[:count]


@dataclass
class _Running:
    """A child being watched: started by this worker (``process``) or adopted from a crashed one."""

    job: Job
    pid: int
    started: str | None
    gpu: str | None
    process: subprocess.Popen | None = None  # None when adopted: its exit code went to its first parent
    term_sent: float | None = None

    def exit_code(self) -> tuple[bool, int | None]:
        """(exited, exit code or None where unknowable)."""
        if self.process is not None:
            code = self.process.poll()
            return code is not None, code
        return not is_job_child(self.pid, self.started), None


@dataclass
class _Worker:
    """One worker's loop state; :func:`run_worker` is its public face."""

    store: JobStore
    max_parallel: int | None
    poll_interval: float
    command_factory: Callable[[Job, Path], list[str]]
    kill_grace: float
    running: dict[int, _Running] = field(default_factory=dict)
    slots: list[str | None] | None = None
    finished: int = 0
    stop_signal: str | None = None

    def resolve_slots(self) -> list[str | None]:
        """One slot per visible GPU (one on CPU), or ``max_parallel`` slots spread over the GPUs."""
        if self.slots is None:
            gpus = _gpu_ids()
            count = self.max_parallel or max(1, len(gpus))
            self.slots = [gpus[i % len(gpus)] if gpus else None for i in range(count)]
        return self.slots

    def free_gpu(self) -> str | None:
        """The GPU with the fewest running jobs (None on CPU)."""
        slots = self.resolve_slots()
        busy = [r.gpu for r in self.running.values()]
        for gpu in slots:
            if gpu is None or busy.count(gpu) < slots.count(gpu):
                return gpu
        return None

    def launch(self, job: Job) -> None:
        gpu = self.free_gpu()
        extra = {"TQDM_DISABLE": "1"}  # train.log gets the per-epoch lines, never a redrawn bar
        if gpu is not None:
            extra["CUDA_VISIBLE_DEVICES"] = gpu
        try:
            job.job_dir.mkdir(parents=True, exist_ok=True)
            config_path = job.job_dir / "config.json"
            config_path.write_text(json.dumps(job.config, indent=2))
            command = self.command_factory(job, config_path)
            with job.log_path.open("ab") as log:
                log.write(f"[{datetime.now().isoformat(timespec='seconds')}] job {job.id} on "
                          f"{'GPU ' + gpu if gpu is not None else 'CPU'}: {' '.join(command)}\n".encode())
                log.flush()
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           cwd=self.store.home, env=child_env(self.store.home, **extra),
                                           start_new_session=True)
        except OSError as exc:
            self.store.mark_failed(job.id, f"could not start the training process: {exc}")
            return
        started = start_time(process.pid)
        self.store.mark_running(job.id, process.pid, started)
        self.running[job.id] = _Running(job, process.pid, started, gpu, process)

    def settle(self, job: Job, code: int | None, stopped: bool = False) -> bool:
        """Record the outcome of a job whose child is gone (``code`` None: unknown, not our child).

        Returns whether the job reached a final state (False: requeued to resume).
        """
        if paths.is_complete(job.run_dir):  # finished, even if a late cancel or a crash followed: keep it
            if self.store.mark_done(job.id) and job.log_path.is_file():
                with contextlib.suppress(OSError):
                    shutil.copyfile(job.log_path, job.run_dir / "train.log")
        elif stopped or self.store.get(job.id).cancel_requested:
            self.store.mark_cancelled(job.id, "cancelled while running")
        elif code is None:  # died unwatched (worker crash, reboot): not the job's fault, run it again
            return not self.store.requeue(job.id, f"interrupted while no worker watched it; {RESUME_NOTE}",
                                          resume=True)
        elif code == 0:
            self.store.mark_failed(job.id, with_log("the training process exited without writing metrics.json",
                                                    job.log_path))
        else:
            self.store.mark_failed(job.id, with_log(exit_reason(code), job.log_path))
        return True

    def reap(self) -> None:
        """Record the outcome of every child that has exited."""
        for job_id, run in list(self.running.items()):
            exited, code = run.exit_code()
            if exited:
                del self.running[job_id]
                self.finished += self.settle(run.job, code, stopped=run.term_sent is not None)

    def enforce_cancels(self) -> None:
        """SIGTERM the process group of each cancelled job; SIGKILL it after ``kill_grace`` seconds."""
        if not self.running:
            return
        wanted = {job.id for job in self.store.list(states=["running"], executor=LOCAL) if job.cancel_requested}
        now = time.monotonic()
        for job_id, run in self.running.items():
            if run.term_sent is None and job_id in wanted:
                signal_group(run.pid, signal.SIGTERM)
                run.term_sent = now
            elif run.term_sent is not None and now - run.term_sent > self.kill_grace:
                signal_group(run.pid, signal.SIGKILL)

    def recover(self) -> None:
        """Take over the jobs a previous worker left ``running``: it is gone (we hold the lock)."""
        self.store.remove_workers(keep=os.getpid())
        for job in self.store.list(states=["running"], executor=LOCAL):
            if job.pid is None:
                self.store.requeue(job.id)  # claimed but never started: nothing lost, it runs again
            elif is_job_child(job.pid, job.pid_start):
                self.store.adopt(job.id, os.getpid())  # a cancel asked meanwhile is enforced by the loop
                self.running[job.id] = _Running(job, job.pid, job.pid_start, visible_gpu(job.pid))
            else:
                self.finished += self.settle(job, None)

    def shutdown(self) -> None:
        """The worker is stopping: stop its children; their jobs resume under the next worker."""
        self.reap()  # a child that just finished keeps its real outcome
        for run in self.running.values():
            signal_group(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        for job_id, run in self.running.items():
            if run.process is not None:
                try:
                    run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    signal_group(run.pid, signal.SIGKILL)
                    run.process.wait()
            else:
                stop_group(run.pid, max(0.0, deadline - time.monotonic()))
            if paths.is_complete(run.job.run_dir) or run.term_sent is not None:
                self.finished += self.settle(run.job, 0, stopped=run.term_sent is not None)
            else:
                self.store.requeue(job_id, f"interrupted: the worker stopped ({self.stop_signal or 'error'}); "
                                   f"{RESUME_NOTE}", resume=True)
        self.running.clear()


@contextlib.contextmanager
def _worker_lock(store: JobStore) -> Iterator[None]:
    """Hold ``worker.lock`` beside the store: one worker per data directory.

    The kernel drops an flock when its holder dies, even by SIGKILL, so a crashed worker never
    blocks its successor. The descriptor is not inherited by children (PEP 446).
    """
    fd = os.open(store.home / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = [w["pid"] for w in store.workers()]
            who = f" (pid {other[0]})" if other else ""
            raise RuntimeError(f"another worker{who} is already running for {store.home}") from None
        yield
    finally:
        os.close(fd)


def run_worker(max_parallel: int | None = None, poll_interval: float = 1.0, once: bool = False,
               stop_when_idle: bool = False, *, idle_exit: float | None = None, store: JobStore | None = None,
               command_factory: Callable[[Job, Path], list[str]] | None = None,
               kill_grace: float = KILL_GRACE) -> int:
    """Run queued jobs, oldest first, each in its own child process; return how many finished.

    ``max_parallel``: concurrent jobs (default ``$RCL_MAX_PARALLEL``, else one per visible GPU, one
    on CPU). ``once``: run at most one job, then return. ``stop_when_idle``: return when nothing is
    queued or running; ``idle_exit``: return once nothing has been queued or running for that many
    seconds (otherwise run until SIGTERM/SIGINT). ``command_factory(job, config_path)``
    replaces the ``rcl train`` child (tests use a fake trainer). Raises ``RuntimeError`` when
    another worker already serves this data directory.
    """
    if max_parallel is None and os.environ.get("RCL_MAX_PARALLEL"):
        try:
            max_parallel = int(os.environ["RCL_MAX_PARALLEL"])
        except ValueError:
            raise ValueError(f"RCL_MAX_PARALLEL must be a whole number, got {os.environ['RCL_MAX_PARALLEL']!r}") from None
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    if idle_exit is not None and not idle_exit >= 0:
        raise ValueError(f"idle_exit must be a number of seconds >= 0, got {idle_exit}")
    store = store or JobStore()
    worker = _Worker(store, max_parallel, poll_interval, command_factory or default_command, kill_grace)
    previous: dict[int, Any] = {}

    def stop(signum, frame) -> None:
        worker.stop_signal = signal.Signals(signum).name

    with _worker_lock(store):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, stop)
        try:
            store.heartbeat(os.getpid(), poll_interval, max_parallel or 0)  # alive at once: recovery may take seconds
            worker.recover()
            claimed, idle_since = 0, time.monotonic()
            while worker.stop_signal is None:
                store.heartbeat(os.getpid(), poll_interval, len(worker.slots) if worker.slots else max_parallel or 0)
                worker.reap()
                worker.enforce_cancels()
                # GPUs are counted (resolve_slots) only once there is a job to place.
                while ((not once or claimed == 0) and store.count("queued", LOCAL)
                       and len(worker.running) < len(worker.resolve_slots())):
                    job = store.claim_next(os.getpid())
                    if job is None:
                        break
                    claimed += 1
                    worker.launch(job)
                if not worker.running and ((once and claimed) or ((once or stop_when_idle) and not store.count("queued", LOCAL))):
                    break
                if worker.running or store.count("queued"):
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                time.sleep(poll_interval)
        finally:
            worker.shutdown()
            store.remove_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return worker.finished
