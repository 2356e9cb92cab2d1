"""Train: launch background training jobs (one run or the paper's ablation grid) and follow them live."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import rcl
from ui.common import current_matrix, disclaimer, guard, page, require_valid_matrix
from ui.jobs import POLL_SECONDS, job_progress, jobs_table, worker_line

MODELS = ["small_cnn", "resnet18", "resnet50", "vit_base_patch16_224", "other (timm name)"]
JOB_KEY = "train_job"  # the job whose curves and log are shown: changed only by the picker or a launch

page("Train")
st.write("Training runs in the background (a separate worker process), so it goes on if you close the "
         "browser. Runs appear on every page when they finish.")

# --- the form -----------------------------------------------------------------------------------
with st.form("train_form"):
    c1, c2, c3 = st.columns(3)
    data_choice = c1.radio("Dataset", ["synthetic (bundled)", "a folder on this machine"], key="train_data_choice")
    folder = c1.text_input("Folder or CSV path (for a folder)", key="train_folder",
                           placeholder="/data/ISIC2018_Task3_Training_Input")
    malignant = c1.text_input("Malignant classes of the folder (A,B; empty: detected)", key="train_malignant",
                              placeholder="melanoma,carcinoma")
    reviewed = c1.checkbox("Train on reviewed labels", key="train_reviewed",
                           help="Apply the corrections of the review queue (Label quality page) to the labels.")
    reviews_file = c1.text_input("Review file (empty: the dataset's own)", key="train_reviews_file",
                                 placeholder="…/rcl-reviews.jsonl")
    model_choice = c2.selectbox("Model", MODELS, key="train_model")
    other_model = c2.text_input("timm model name (for 'other')", key="train_other_model")
    pretrained = c2.checkbox("ImageNet-pretrained weights", key="train_pretrained",
                             help="Downloaded once (needs internet); offline, give a weights file below instead.")
    weights_upload = c2.file_uploader(
        "…or a weights file (.safetensors/.pt) for a machine without internet", key="train_weights",
        type=[s.lstrip(".") for s in (".safetensors", ".pt", ".pth", ".bin")],
        help="Used instead of downloading the ImageNet weights; kept in the data directory's weights/ folder.")
    loss = c3.selectbox("Loss", list(rcl.LOSSES), index=list(rcl.LOSSES).index("rcl"), key="train_loss")
    epochs = c3.number_input("Epochs", 1, 500, 5, key="train_epochs")
    image_size = c3.number_input("Image size (px)", 16, 1024, 64, step=16, key="train_image_size")
    c4, c5, c6 = st.columns(3)
    batch_size = c4.number_input("Batch size", 1, 1024, 32, key="train_batch")
    lr = c5.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f", key="train_lr")
    seed = c6.number_input("Seed", 0, 10_000, 0, key="train_seed")
    name = st.text_input("Name (optional label; for an ablation, the prefix of its 11 jobs)", key="train_name")
    b1, b2, b3 = st.columns([1, 1, 2])
    launch = b1.form_submit_button("Launch", type="primary")
    seeds = b3.number_input("Ablation seeds", 1, 10, 1, key="train_ablation_seeds")
    launch_ablation = b2.form_submit_button("Launch ablation")

require_valid_matrix("Training")
matrix = current_matrix()
st.caption("Jobs train on a GPU when the worker sees one, else on the CPU · matrix from **Severity matrix**: "
           f"{rcl.matrix_caption(matrix)}"
           + ("" if rcl.loss_spec(loss).takes_matrix else f" (the {loss} loss does not use it)"))


def build_config() -> rcl.TrainConfig:
    """The form's values and the Severity page's matrix, through the library's one path to a config."""
    model = other_model.strip() if model_choice.startswith("other") else model_choice
    data = "synthetic" if data_choice.startswith("synthetic") else folder.strip()
    if not data:
        raise ValueError("type the dataset folder (or choose the bundled synthetic data)")
    classes = (malignant.strip() or None) if data != "synthetic" else None
    weights = None
    if weights_upload is not None:
        weights = str(rcl.save_weights_file(weights_upload.name, weights_upload.getvalue()))
    return rcl.TrainConfig.from_matrix(
        matrix, data=data, model=model, loss=loss, epochs=int(epochs), image_size=int(image_size),
        batch_size=int(batch_size), lr=float(lr), seed=int(seed), pretrained=bool(pretrained),
        weights=weights, name=name.strip() or None,
        malignant=classes,
        label_corrections=(reviews_file.strip() or str(rcl.review_target(data, malignant=classes).path))
        if reviewed else None,
    )


def queue(configs: list, group: str | None) -> list:
    """Queue the configs, start the worker, and show the first new job below."""
    submitted = rcl.submit_jobs(configs, group=group, start_worker=False)
    rcl.ensure_worker()
    st.session_state[JOB_KEY] = submitted[0].id
    return submitted


if launch:
    with guard("could not launch"):
        job = queue([build_config()], None)[0]
        st.success(f"Job {job.id} ({job.name}) queued; its progress is below.")
