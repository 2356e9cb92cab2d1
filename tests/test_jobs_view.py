"""``rcl.jobs.view``: one progress figure, the time left, blanks for unknowns, a failed job's reason."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rcl.jobs.job import Job
from rcl.jobs.logs import with_log
from rcl.jobs.view import duration, epoch_text, eta_seconds, failure_reason, fraction, status_text, table_row


def job(**fields) -> Job:
    base = {"id": 7, "name": "demo", "group": None, "config": {}, "state": "running",
            "run_dir": Path("/tmp/runs/x-j7"), "created": 0.0, "started": 100.0}
    return Job(**{**base, **fields})


def test_one_figure_from_steps_even_when_the_epoch_count_says_otherwise():
    # the table: 3 of 5 epochs read as 60% beside 42% of the steps; the steps win, everywhere
    running = job(epoch=3, epochs=5, step=42, total_steps=100)
    assert fraction(running) == 0.42
    assert epoch_text(running) == "epoch 3 of 5"
    text = status_text(running, now=100.0 + 42.0)
    assert text == "training · epoch 3 of 5 · 42% · about 58 s left"
    assert text.count("%") == 1
    row = table_row(running, now=142.0)
    assert row["progress"] == 0.42 and row["epoch"] == "3 of 5" and row["time left"] == "58 s"


def test_epochs_only_before_step_reports_and_nothing_before_any():
    assert fraction(job(epoch=2, epochs=4)) == 0.5
    assert fraction(job(state="queued", started=None)) is None
    assert fraction(job(state="done")) == 1.0


def test_blanks_not_none_for_unknown_values():
    row = table_row(job(state="queued", started=None, message=None))
    assert row["epoch"] == row["time left"] == row["message"] == row["val CER"] == row["val F1"] == ""
    assert math.isnan(row["progress"])
    assert table_row(job(val_cer=0.25, val_f1=0.5))["val CER"] == "0.250"
    assert "None" not in status_text(job(state="queued", started=None))


def test_no_eta_until_some_progress_and_none_when_not_running():
    assert eta_seconds(job(step=1, total_steps=1000), now=200.0) is None
    assert eta_seconds(job(state="done", step=10, total_steps=10), now=200.0) is None
    assert eta_seconds(job(step=50, total_steps=100), now=160.0) == 60.0
    assert "estimating the time left" in status_text(job(step=1, total_steps=1000), now=101.0)


@given(st.floats(0, 10**6, allow_nan=False))
def test_duration_reads_back_to_the_minute(seconds):
    text = duration(seconds)
    parts = dict(zip(text.split()[1::2], map(int, text.split()[0::2])))
    total = parts.get("h", 0) * 3600 + parts.get("min", 0) * 60 + parts.get("s", 0)
    assert abs(total - seconds) < (60 if "h" in parts else 1)


def test_failure_reason_is_the_logs_last_line_with_the_exit(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("[t] job 3 on CPU: python -m rcl train\nloading data\n"
                   "rcl train: error: could not load pretrained weights for 'resnet18' (OSError): this machine may "
                   "be offline. Download them once elsewhere and pass --weights FILE, or train without --pretrained.\n")
    failed = job(state="failed", error=with_log("the training process exited with code 2", log))
    reason = failure_reason(failed)
    assert reason.startswith("rcl train: error: could not load pretrained weights")
    assert reason.endswith("pass --weights FILE, or train without --pretrained. "
                           "(the training process exited with code 2)")
    assert "\n" not in reason
    assert status_text(failed) == f"failed · {reason}"
    assert table_row(failed)["message"] == reason


def test_failure_without_a_log_is_the_reason_alone():
    failed = job(state="failed", error="could not start the training process: [Errno 2] no such file")
    assert failure_reason(failed) == "could not start the training process: [Errno 2] no such file"
    assert failure_reason(job(state="done")) == ""


def test_messages_are_never_cut():
    message = "cancelled before it started, because the user pressed Cancel all on the ablation grid"
    assert table_row(job(state="cancelled", message=message))["message"] == message
    assert status_text(job(state="cancelled", message=message)) == f"cancelled · {message}"
