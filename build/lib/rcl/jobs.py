"""Background training jobs: a SQLite job store and a worker that runs each job in a child process.

Why this shape: Streamlit reruns scripts and kills threads on refresh, so training cannot live in
the app. The app (and ``rcl submit``) only write rows to ``$RCL_HOME/jobs.sqlite``; one detached
worker per data directory (``rcl worker``, started by :func:`ensure_worker`) claims queued jobs and
runs each one as ``rcl train --job-id ID`` in its own process session, so a job survives the
browser and the app, and a crash of either the job or the worker is detected and reported.

Concurrency: every process opens short-lived connections; writes use ``BEGIN IMMEDIATE`` (the
write lock is taken up front, so two writers never deadlock upgrading a read lock), a long
``busy_timeout`` and a small retry, so "database is locked" never reaches the user. WAL mode lets
readers (the app polling progress) run while a writer commits.

This module imports neither torch nor the config module at import time: ``rcl jobs``, the
worker and the app's job page stay light. Only submission validates a config (which needs torch).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcl import paths

if TYPE_CHECKING:
    from rcl.config import TrainConfig

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
PROGRESS_FIELDS = ("epoch", "epochs", "step", "total_steps", "loss", "val_cer", "val_f1", "message")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
LOCK_RETRIES = 8
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
STEP_WRITE_INTERVAL = 0.5  # progress reporter: at most ~2 writes/s for "step" events
LOG_TAIL_IN_ERROR = 20  # lines of train.log quoted in a failed job's error

# Each entry upgrades the schema from version i to i + 1; append, never edit, so old stores migrate.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            group_name TEXT,
            config TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            run_dir TEXT UNIQUE,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            epoch INTEGER,
            epochs INTEGER,
            step INTEGER,
            total_steps INTEGER,
            loss REAL,
            val_cer REAL,
            val_f1 REAL,
            message TEXT,
            pid INTEGER,
            worker_pid INTEGER,
            heartbeat REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )""",
        "CREATE INDEX jobs_state ON jobs (state, id)",
        "CREATE INDEX jobs_group ON jobs (group_name)",
        """CREATE TABLE workers (
            pid INTEGER PRIMARY KEY,
            host TEXT NOT NULL,
            started REAL NOT NULL,
            heartbeat REAL NOT NULL,
            poll_interval REAL NOT NULL,
            max_parallel INTEGER NOT NULL
        )""",
    ],
]


class JobNotFound(ValueError):
    """No job with that id (a ValueError, so the CLI prints it as a one-line user error)."""


@dataclass
class Job:
    """One row of the job store. Timestamps are Unix seconds; progress fields are None until reported."""

    id: int
    name: str
    group: str | None
    config: dict
    state: str
    run_dir: Path
    created: float
    started: float | None = None
    finished: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    val_cer: float | None = None
    val_f1: float | None = None
    message: str | None = None
    pid: int | None = None
    worker_pid: int | None = None
    heartbeat: float | None = None
    cancel_requested: bool = False
    error: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["group"] = data.pop("group_name")
        data["config"] = json.loads(data["config"])
        data["run_dir"] = Path(data["run_dir"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def is_finished(self) -> bool:
        return self.state not in ACTIVE_STATES

    @property
    def progress(self) -> str:
        """``"3/10"`` epochs, with the step percentage while running (``"3/10 (34%)"``)."""
        if not self.epochs:
            return ""
        text = f"{self.epoch or 0}/{self.epochs}"
        if self.state == "running" and self.step and self.total_steps:
            text += f" ({100 * self.step / self.total_steps:.0f}%)"
        return text

    def train_config(self) -> TrainConfig:
        from rcl.config import TrainConfig

        return TrainConfig.from_dict(self.config)

    def to_dict(self) -> dict:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data["run_dir"] = str(self.run_dir)
        data["run_id"] = self.run_id
        data["progress"] = self.progress
        return data


def _now() -> float:
    return time.time()


def _retry(operation: Callable[[], Any]) -> Any:
    """Run ``operation``, retrying when SQLite reports a lock that outlived ``busy_timeout``.

    busy_timeout already waits for the lock; this covers the few places SQLite gives up without
    calling the busy handler (e.g. switching to WAL while another process opens the file).
    """
    attempt = 0
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            message = str(exc).lower()
            attempt += 1
            if ("locked" not in message and "busy" not in message) or attempt >= LOCK_RETRIES:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))


