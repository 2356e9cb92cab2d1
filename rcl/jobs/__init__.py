"""Background training jobs: a SQLite job store and a worker that runs each job in a child process.

Why this shape: Streamlit reruns scripts and kills threads on refresh, so training cannot live in
the app. The app (and ``rcl submit``) only write rows to ``$RCL_HOME/jobs.sqlite``; one detached
worker per data directory (``rcl worker``, started by :func:`ensure_worker`) claims queued jobs and
runs each one as ``rcl train --job-id ID`` in its own process session, so a job survives the
browser, the app and the worker.

Modules: :mod:`~rcl.jobs.store` (the SQLite store, schema, migrations), :mod:`~rcl.jobs.worker`
(the supervisor), :mod:`~rcl.jobs.client` (what the app and CLI call), :mod:`~rcl.jobs.progress`
(the training side), :mod:`~rcl.jobs.job` (one job's record), :mod:`~rcl.jobs.processes` and :mod:`~rcl.jobs.logs` (their helpers),
:mod:`~rcl.jobs.view` (a job as a person reads it: one progress figure, time left, failure reason).

The package sits below the training engine: it imports neither torch nor any training module,
so ``rcl jobs``, the worker and the app's job panel stay light. Only submission validates a
config (``rcl.config``, imported when a job is submitted).
"""

from rcl.jobs.client import (
    WORKER_IDLE_MINUTES,
    cancel,
    ensure_worker,
    job_history,
    job_logs,
    list_jobs,
    stop_worker,
    submit,
    worker_status,
)
from rcl.jobs.job import ACTIVE_STATES, STATES, Job
from rcl.jobs.progress import STEP_WRITE_INTERVAL, progress_reporter
from rcl.jobs.store import SCHEMA_VERSION, JobNotFound, JobStore, JobStoreError
from rcl.jobs.worker import default_command, run_worker

__all__ = [
    "ACTIVE_STATES",
    "SCHEMA_VERSION",
    "STATES",
    "STEP_WRITE_INTERVAL",
    "WORKER_IDLE_MINUTES",
    "Job",
    "JobNotFound",
    "JobStore",
    "JobStoreError",
    "cancel",
    "default_command",
    "ensure_worker",
    "job_history",
    "job_logs",
    "list_jobs",
    "progress_reporter",
    "run_worker",
    "stop_worker",
    "submit",
    "worker_status",
]
