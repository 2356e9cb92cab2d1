"""The job store: one SQLite file of jobs and worker heartbeats, safe for many processes at once.

Concurrency: every call opens a short-lived connection; writes use ``BEGIN IMMEDIATE`` (the write
lock is taken up front, so two writers never deadlock upgrading a read lock), a long
``busy_timeout`` and a small retry, so "database is locked" never reaches the user. WAL mode lets
readers (the app polling progress) run while a writer commits.

Faults of the file itself (read-only, disk full, damaged, unopenable) become one
:class:`JobStoreError` that says what to do, never a raw ``sqlite3`` traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcl import paths
from rcl.jobs.job import ACTIVE_STATES, LOCAL, STATES, Job, job_dir, run_folder_name, submission
from rcl.jobs.schema import MIGRATIONS, SCHEMA_VERSION, JobStoreError, store_error

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "JobNotFound", "JobStore", "JobStoreError", "store_error"]

if TYPE_CHECKING:
    from rcl.config import TrainConfig

PROGRESS_FIELDS = ("epoch", "epochs", "step", "total_steps", "loss", "val_cer", "val_f1", "message")
BUSY_TIMEOUT_MS = 30_000
LOCK_RETRIES = 8
MAX_JOB_ID = 2**63 - 1  # SQLite's INTEGER range

class JobNotFound(ValueError):
    """No job with that id (a ValueError, so the CLI prints it as a one-line user error)."""


def _now() -> float:
    return time.time()


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
        # The file is first opened (and migrated) on first use, so a page can hold a store whose
        # file is damaged and show the fault where it reads, as a message, not at import.
        self._schema_checked = False
        self._schema_lock = threading.RLock()  # threads sharing a store: one migrates, the others wait
        self._migrating = False

    # --- connections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._schema_checked:
            with self._schema_lock:
                if not self._schema_checked and not self._migrating:  # _migrate connects too
                    self._migrating = True
                    try:
                        self._migrate()
                        self._schema_checked = True
                    finally:
                        self._migrating = False
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    def _retry(self, operation: Callable[[], Any]) -> Any:
        """Run ``operation``, retrying a lock that outlived ``busy_timeout``; other faults → JobStoreError.

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
                    raise store_error(self.path, exc) from exc
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
            except sqlite3.DatabaseError as exc:  # damaged file, full disk, ...
                raise store_error(self.path, exc) from exc

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

        return self._retry(attempt)

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        def attempt():
            with self._connect() as conn:
                return conn.execute(sql, tuple(params)).fetchall()

        return self._retry(attempt)

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
        prepared = submission(config, name)
        return self._write(lambda conn: self._insert(conn, prepared, group))

    def submit_many(self, configs: Iterable[TrainConfig | dict], group: str | None = None, *,
                    run_dirs: Iterable[Path] | None = None, executor: str = LOCAL,
                    owner: int | None = None) -> list[Job]:
        """Queue several configs in ONE transaction: all are stored, or (one invalid) none is.

        ``run_dirs`` fixes each job's run folder (a sweep's trials): the row already kept for that
        folder is reused, reset to ``queued`` unless it is a local job still queued or running.
        ``executor`` says who runs the jobs (the local worker claims only ``"local"`` ones);
        ``owner`` is the pid of the process that runs them elsewhere (a Ray sweep driver).
        """
        configs = list(configs)
        folders = [None] * len(configs) if run_dirs is None else [Path(d) for d in run_dirs]
        if len(folders) != len(configs):
            raise ValueError(f"run_dirs: {len(folders)} folders for {len(configs)} configs")
        prepared = []
        for i, config in enumerate(configs):
            try:
                prepared.append(submission(config, None))
            except ValueError as exc:
                label = config.get("name") if isinstance(config, dict) else config.name
                raise ValueError(f"config {i + 1}{f' ({label})' if label else ''}: {exc}") from exc
        return self._write(lambda conn: [self._insert(conn, p, group, d, executor, owner)
                                         for p, d in zip(prepared, folders)])

    def _insert(self, conn: sqlite3.Connection, prepared: tuple[str, dict], group: str | None,
                run_dir: Path | None = None, executor: str = LOCAL, owner: int | None = None) -> Job:
        name, config = prepared
        if run_dir is not None:
            row = conn.execute("SELECT * FROM jobs WHERE run_dir = ?", (str(run_dir),)).fetchone()
            if row is not None:
                if row["executor"] != LOCAL or row["state"] not in ACTIVE_STATES:  # else: it runs already
                    conn.execute(f"UPDATE jobs SET {', '.join(f'{c} = NULL' for c in _RESET)}, state = 'queued', "
                                 "cancel_requested = 0, name = ?, group_name = ?, config = ?, created = ?, "
                                 "executor = ?, worker_pid = ? WHERE id = ?",
                                 (name, group, json.dumps(config), _now(), executor, owner, row["id"]))
                return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
        cursor = conn.execute(
            "INSERT INTO jobs (name, group_name, config, state, created, executor, worker_pid, run_dir) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
            (name, group, json.dumps(config), _now(), executor, owner, None if run_dir is None else str(run_dir)),
        )
        job_id = cursor.lastrowid
        if run_dir is not None:
            return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        run_dir = self.home / run_folder_name(name, job_id)
        # A store deleted and recreated can repeat ids; never reuse a folder (finished, training or a job's).
        while any(p.exists() for p in (run_dir, paths.partial_dir(run_dir), job_dir(run_dir))):
            run_dir = run_dir.with_name(f"{run_dir.name}-{random.randbytes(2).hex()}")
        conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (str(run_dir), job_id))
        return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    # --- queries -------------------------------------------------------------------------------

    def get(self, job_id: int | str) -> Job:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (_job_id(job_id),))
        if not rows:
            raise JobNotFound(f"no job with id {job_id} in {self.path} (see `rcl jobs`)")
        return Job.from_row(rows[0])

    def list(self, states: Iterable[str] | None = None, group: str | None = None,
             executor: str | None = None) -> list[Job]:
        """Jobs in submission (= queue) order, optionally only some states, one group or one executor."""
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
        if executor is not None:
            sql += " AND executor = ?"
            params.append(executor)
        return [Job.from_row(row) for row in self._read(sql + " ORDER BY id", params)]

    def count(self, states: Iterable[str] | str, executor: str | None = None) -> int:
        states = [states] if isinstance(states, str) else list(states)
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})"
        if executor is not None:
            sql, states = sql + " AND executor = ?", [*states, executor]
        return self._read(sql, states)[0][0]

    def workers(self) -> list[dict]:
        """Worker heartbeat rows, freshest first."""
        return [dict(row) for row in self._read("SELECT * FROM workers ORDER BY heartbeat DESC")]

    # --- state transitions ---------------------------------------------------------------------

    def claim_next(self, worker_pid: int | None = None) -> Job | None:
        """Atomically take the oldest queued local job and mark it running (no child pid yet)."""

        def claim(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT id FROM jobs WHERE state = 'queued' AND executor = ? ORDER BY id LIMIT 1",
                               (LOCAL,)).fetchone()
            if row is None:
                return None
            now = _now()
            conn.execute("UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, worker_pid = ? "
                         "WHERE id = ?", (now, now, worker_pid or os.getpid(), row["id"]))
            return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

        return self._write(claim)

    def mark_running(self, job_id: int | str, pid: int, pid_start: str | None = None) -> bool:
        """Record the child process of a claimed job (the worker calls this right after starting it)."""
        return self._update(job_id, "state = 'running'", pid=pid, pid_start=pid_start, heartbeat=_now())

    def mark_started(self, job_id: int | str, pid: int, message: str) -> bool:
        """A job run elsewhere (a Ray trial) started or restarted: ``pid`` on its node, ``message`` where."""
        return self._update(job_id, "state IN ('queued', 'running')", state="running", pid=pid, message=message,
                            started=_now(), heartbeat=_now())

    def beat_jobs(self, owner: int) -> None:
        """The process running jobs elsewhere (``owner``, a Ray sweep driver) is alive."""
        self._write(lambda conn: conn.execute("UPDATE jobs SET heartbeat = ? WHERE worker_pid = ? AND executor != ? "
                                              "AND state IN ('queued', 'running')", (_now(), owner, LOCAL)))

    def fail_orphans(self, stale_after: float, message: str) -> list[int]:
        """Fail the active jobs of other executors whose owner has not beaten for ``stale_after`` seconds.

        Only reads unless there is such a job, so listing jobs still works on a read-only store.
        """
        stale = ("executor != ? AND state IN ('queued', 'running') AND COALESCE(heartbeat, created) < ?")
        params = (LOCAL, _now() - stale_after)
        ids = [row["id"] for row in self._read(f"SELECT id FROM jobs WHERE {stale}", params)]
        if ids:
            self._write(lambda conn: conn.execute(f"UPDATE jobs SET state = 'failed', finished = ?, error = ? "
                                                  f"WHERE {stale}", (_now(), message, *params)))
        return ids

    def adopt(self, job_id: int | str, worker_pid: int) -> bool:
        """A new worker takes over watching a running job whose child outlived its worker."""
        return self._update(job_id, "state = 'running'", worker_pid=worker_pid, heartbeat=_now())

    def mark_done(self, job_id: int | str) -> bool:
        return self._finish(job_id, "done", None)

    def mark_failed(self, job_id: int | str, error: str) -> bool:
        return self._finish(job_id, "failed", error)

    def mark_cancelled(self, job_id: int | str, message: str | None = None) -> bool:
        return self._finish(job_id, "cancelled", None, message)

    def requeue(self, job_id: int | str, message: str | None = None, *, resume: bool = False) -> bool:
        """Put a running job back at its place in the queue.

        By default only a job claimed but whose process never started; ``resume=True`` also one whose
        child is gone (interrupted): its next child resumes from the run's last checkpoint by itself.
        """
        condition = "state = 'running'" + ("" if resume else " AND pid IS NULL")
        values: dict[str, Any] = {"state": "queued", "started": None, "heartbeat": None, "worker_pid": None,
                                  "pid": None, "pid_start": None}
        if message is not None:
            values["message"] = message
        return self._update(job_id, condition, **values)

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


# What a reused row (a sweep's trial run again) forgets of its previous attempt.
_RESET = ("started", "finished", "epoch", "epochs", "step", "total_steps", "loss", "val_cer", "val_f1", "message",
          "pid", "pid_start", "heartbeat", "error")


def _job_id(job_id: int | str) -> int:
    """A job id as SQLite stores it; anything else is "no such job" (never an OverflowError)."""
    try:
        value = int(job_id)
    except (TypeError, ValueError):
        raise JobNotFound(f"job ids are whole numbers, got {job_id!r} (see `rcl jobs`)") from None
    if not 1 <= value <= MAX_JOB_ID:
        raise JobNotFound(f"no job with id {job_id} (see `rcl jobs`)")
    return value