class JobStore:
    """The job queue in one SQLite file (default ``rcl.paths.jobs_db()``).

    Safe to use from any number of processes and threads at once: every call opens its own
    connection, so an instance can be shared across Streamlit reruns and forked processes.
    Run folders go beside the file (``home``); training children find the store as
    ``$RCL_HOME/jobs.sqlite``, so a store for real jobs keeps that name.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else paths.jobs_db()
        self.home = self.path.parent
        self.home.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # --- connections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    def _write(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``operation`` in one ``BEGIN IMMEDIATE`` transaction (all or nothing), with retries."""

        def attempt():
            with self._connect() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = operation(conn)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return _retry(attempt)

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        def attempt():
            with self._connect() as conn:
                return conn.execute(sql, tuple(params)).fetchall()

        return _retry(attempt)

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``; a store already there costs one read, no write lock."""
        if self._read("PRAGMA user_version")[0][0] == SCHEMA_VERSION:
            return

        def upgrade(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer rcl (job schema {version}, "
                                   f"this rcl knows {SCHEMA_VERSION}); upgrade rcl")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(upgrade)

    # --- submission ----------------------------------------------------------------------------

    def submit(self, config: TrainConfig | dict, name: str | None = None, group: str | None = None) -> Job:
        """Validate ``config`` and queue it; an invalid config raises ``ValueError`` and stores nothing."""
        prepared = _prepare(config, name)
        return self._write(lambda conn: self._insert(conn, prepared, group))

    def submit_many(self, configs: Iterable[TrainConfig | dict], group: str | None = None) -> list[Job]:
        """Queue several configs in ONE transaction: all are stored, or (one invalid) none is."""
        prepared = []
        for i, config in enumerate(configs):
            try:
                prepared.append(_prepare(config, None))
            except ValueError as exc:
                label = config.get("name") if isinstance(config, dict) else config.name
                raise ValueError(f"config {i + 1}{f' ({label})' if label else ''}: {exc}") from exc
        return self._write(lambda conn: [self._insert(conn, p, group) for p in prepared])

    def _insert(self, conn: sqlite3.Connection, prepared: tuple[str, dict], group: str | None) -> Job:
        name, config = prepared
        cursor = conn.execute(
            "INSERT INTO jobs (name, group_name, config, state, created) VALUES (?, ?, ?, 'queued', ?)",
            (name, group, json.dumps(config), _now()),
        )
        job_id = cursor.lastrowid
        run_dir = self.home / _run_id(name, job_id)
        if run_dir.exists():  # a store deleted and recreated can repeat ids; never reuse a folder
            run_dir = run_dir.with_name(f"{run_dir.name}-{random.randbytes(2).hex()}")
        conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (str(run_dir), job_id))
        return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    # --- queries -------------------------------------------------------------------------------

    def get(self, job_id: int | str) -> Job:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (_job_id(job_id),))
        if not rows:
            raise JobNotFound(f"no job {job_id} in {self.path}")
        return Job.from_row(rows[0])

    def list(self, states: Iterable[str] | None = None, group: str | None = None) -> list[Job]:
        """Jobs in submission (= queue) order, optionally only some states or one group."""
        sql, params = "SELECT * FROM jobs WHERE 1", []
        if states is not None:
            states = [states] if isinstance(states, str) else list(states)
            unknown = sorted(set(states) - set(STATES))
            if unknown:
                raise ValueError(f"unknown job state {', '.join(unknown)}; choose from {', '.join(STATES)}")
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += states
        if group is not None:
            sql += " AND group_name = ?"
            params.append(group)
        return [Job.from_row(row) for row in self._read(sql + " ORDER BY id", params)]

    def count(self, states: Iterable[str] | str) -> int:
        states = [states] if isinstance(states, str) else list(states)
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})"
        return self._read(sql, states)[0][0]

    def workers(self) -> list[dict]:
        """Worker heartbeat rows, freshest first."""
        return [dict(row) for row in self._read("SELECT * FROM workers ORDER BY heartbeat DESC")]

    # --- state transitions ---------------------------------------------------------------------

    def claim_next(self, worker_pid: int | None = None) -> Job | None:
        """Atomically take the oldest queued job and mark it running (no child pid yet)."""

        def claim(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            now = _now()
            conn.execute("UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, worker_pid = ? "
                         "WHERE id = ?", (now, now, worker_pid or os.getpid(), row["id"]))
            return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

        return self._write(claim)

    def mark_running(self, job_id: int | str, pid: int) -> bool:
        """Record the child process of a claimed job (the worker calls this right after starting it)."""
        return self._update(job_id, "state = 'running'", pid=pid, heartbeat=_now())

    def mark_done(self, job_id: int | str) -> bool:
        return self._finish(job_id, "done", None)

    def mark_failed(self, job_id: int | str, error: str) -> bool:
        return self._finish(job_id, "failed", error)

    def mark_cancelled(self, job_id: int | str, message: str | None = None) -> bool:
        return self._finish(job_id, "cancelled", None, message)

    def requeue(self, job_id: int | str) -> bool:
        """Put a claimed job whose process never started back at its place in the queue."""
        return self._update(job_id, "state = 'running' AND pid IS NULL", state="queued", started=None,
                            heartbeat=None, worker_pid=None)

    def request_cancel(self, job_id: int | str) -> Job:
        """Cancel: a queued job at once; a running one is stopped by the worker within ~1 s.

        A finished job is returned unchanged (cancelling twice, or too late, is not an error).
        """

        def cancel(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE jobs SET state = 'cancelled', finished = ?, message = 'cancelled before it started' "
                         "WHERE id = ? AND state = 'queued'", (_now(), _job_id(job_id)))
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                         (_job_id(job_id),))

        self.get(job_id)  # a clear error for an unknown id
        self._write(cancel)
        return self.get(job_id)

    def update_progress(self, job_id: int | str, **fields) -> bool:
        """Set progress fields (``PROGRESS_FIELDS``) of a running job; a finished job is left alone."""
        unknown = sorted(set(fields) - set(PROGRESS_FIELDS))
        if unknown:
            raise ValueError(f"unknown progress fields {', '.join(unknown)}; known: {', '.join(PROGRESS_FIELDS)}")
        return self._update(job_id, "state = 'running'", **fields) if fields else False

    def heartbeat(self, worker_pid: int, poll_interval: float = 1.0, max_parallel: int = 1) -> None:
        """The worker is alive: refresh its row and the heartbeat of the jobs it runs."""
        now = _now()

        def beat(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workers (pid, host, started, heartbeat, poll_interval, max_parallel) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pid) DO UPDATE SET heartbeat = excluded.heartbeat, "
                "poll_interval = excluded.poll_interval, max_parallel = excluded.max_parallel",
                (worker_pid, socket.gethostname(), now, now, poll_interval, max_parallel))
            conn.execute("UPDATE jobs SET heartbeat = ? WHERE state = 'running' AND worker_pid = ?", (now, worker_pid))

        self._write(beat)

    def remove_workers(self, keep: int | None = None) -> None:
        """Forget worker rows (all but ``keep``): their processes are gone."""
        self._write(lambda conn: conn.execute("DELETE FROM workers WHERE pid IS NOT ?", (keep,)))

    def _update(self, job_id: int | str, condition: str, **values) -> bool:
        columns = ", ".join(f"{column} = ?" for column in values)
        sql = f"UPDATE jobs SET {columns} WHERE id = ? AND {condition}"
        params = (*values.values(), _job_id(job_id))
        return self._write(lambda conn: conn.execute(sql, params).rowcount > 0)

    def _finish(self, job_id: int | str, state: str, error: str | None, message: str | None = None) -> bool:
        """Move an active job to a final state; a job already finished keeps its first outcome."""
        values: dict[str, Any] = {"state": state, "finished": _now(), "error": error}
        if message is not None:
            values["message"] = message
        return self._update(job_id, "state IN ('queued', 'running')", **values)


def _job_id(job_id: int | str) -> int:
    try:
        return int(job_id)
    except (TypeError, ValueError):
        raise JobNotFound(f"job ids are whole numbers, got {job_id!r}") from None


def _prepare(config: TrainConfig | dict, name: str | None) -> tuple[str, dict]:
    """Validate a config and fix what must not depend on the submitter's directory (relative paths)."""
    from rcl.config import SYNTHETIC, TrainConfig

    data = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    checked = TrainConfig.from_dict(data).check()
    name = name or checked.name or f"{checked.loss}-{checked.model}-s{checked.seed}"
    checked.name = checked.name or name
    # The worker may run in another directory than the submitter: pin relative paths now.
    if checked.data != SYNTHETIC:
        checked.data = str(Path(checked.data).expanduser().resolve())
    if checked.weights is not None:
        checked.weights = str(Path(checked.weights).expanduser().resolve())
    return name, checked.to_dict()


