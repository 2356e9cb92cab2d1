"""The job database's schema (its migrations, version by version) and its faults, each as one sentence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    # v2: the child's start time, so a later worker can tell its own orphan from a reused pid.
    ["ALTER TABLE jobs ADD COLUMN pid_start TEXT"],
    # v3: who runs the job: the local worker, or a sweep driver handing it to Ray (rcl.ray_executor).
    ["ALTER TABLE jobs ADD COLUMN executor TEXT NOT NULL DEFAULT 'local'"],
]
SCHEMA_VERSION = len(MIGRATIONS)


class JobStoreError(RuntimeError):
    """The job database file itself failed (read-only, full, damaged): the message says what to do."""


# (words in SQLite's message, what happened, what to do): the first match names the fault.
STORE_FAULTS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("readonly", "read-only"), "is read-only",
     "make the file and its folder writable, or set RCL_HOME to a writable folder"),
    (("full", "disk i/o"), "could not be written (disk full?)", "free space on that disk and retry"),
    (("not a database", "malformed", "corrupt"), "is damaged",
     "move it aside and retry (its job records are lost; finished run folders are kept)"),
    (("unable to open",), "cannot be opened",
     "check that its folder exists and is writable, or set RCL_HOME to a writable folder"),
    (("locked", "busy"), "stayed locked by another process", "retry in a moment"),
)


def store_error(path: Path, exc: sqlite3.Error) -> JobStoreError:
    """One plain sentence for a failure of the database file: what happened and what to do."""
    text = str(exc).lower()
    for words, what, todo in STORE_FAULTS:
        if any(word in text for word in words):
            return JobStoreError(f"the job database {path} {what} ({exc}): {todo}")
    return JobStoreError(f"the job database {path} failed ({exc}): move it aside and retry")
