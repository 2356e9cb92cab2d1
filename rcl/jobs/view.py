"""A job as a person reads it: one progress figure, the time left, blanks for what is unknown, and
the reason a failed job gave (the last line of its log, not only an exit code).

Used by the app's Home and Train pages; plain Python, no Streamlit.
"""

from __future__ import annotations

import math
import time

from rcl.jobs.job import Job
from rcl.jobs.logs import LOG_MARKER
from rcl.text import num

STATE_WORDS = {"queued": "waiting", "running": "training", "done": "finished", "failed": "failed",
               "cancelled": "cancelled"}
MIN_ETA_FRACTION = 0.02  # below this share done, the time left is a guess: not shown


def fraction(job: Job) -> float | None:
    """Share of the job done, in [0, 1]: steps when reported, else whole epochs; None before any report.

    The one progress figure: the bar, the percentage and the time left all derive from it.
    """
    if job.state == "done":
        return 1.0
    if job.step is not None and job.total_steps:
        return min(1.0, max(0.0, job.step / job.total_steps))
    if job.epoch is not None and job.epochs:
        return min(1.0, max(0.0, job.epoch / job.epochs))
    return None


def eta_seconds(job: Job, now: float | None = None) -> float | None:
    """Seconds left for a running job, from its pace so far (None when it cannot be told yet)."""
    done = fraction(job)
    if job.state != "running" or job.started is None or done is None or done < MIN_ETA_FRACTION:
        return None
    elapsed = max(0.0, (time.time() if now is None else now) - job.started)
    return elapsed * (1.0 - done) / done


def duration(seconds: float | None) -> str:
    """``75`` → ``"1 min 15 s"``, ``4000`` → ``"1 h 7 min"``; "" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def epoch_text(job: Job) -> str:
    """``"epoch 3 of 5"`` (the epoch being trained, or the last one when finished); "" when unknown."""
    if not job.epochs:
        return ""
    current = job.epoch or 0
    if job.state == "running" and job.step is not None and job.total_steps:
        steps_per_epoch = job.total_steps / job.epochs
        current = min(job.epochs, int(job.step // steps_per_epoch) + (job.step < job.total_steps))
    return f"epoch {current} of {job.epochs}"


def failure_reason(job: Job) -> str:
    """Why a job failed, as one line: the log's last line (the trainer's own error) and the exit.

    ``"rcl train: could not load pretrained weights ... pass --weights FILE (the training process
    exited with code 2)"``; "" for a job that did not fail.
    """
    if job.state != "failed" or not job.error:
        return ""
    reason, _, log = job.error.partition(LOG_MARKER)
    reason = " ".join(reason.split())
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    if not lines:
        return reason
    last = lines[-1]
    return f"{last} ({reason})" if reason and reason not in last else last


def status_text(job: Job, now: float | None = None) -> str:
    """One line for a job: ``"training · epoch 3 of 5 · 42% · about 1 min 20 s left"``.

    The percentage appears once and only here; a failed job carries its reason.
    """
    parts = [STATE_WORDS.get(job.state, job.state)]
    done = fraction(job)
    if job.state == "running":
        parts += [p for p in (epoch_text(job), "" if done is None else f"{100 * done:.0f}%") if p]
        left = duration(eta_seconds(job, now))
        parts.append(f"about {left} left" if left else "estimating the time left")
    elif job.state == "done":
        parts.append(f"after {job.epoch} epoch{'s' if job.epoch != 1 else ''}" if job.epoch else "")
    elif job.state == "failed":
        parts.append(failure_reason(job))
    elif job.message:
        parts.append(job.message)
    return " · ".join(p for p in parts if p)


def table_row(job: Job, now: float | None = None) -> dict:
    """One row of the jobs table: "" where a value is unknown (``progress`` NaN: an empty bar)."""
    done = fraction(job)
    return {
        "id": job.id,
        "name": job.name,
        "state": STATE_WORDS.get(job.state, job.state),
        "progress": float("nan") if done is None else done,
        "epoch": epoch_text(job).removeprefix("epoch "),
        "time left": duration(eta_seconds(job, now)),
        "val CER": "" if job.val_cer is None else num(job.val_cer),
        "val F1": "" if job.val_f1 is None else num(job.val_f1),
        "message": failure_reason(job) or job.message or "",
    }