def _run_id(name: str, job_id: int) -> str:
    """``20261124-153000-<name>-j12``: sortable by time, readable, unique within one job store."""
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{tag}-j{job_id}"


# --- progress from the training child -----------------------------------------------------------


def progress_reporter(job_id: int | str, store: JobStore | None = None) -> Callable[[dict], None]:
    """A training callback that writes progress events into the job store.

    A ``step`` event within 0.5 s of the previous write is skipped (~2 writes/s at most);
    ``start``, ``epoch``, ``message`` and ``end`` are always written. A store error is reported once on stderr and never stops training: losing a
    progress update is better than losing hours of training.
    """
    store = store or JobStore()
    last_write = 0.0
    warned = False

    def report(event: dict) -> None:
        nonlocal last_write, warned
        kind = event.get("kind")
        if kind == "epoch":
            # val_cer is None when CER is undefined (no malignant cases): written as such, not skipped.
            fields = {"epoch": event.get("epoch"), "epochs": event.get("epochs"), "step": event.get("step"),
                      "total_steps": event.get("total_steps"), "loss": event.get("train_loss"),
                      "val_cer": event.get("val_cer"), "val_f1": event.get("val_f1_macro")}
        elif kind == "step":
            if time.monotonic() - last_write < STEP_WRITE_INTERVAL:
                return
            fields = {k: event[k] for k in ("epoch", "epochs", "step", "total_steps", "loss") if event.get(k) is not None}
        elif kind == "start":
            fields = {"epochs": event.get("epochs"), "total_steps": event.get("total_steps"),
                      "epoch": event.get("resumed_from_epoch", 0), "message": "started"}
        elif kind == "message":
            fields = {"message": event.get("message")}
        elif kind == "end":
            fields = {"message": "training finished"}
        else:
            return
        try:
            store.update_progress(job_id, **fields)
            last_write = time.monotonic()
        except sqlite3.Error as exc:
            if not warned:
                print(f"rcl: could not record job progress ({exc}); training goes on", file=sys.stderr)
                warned = True

    return report


