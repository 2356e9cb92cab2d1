"""Train: launch background training jobs (one run or the paper's ablation grid) and follow them."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from rcl import matrix_caption
from ui.common import current_matrix, disclaimer, guard, page, require_valid_matrix

MODELS = ["small_cnn", "resnet18", "resnet50", "vit_base_patch16_224", "other (timm name)"]
POLL_SECONDS = 2.0

page("Train")
st.write("Training runs in the background (a separate worker process), so it goes on if you close the "
         "browser. Runs appear on every page when they finish.")

import rcl  # noqa: E402
from rcl import jobs  # noqa: E402  (after the page header, so a slow import never blanks the page)
from rcl.models import pick_device  # noqa: E402

store = jobs.JobStore()

# --- the form -----------------------------------------------------------------------------------
with st.form("train_form"):
    c1, c2, c3 = st.columns(3)
    data_choice = c1.radio("Dataset", ["synthetic (bundled)", "a folder on this machine"], key="train_data_choice")
    folder = c1.text_input("Folder or CSV path (for a folder)", key="train_folder",
                           placeholder="/data/ISIC2018_Task3_Training_Input")
    malignant = c1.text_input("Malignant classes of the folder (A,B; empty: detected)", key="train_malignant",
                              placeholder="melanoma,carcinoma")
    model_choice = c2.selectbox("Model", MODELS, key="train_model")
    other_model = c2.text_input("timm model name (for 'other')", key="train_other_model")
    pretrained = c2.checkbox("ImageNet-pretrained (needs a network once)", key="train_pretrained")
    loss = c3.selectbox("Loss", list(rcl.LOSSES), index=list(rcl.LOSSES).index("rcl"), key="train_loss")
    epochs = c3.number_input("Epochs", 1, 500, 5, key="train_epochs")
    image_size = c3.number_input("Image size (px)", 16, 1024, 64, step=16, key="train_image_size")
    c4, c5, c6 = st.columns(3)
    batch_size = c4.number_input("Batch size", 1, 1024, 32, key="train_batch")
    lr = c5.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f", key="train_lr")
    seed = c6.number_input("Seed", 0, 10_000, 0, key="train_seed")
    name = st.text_input("Name (optional label)", key="train_name")
    b1, b2, b3 = st.columns([1, 1, 2])
    launch = b1.form_submit_button("Launch", type="primary")
    seeds = b3.number_input("Ablation seeds", 1, 10, 1, key="train_ablation_seeds")
    launch_ablation = b2.form_submit_button("Launch ablation")

require_valid_matrix("Training")
matrix = current_matrix()
with guard("device"):
    st.caption(f"Device: **{pick_device('auto')}** · matrix from **Severity matrix**: {matrix_caption(matrix)}"
               + ("" if rcl.loss_spec(loss).takes_matrix else f" (the {loss} loss does not use it)"))


def build_config() -> rcl.TrainConfig:
    """The form's values and the Severity page's matrix, through the library's one path to a config."""
    model = other_model.strip() if model_choice.startswith("other") else model_choice
    data = "synthetic" if data_choice.startswith("synthetic") else folder.strip()
    if not data:
        raise ValueError("type the dataset folder (or choose the bundled synthetic data)")
    return rcl.TrainConfig.from_matrix(
        matrix, data=data, model=model, loss=loss, epochs=int(epochs), image_size=int(image_size),
        batch_size=int(batch_size), lr=float(lr), seed=int(seed), pretrained=bool(pretrained), name=name or None,
        malignant=(malignant.strip() or None) if data != "synthetic" else None,
    )


if launch:
    with guard("could not launch"):
        job = store.submit(build_config())
        jobs.ensure_worker(store=store)
        st.success(f"Job {job.id} ({job.name}) queued.")
if launch_ablation:
    with guard("could not launch the ablation"):
        from rcl.ablation import ablation_configs

        configs = ablation_configs(build_config(), range(int(seeds)))
        submitted = store.submit_many(configs, group=f"ablation-{pd.Timestamp.now():%Y%m%d-%H%M%S}")
        jobs.ensure_worker(store=store)
        st.success(f"{len(submitted)} ablation jobs queued (baselines + 7 RCL configurations × {int(seeds)} seeds).")


# --- jobs: polled in a fragment, never a blocking loop --------------------------------------------
@st.fragment(run_every=POLL_SECONDS)
def job_panel() -> None:
    with guard("job list"):
        status = jobs.worker_status(store)
        all_jobs = store.list()
        st.subheader("Jobs")
        st.caption(f"Worker: {'running (pid ' + str(status['pid']) + ')' if status['alive'] else 'not running'} · "
                   f"{status['queued']} queued · {len(status['running'])} running · refreshed every {POLL_SECONDS:g} s")
        if not all_jobs:
            st.info("No jobs yet: fill in the form above and press **Launch**.")
            return
        active = [j for j in all_jobs if not j.is_finished]
        if active and not status["alive"] and st.button("Start the worker", key="start_worker"):
            jobs.ensure_worker(store=store)
        table = pd.DataFrame([{
            "id": j.id, "name": j.name, "state": j.state,
            "progress": (j.epoch or 0) / j.epochs if j.epochs else (1.0 if j.state == "done" else 0.0),
            "epochs": j.progress, "val CER": j.val_cer, "val F1": j.val_f1, "message": j.error or j.message,
        } for j in reversed(all_jobs)])
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "val CER": st.column_config.NumberColumn(format="%.3f"),
            "val F1": st.column_config.NumberColumn(format="%.3f"),
        })
        ids = [j.id for j in reversed(all_jobs)]
        names = {j.id: f"{j.id} · {j.name} · {j.state}" for j in all_jobs}
        chosen = st.selectbox("Job", ids, format_func=names.get, key="train_job_pick")
        job = store.get(chosen)
        history = jobs.job_history(job, store)
        if history:
            frame = pd.DataFrame(history)
            fig = go.Figure()
            if "val_cer" in frame:
                fig.add_scatter(x=frame["epoch"], y=frame["val_cer"], name="val CER (lower is safer)",
                                line={"color": "#D55E00"})
            if "val_f1_macro" in frame:
                fig.add_scatter(x=frame["epoch"], y=frame["val_f1_macro"], name="val F1-macro",
                                line={"color": "#0072B2"})
            fig.update_layout(height=280, xaxis_title="epoch", yaxis_range=[0, 1],
                              margin={"t": 10, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h"})
            st.plotly_chart(fig, width="stretch")
        elif not job.is_finished:
            st.caption("Validation curves appear after the first epoch.")
        if job.state == "failed" and job.error:
            st.error(f"Job {job.id} failed: {job.error.splitlines()[0] if job.error else ''}")
        b1, b2 = st.columns(2)
        if not job.is_finished and b1.button("Cancel job", key=f"cancel_{job.id}"):
            store.request_cancel(job.id)
            st.info(f"Cancelling job {job.id}…")
        if b2.toggle("Show logs", key="train_show_logs"):
            st.code(jobs.job_logs(job.id, tail=80, store=store) or "(no output yet)", language="text")


job_panel()
disclaimer()
