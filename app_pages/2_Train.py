"""Train: launch background training jobs (one run or the paper's comparison) and follow them live."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

import rcl
from ui.common import current_matrix, disclaimer, guard, page, require_valid_matrix
from ui.train_form import grid_form, matrix_note, train_form
from ui.train_jobs import grid_panel, job_panel, launch_jobs

JOB_KEY = "train_job"  # the job whose curves and log are shown: changed only by the picker or a launch

page("Train")
st.write("Train a model on your images in the background: choose the images and how the model should weigh its "
         "mistakes, then press **Launch**. Training goes on if you close the browser; finished runs appear on "
         "every page.")

form = train_form()
require_valid_matrix("Training")
matrix = current_matrix()
matrix_note(matrix, form.fields["loss"])

if form.launch:
    with guard("could not launch"):
        job = launch_jobs([form.config(matrix)], None, JOB_KEY)[0]
        st.success(f"Job {job.id} ({job.name}) queued; its progress is below.")
if form.launch_comparison:
    with guard("could not launch the comparison"):
        group = form.fields["name"] or f"ablation-{datetime.now():%Y%m%d-%H%M%S}"
        base = form.config(matrix)
        seeds = form.comparison_seeds(base)
        submitted = launch_jobs(rcl.ablation_configs(base, seeds), group, JOB_KEY)
        st.success(f"{len(submitted)} comparison jobs queued as **{group}** "
                   f"(4 standard methods + 7 risk-calibrated settings × {len(seeds)} seed(s)).")

job_panel(JOB_KEY)
grid_form(lambda: form.config(matrix))
grid_panel()
disclaimer()