def job_history(job: Job | int | str, store: JobStore | None = None) -> list[dict]:
    """Per-epoch validation metrics so far, from the run folder's ``history.jsonl``."""
    from rcl.runs import read_history

    if not isinstance(job, Job):
        job = (store or JobStore()).get(job)
    return read_history(job.run_dir)


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log, reading only its end; tqdm's ``\\r`` redraws collapsed."""
    if lines <= 0 or not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = min(size, max(64 * 1024, lines * 400))
        fh.seek(size - chunk)
        text = fh.read().decode("utf-8", errors="replace")
    out = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    if chunk < size:
        out = out[1:]  # the first line is cut
    if out and out[-1] == "":
        out = out[:-1]
    return "\n".join(out[-lines:])


def job_logs(job_id: int | str, tail: int = 200, store: JobStore | None = None) -> str:
    """The last ``tail`` lines of the job's ``train.log`` ("" before it started)."""
    job = (store or JobStore()).get(job_id)
    return _tail(job.run_dir / "train.log", tail)


# --- the worker ---------------------------------------------------------------------------------


def default_command(job: Job, config_path: Path) -> list[str]:
    """The child a job runs: ``rcl train`` of this interpreter, reporting progress to the store."""
    return [sys.executable, "-m", "rcl", "train", "--config", str(config_path), "--out", str(job.run_dir),
            "--job-id", str(job.id)]


def _pid_alive(pid: int | None) -> bool:
    """True for a live process (a zombie, already dead but not reaped, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_job_child(pid: int | None) -> bool:
    """A live process that leads its own process group, as every job child does (guards pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed by hand)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    return f"the training process exited with code {code}"


def _with_log(reason: str, run_dir: Path) -> str:
    tail = _tail(run_dir / "train.log", LOG_TAIL_IN_ERROR)
    return f"{reason}\n--- last lines of train.log ---\n{tail}" if tail else reason


