"""How Home and Train show background jobs: the worker line, one progress bar per job, the jobs table.

Layout only: every figure and word comes from ``rcl`` (``rcl.job_status_text``, ``rcl.job_table_row``...).
Both pages call these inside ``st.fragment(run_every=POLL_SECONDS)``, so status moves without a reload.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import rcl

POLL_SECONDS = 2.0  # how often the job panels re-read the job store


def worker_line(status: dict) -> str:
    """``"Worker: running (pid 42) · 1 running · 2 waiting"`` with the lifecycle in words."""
    if status["alive"]:
        state = f":material/play_circle: running (pid {status['pid']})"
    elif status.get("starting"):
        state = f":material/hourglass_top: starting (pid {status['starting']})"
    else:
        state = ":material/pause_circle: not running (it starts when a job is launched)"
    return (f"Worker: {state} · {len(status['running'])} training · {status['queued']} waiting · "
            f"it stops by itself after {rcl.WORKER_IDLE_MINUTES:g} min with nothing to do")


def job_progress(job) -> None:
    """One job: a bar and one line (state, epoch, percentage once, time left); a failure's reason in red."""
    text = f"**{job.name}** (job {job.id}): {rcl.job_status_text(job)}"
    if job.state == "failed":
        st.error(text, icon=":material/error:")
    elif job.is_finished:
        st.write(text)
    else:
        st.progress(rcl.job_fraction(job) or 0.0, text=text)


def jobs_table(jobs: list) -> None:
    """Every job, newest first; blanks where a value is unknown; the full message in its own column."""
    table = pd.DataFrame([rcl.job_table_row(job) for job in reversed(jobs)])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "id": st.column_config.NumberColumn("id", width="small"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "val CER": st.column_config.TextColumn("val CER", help="argmax decision on the validation split"),
        "val F1": st.column_config.TextColumn("val F1", help="argmax decision on the validation split"),
        "message": st.column_config.TextColumn("message", width="large"),
    })
    failed = [job for job in reversed(jobs) if job.state == "failed"]
    if failed:
        with st.expander(f"Why {len(failed)} job(s) failed (full messages)"):
            for job in failed:
                st.write(f"**{job.name}** (job {job.id}): {rcl.job_failure_reason(job)}")
