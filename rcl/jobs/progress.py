"""The training side of a job: a callback that writes progress events into the job store."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable

from rcl.jobs.store import JobStore, JobStoreError

STEP_WRITE_INTERVAL = 0.5  # at most ~2 writes/s for "step" events


def _fields(event: dict) -> dict | None:
    """The job-store fields an event sets (None: nothing to write)."""
    kind = event.get("kind")
    if kind == "epoch":
        # val_cer is None when CER is undefined (no malignant cases): written as such, not skipped.
        return {"epoch": event.get("epoch"), "epochs": event.get("epochs"), "step": event.get("step"),
                "total_steps": event.get("total_steps"), "loss": event.get("train_loss"),
                "val_cer": event.get("val_cer"), "val_f1": event.get("val_f1_macro")}
    if kind == "step":
        return {k: event[k] for k in ("epoch", "epochs", "step", "total_steps", "loss") if event.get(k) is not None}
    if kind == "start":
        return {"epochs": event.get("epochs"), "total_steps": event.get("total_steps"),
                "epoch": event.get("resumed_from_epoch", 0), "message": "started"}
    if kind == "message":
        return {"message": event.get("message")}
    if kind == "end":
        return {"message": "training finished"}
    return None


def progress_reporter(job_id: int | str, store: JobStore | None = None) -> Callable[[dict], None]:
    """A training callback that writes progress events into the job store.

    A ``step`` event within 0.5 s of the previous write is skipped (~2 writes/s at most);
    ``start``, ``epoch``, ``message`` and ``end`` are always written. A store error is reported
    once on stderr and never stops training: losing a progress update is better than losing hours
    of training.
    """
    store = store or JobStore()
    last_write = 0.0
    warned = False

    def report(event: dict) -> None:
        nonlocal last_write, warned
        fields = _fields(event)
        if fields is None or (event.get("kind") == "step" and time.monotonic() - last_write < STEP_WRITE_INTERVAL):
            return
        try:
            store.update_progress(job_id, **fields)
            last_write = time.monotonic()
        except (JobStoreError, sqlite3.Error) as exc:
            if not warned:
                print(f"rcl: could not record job progress ({exc}); training goes on", file=sys.stderr)
                warned = True

    return report