def _gpu_ids() -> list[str]:
    """The GPUs this worker may hand out, as ``CUDA_VISIBLE_DEVICES`` values.

    Counted by ``torch.cuda.device_count()`` in a throw-away interpreter, so the long-lived worker
    never loads torch or holds a CUDA context. ``CUDA_VISIBLE_DEVICES=""`` means no GPU, uncounted.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    try:
        result = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                                capture_output=True, text=True, timeout=120, check=True)
        count = int(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(count)]
    return ids[:count]


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    gpu: str | None
    term_sent: float | None = None


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
        try:
            job.run_dir.mkdir(parents=True, exist_ok=True)
            config_path = job.run_dir / "job_config.json"
            config_path.write_text(json.dumps(job.config, indent=2))
            command = self.command_factory(job, config_path)
            env = {**os.environ, "RCL_HOME": str(self.store.home), "PYTHONUNBUFFERED": "1"}
            env.setdefault("TQDM_MININTERVAL", "5")  # a readable train.log, not a redraw per step
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            with (job.run_dir / "train.log").open("ab") as log:
                log.write(f"[{datetime.now().isoformat(timespec='seconds')}] job {job.id} on "
                          f"{'GPU ' + gpu if gpu is not None else 'CPU'}: {' '.join(command)}\n".encode())
                log.flush()
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True)
        except OSError as exc:
            self.store.mark_failed(job.id, f"could not start the training process: {exc}")
            return
        self.store.mark_running(job.id, process.pid)
        self.running[job.id] = _Running(job, process, gpu)

    def reap(self) -> None:
        """Record the outcome of every child that has exited."""
        for job_id, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[job_id]
            self.finished += 1
            run_dir = run.job.run_dir
            if code == 0 and (run_dir / "metrics.json").is_file():
                self.store.mark_done(job_id)  # finished before a late cancel could stop it: keep the result
            elif run.term_sent is not None or self.store.get(job_id).cancel_requested:
                self.store.mark_cancelled(job_id, "cancelled while running")
            elif code == 0:
                self.store.mark_failed(job_id, _with_log("the training process exited without writing metrics.json",
                                                         run_dir))
            else:
                self.store.mark_failed(job_id, _with_log(_exit_reason(code), run_dir))

    def enforce_cancels(self) -> None:
        """SIGTERM the process group of each cancelled job; SIGKILL it after ``kill_grace`` seconds."""
        if not self.running:
            return
        wanted = {job.id for job in self.store.list(states=["running"]) if job.cancel_requested}
        now = time.monotonic()
        for job_id, run in self.running.items():
            if run.term_sent is None and job_id in wanted:
                _signal_group(run.process.pid, signal.SIGTERM)
                run.term_sent = now
            elif run.term_sent is not None and now - run.term_sent > self.kill_grace:
                _signal_group(run.process.pid, signal.SIGKILL)

    def recover(self) -> None:
        """Settle jobs a previous worker left ``running``: it is gone (we hold the lock)."""
        self.store.remove_workers(keep=os.getpid())
        for job in self.store.list(states=["running"]):
            if job.pid is None:
                self.store.requeue(job.id)  # claimed but never started: nothing lost, it runs again
            elif job.cancel_requested:  # cancelled while no worker was watching: finish the cancel
                if _is_job_child(job.pid):
                    stop_group(job.pid, self.kill_grace)
                self.store.mark_cancelled(job.id, "cancelled while running")
            elif _is_job_child(job.pid):
                stop_group(job.pid, self.kill_grace)
                self.store.mark_failed(job.id, _with_log(
                    f"the worker (pid {job.worker_pid}) stopped while the job was running; its orphaned "
                    f"training process {job.pid} was stopped", job.run_dir))
            else:
                self.store.mark_failed(job.id, _with_log(
                    f"process {job.pid} vanished: the worker (pid {job.worker_pid}) stopped while the job "
                    "was running", job.run_dir))

    def shutdown(self) -> None:
        """The worker is stopping: stop its children and say why their jobs did not finish."""
        self.reap()  # a child that just finished keeps its real outcome
        for run in self.running.values():
            _signal_group(run.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        for run in self.running.values():
            try:
                run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(run.process.pid, signal.SIGKILL)
                run.process.wait()
            self.store.mark_failed(run.job.id, _with_log(
                f"the worker stopped ({self.stop_signal or 'error'}) while the job was running", run.job.run_dir))
        self.running.clear()


def stop_group(pid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM a job child's process group, then SIGKILL it if still alive after ``grace`` seconds."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)


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
               stop_when_idle: bool = False, *, store: JobStore | None = None,
               command_factory: Callable[[Job, Path], list[str]] | None = None,
               kill_grace: float = KILL_GRACE) -> int:
    """Run queued jobs, oldest first, each in its own child process; return how many finished.

    ``max_parallel``: concurrent jobs (default ``$RCL_MAX_PARALLEL``, else one per visible GPU, one
    on CPU). ``once``: run at most one job, then return. ``stop_when_idle``: return when nothing is
    queued or running (otherwise run until SIGTERM/SIGINT). ``command_factory(job, config_path)``
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
            claimed = 0
            while worker.stop_signal is None:
                store.heartbeat(os.getpid(), poll_interval, len(worker.slots) if worker.slots else max_parallel or 0)
                worker.reap()
                worker.enforce_cancels()
                # GPUs are counted (resolve_slots) only once there is a job to place.
                while ((not once or claimed == 0) and store.count("queued")
                       and len(worker.running) < len(worker.resolve_slots())):
                    job = store.claim_next(os.getpid())
                    if job is None:
                        break
                    claimed += 1
                    worker.launch(job)
                if not worker.running and ((once and claimed) or ((once or stop_when_idle) and not store.count("queued"))):
                    break
                time.sleep(poll_interval)
        finally:
            worker.shutdown()
            store.remove_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return worker.finished


