"""The Train page's live panels: the job list with the chosen job's progress, validation curves,
cancel buttons and log; each grid's trials; and the launch that selects the new job.

Apart from Home's ``ui/jobs.py`` so that Home, which draws no chart, does not import plotly. Both
panels are ``st.fragment(run_every=POLL_SECONDS)``: they re-read the job store, never block.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import rcl
from ui.charts import curves_figure
from ui.common import guard
from ui.jobs import POLL_SECONDS, job_progress, jobs_table, worker_line


def launch_jobs(configs: list, group: str | None, key: str) -> list:
    """Queue the configs, start the worker, and make the first new job the one ``key`` shows."""
    submitted = rcl.submit_jobs(configs, group=group, start_worker=False)
    rcl.ensure_worker()
    st.session_state[key] = submitted[0].id
    return submitted


def cancel_buttons(job, all_jobs: list) -> None:
    """Cancel one job, or every unfinished job of its grid."""
    b1, b2 = st.columns(2)
    if not job.is_finished and b1.button("Cancel this job", key=f"cancel_{job.id}"):
        rcl.cancel_jobs([job.id])
        st.info(f"Cancelling job {job.id}…")
    unfinished = [j.id for j in all_jobs if j.group and j.group == job.group and not j.is_finished]
    if unfinished and b2.button(f"Cancel all {len(unfinished)} unfinished jobs of {job.group}",
                                key=f"cancel_group_{job.group}"):
        rcl.cancel_jobs(unfinished)
        st.info(f"Cancelling {len(unfinished)} jobs of {job.group}…")


@st.fragment(run_every=POLL_SECONDS)
def job_panel(key: str) -> None:
    """Every job, and the one ``key`` names (changed only by the picker or a launch)."""
    with guard("job list"):
        store = rcl.JobStore()
        all_jobs = store.list()
        st.subheader("Jobs")
        st.caption(worker_line(rcl.worker_status(store)) + f" · refreshed every {POLL_SECONDS:g} s")
        if not all_jobs:
            st.info("No jobs yet: fill in the form above and press **Launch**.")
            return
        jobs_table(all_jobs)
        ids = [j.id for j in reversed(all_jobs)]
        if st.session_state.get(key) not in ids:
            st.session_state[key] = ids[0]
        names = {j.id: f"{j.id} · {j.name}" for j in all_jobs}
        chosen = st.selectbox("Job", ids, index=ids.index(st.session_state[key]), format_func=names.get)
        st.session_state[key] = chosen
        job = store.get(chosen)
        job_progress(job)
        history = rcl.job_history(job, store)
        if history:
            st.plotly_chart(curves_figure(history), width="stretch")
        elif not job.is_finished:
            st.caption("Validation curves appear after the first epoch.")
        cancel_buttons(job, all_jobs)
        if st.toggle("Show logs", key="train_show_logs"):
            st.code(rcl.job_logs(job.id, tail=80, store=store) or "(no output yet)", language="text")


@st.fragment(run_every=POLL_SECONDS)
def grid_panel() -> None:
    """Each grid of runs: its progress and a row per trial."""
    with guard("grid list"):
        everything = rcl.JobStore().list()
        grids = rcl.grid_rows(everything)
        if not grids:
            return
        st.caption("Validation CER and F1 of each trial: argmax decisions on its validation split.")
        for grid in grids:
            with st.expander(f"{grid['group']} · {grid['executor']} · {grid['summary']}",
                             expanded=grid["state"] == "running"):
                st.progress(grid["progress"], text=f"{grid['progress']:.0%} of {grid['trials']} trials")
                st.dataframe(pd.DataFrame(rcl.trial_rows(everything, grid["group"])), hide_index=True,
                             width="stretch", column_config={
                                 "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                             format="percent"),
                                 "val CER": st.column_config.NumberColumn(format="%.3f"),
                                 "val F1": st.column_config.NumberColumn(format="%.3f")})