if launch_ablation:
    with guard("could not launch the ablation"):
        group = name.strip() or f"ablation-{datetime.now():%Y%m%d-%H%M%S}"
        submitted = queue(rcl.ablation_configs(build_config(), range(int(seeds))), group)
        st.success(f"{len(submitted)} ablation jobs queued as **{group}** "
                   f"(4 baselines + 7 RCL configurations × {int(seeds)} seed(s)).")


def curves(history: list[dict]) -> go.Figure:
    frame = pd.DataFrame(history)
    fig = go.Figure()
    if "val_cer" in frame:
        fig.add_scatter(x=frame["epoch"], y=frame["val_cer"], name="val CER (lower is safer)", line={"color": "#D55E00"})
    if "val_f1_macro" in frame:
        fig.add_scatter(x=frame["epoch"], y=frame["val_f1_macro"], name="val F1-macro", line={"color": "#0072B2"})
    fig.update_layout(height=280, xaxis_title="epoch", yaxis_range=[0, 1],
                      margin={"t": 10, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h"})
    return fig


def cancel_buttons(job, all_jobs: list) -> None:
    b1, b2 = st.columns(2)
    if not job.is_finished and b1.button("Cancel this job", key=f"cancel_{job.id}"):
        rcl.cancel_jobs([job.id])
        st.info(f"Cancelling job {job.id}…")
    unfinished = [j.id for j in all_jobs if j.group and j.group == job.group and not j.is_finished]
    if unfinished and b2.button(f"Cancel all {len(unfinished)} unfinished jobs of {job.group}",
                                key=f"cancel_group_{job.group}"):
        rcl.cancel_jobs(unfinished)
        st.info(f"Cancelling {len(unfinished)} jobs of {job.group}…")


# --- jobs: re-read every POLL_SECONDS in a fragment, never a blocking loop --------------------------
@st.fragment(run_every=POLL_SECONDS)
def job_panel() -> None:
    with guard("job list"):
        store = rcl.JobStore()
        status = rcl.worker_status(store)
        all_jobs = store.list()
        st.subheader("Jobs")
        st.caption(worker_line(status) + f" · refreshed every {POLL_SECONDS:g} s")
        if not all_jobs:
            st.info("No jobs yet: fill in the form above and press **Launch**.")
            return
        jobs_table(all_jobs)
        ids = [j.id for j in reversed(all_jobs)]
        if st.session_state.get(JOB_KEY) not in ids:
            st.session_state[JOB_KEY] = ids[0]
        names = {j.id: f"{j.id} · {j.name}" for j in all_jobs}
        chosen = st.selectbox("Job", ids, index=ids.index(st.session_state[JOB_KEY]), format_func=names.get)
        st.session_state[JOB_KEY] = chosen
        job = store.get(chosen)
        job_progress(job)
        history = rcl.job_history(job, store)
        if history:
            st.plotly_chart(curves(history), width="stretch")
        elif not job.is_finished:
            st.caption("Validation curves appear after the first epoch.")
        cancel_buttons(job, all_jobs)
        if st.toggle("Show logs", key="train_show_logs"):
            st.code(rcl.job_logs(job.id, tail=80, store=store) or "(no output yet)", language="text")


job_panel()


# --- grids: the paper's ablation or a custom grid, on this machine or a Ray cluster ---------------------
# (rcl.grid builds and launches them; trials use the form above for everything but loss, α/β and seed)
with st.form("grid_form"):
    st.subheader("Grid of runs")
    g1, g2, g3 = st.columns(3)
    grid_kind = g1.radio("Grid", ["the paper's ablation (11 methods)", "custom"], key="grid_kind")
    grid_losses = g1.multiselect("Losses (custom grid)", list(rcl.LOSSES), default=["ce", "focal", "rcl"],
                                 key="grid_losses")
    grid_alphas = g2.text_input("α values for losses using the matrix (e.g. 1,5,10)", key="grid_alphas")
    grid_betas = g2.text_input("β values for losses using the matrix (e.g. 10,20)", key="grid_betas")
    grid_seeds = g2.text_input("Seeds", "0,1,2", key="grid_seeds")
    grid_target = g3.radio("Run on", ["this machine", "Ray cluster"], key="grid_target")
    grid_address = g3.text_input("Ray cluster address (empty: start Ray on this machine)",
                                 rcl.default_ray_address() or "", key="grid_address")
    launch_grid = st.form_submit_button("Launch grid")
if launch_grid:
    with guard("could not launch the grid"):
        custom = grid_kind == "custom"
        configs = rcl.sweep_configs(build_config(), ablation=not custom, losses=grid_losses if custom else None,
                                    alphas=grid_alphas if custom else None, betas=grid_betas if custom else None,
                                    seeds=grid_seeds)
        on_ray = grid_target == "Ray cluster"
        group = rcl.launch_sweep(configs, "ray" if on_ray else "local", grid_address.strip() or None)
        st.success(f"Grid {group}: {len(configs)} trials sent to "
                   f"{'the Ray cluster' if on_ray else 'this machine'}; finished ones are skipped.")


@st.fragment(run_every=POLL_SECONDS)
def grid_panel() -> None:
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


grid_panel()
disclaimer()