# --- the worker seen from outside (the app, ``rcl submit``) -------------------------------------

_SPAWNED: list[subprocess.Popen] = []  # workers this process started; polled so they never linger as zombies


def worker_status(store: JobStore | None = None) -> dict:
    """Is a worker serving this data directory? ``alive``, ``pid``, ``heartbeat``, ``running`` job ids, ..."""
    store = store or JobStore()
    for process in _SPAWNED:
        process.poll()  # reap a spawned worker that exited, so its pid reads as gone
    now, host = _now(), socket.gethostname()
    status: dict[str, Any] = {"alive": False, "pid": None, "heartbeat": None, "started": None,
                              "max_parallel": None, "log": str(store.home / "worker.log")}
    for row in store.workers():
        fresh = now - row["heartbeat"] < max(30.0, 5 * row["poll_interval"])
        if fresh and (row["host"] != host or _pid_alive(row["pid"])):
            status.update(alive=True, pid=row["pid"], heartbeat=row["heartbeat"], started=row["started"],
                          max_parallel=row["max_parallel"])
            break
    status["running"] = [job.id for job in store.list(states=["running"])]
    status["queued"] = store.count("queued")
    return status


def ensure_worker(max_parallel: int | None = None, store: JobStore | None = None) -> int:
    """Start a detached ``rcl worker`` unless one is alive; return the live worker's pid.

    Detached (own session, output to ``worker.log``) so it outlives the app and the terminal. Two
    callers racing here may start two workers; the worker lock lets only one of them run.
    """
    store = store or JobStore()
    status = worker_status(store)
    if status["alive"]:
        return status["pid"]
    starting = [p for p in _SPAWNED if p.poll() is None]
    if starting:  # started by an earlier call and not yet beating (app reruns come fast)
        return starting[-1].pid
    home = store.home
    command = [sys.executable, "-m", "rcl", "worker"]
    if max_parallel is not None:
        command += ["--max-parallel", str(max_parallel)]
    with (home / "worker.log").open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "RCL_HOME": str(home)}, start_new_session=True)
    _SPAWNED.append(process)
    return process.pid


def make_ablation_configs(base: TrainConfig, seeds: int | Iterable[int]) -> list[TrainConfig]:
    """The paper's grid (CE, WCE, Focal, LS and the 7 RCL configurations) × seeds, from ``base``.

    ``seeds``: a count (seeds 0..N-1) or the seeds themselves. One definition of the grid, in
    :mod:`rcl.ablation`, serves both the foreground ``rcl ablation`` and background submissions.
    """
    from rcl.ablation import ablation_configs

    return ablation_configs(base, range(seeds) if isinstance(seeds, int) else seeds)
