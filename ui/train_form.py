"""The Train page's forms, worded for the clinicians who choose a run.

The form asks what a clinician decides (which images, how the model should weigh its mistakes, a
name) and folds the engineers' settings (network, image size, epochs, learning rate, label noise)
into an "Advanced" expander whose defaults suit a quick run on a CPU. Each section returns the
``TrainConfig`` fields it sets, so a new field is one widget and one key in one section; the config
itself is built by ``rcl.TrainConfig.from_matrix`` only (:meth:`TrainForm.config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

import rcl
from ui.common import finished_rows, guard

SYNTHETIC = "the bundled synthetic images (a demo: no patient data)"
FOLDER = "a folder on this machine"
START_RUN = "a finished run's images, fine-tuning its model (a quarter of the training time)"
OTHER_MODEL = "other (timm name)"
# Network choices, in words: how big and what hardware each needs (the values are timm/rcl names).
MODELS = {
    rcl.AUTO: f"Chosen for this computer (default): {rcl.auto_choice()}",
    "small_cnn": "Small CNN: a minute on a CPU, for demos",
    "cnn4": "CNN, 4 blocks: for real photos on a CPU",
    "resnet18": "ResNet-18: a GPU, or hours on a CPU",
    "resnet50": "ResNet-50 (the paper's): needs a GPU",
    "vit_base_patch16_224": "ViT-B/16 (the paper's): GPU, 224 px",
    OTHER_MODEL: "Another timm network (name below)",
}
IMAGE_SIZES = [rcl.AUTO, 32, 40, 48, 64, 96, 128, 224]
DEFAULTS = rcl.TrainConfig()  # the form starts where `rcl train` starts: one set of defaults
WEIGHT_TYPES = [s.lstrip(".") for s in (".safetensors", ".pt", ".pth", ".bin")]


@dataclass
class TrainForm:
    """What the form holds after a run of the page: the config fields it sets and which button was pressed."""

    fields: dict[str, Any]  # TrainConfig fields (everything but the severity matrix)
    weights_upload: Any  # an uploaded weights file, saved only when a job is launched
    start_run: str | None  # with the fine-tune choice, the finished run's folder ("" until one is chosen)
    launch: bool
    launch_comparison: bool
    seeds: int

    def config(self, matrix: rcl.SeverityMatrix) -> rcl.TrainConfig:
        """The form's values and the Severity page's matrix, through the library's one path to a config."""
        fields = dict(self.fields)
        if self.start_run is not None:
            if not self.start_run:
                raise ValueError("choose the finished run to fine-tune (or other images)")
            if self.weights_upload is not None:
                raise ValueError("fine-tuning a run starts from that run's weights: remove the uploaded weights file")
            fields |= rcl.fine_tune_fields(rcl.load_run(self.start_run))  # its images, split, network; a short schedule
        if not fields["data"]:
            raise ValueError("type the dataset folder (or choose the bundled synthetic images)")
        if fields.get("label_corrections") == "":
            fields["label_corrections"] = str(rcl.review_target(fields["data"], malignant=fields["malignant"]).path)
        if self.weights_upload is not None:
            fields["weights"] = str(rcl.save_weights_file(self.weights_upload.name, self.weights_upload.getvalue()))
        return rcl.TrainConfig.from_matrix(matrix, **fields)

    def comparison_seeds(self, config: rcl.TrainConfig) -> list[int]:
        """The seeds of the paper's comparison: 0 … repeats − 1, or a fine-tuned run's own seed only
        (the seed draws the split, and a fine-tune must keep its run's)."""
        if self.start_run is None:
            return list(range(self.seeds))
        if self.seeds > 1:
            raise ValueError("a fine-tune keeps its run's split, which one seed draws: set the repeats to 1")
        return [config.seed]


def _start_label(row: dict) -> str:
    """A finished run in the fine-tune list: its folder, its own name when it has one, data, seed, F1."""
    name = row["id"] if row["label"] == row["id"] else f"{row['id']} ({row['label']})"
    return f"{name} · {row['dataset']} · seed {row['seed']} · test F1 {rcl.num(row['f1_macro'])}"


def _images() -> tuple[dict[str, Any], str | None]:
    """Which images the model learns from, and which of their classes are malignant; also the run
    to fine-tune when that is the choice."""
    st.markdown("**1 · Images to learn from**")
    choice = st.radio("Images", [SYNTHETIC, FOLDER, START_RUN], key="train_data_choice", label_visibility="collapsed")
    folder = st.text_input("Folder (one sub-folder per diagnosis) or CSV file", key="train_folder",
                           placeholder="/data/ISIC2018_Task3_Training_Input",
                           help="For a folder on this machine: a sub-folder per diagnosis holding its images, "
                                "or a CSV of image paths and diagnoses. HAM10000 / ISIC 2018, Brain Tumor MRI, "
                                "SICAPv2 and BreaKHis are recognised as downloaded.")
    malignant = st.text_input("Which of its diagnoses are malignant? (comma-separated; empty: recognised "
                              "from the dataset)", key="train_malignant", placeholder="melanoma,carcinoma",
                              help="A malignant case called benign is the error this tool guards against most.")
    reviewed = st.checkbox("Train on reviewed labels", key="train_reviewed",
                           help="Use the labels as corrected by specialists in the review queue (Label quality "
                                "page) instead of the dataset's own, in every split.")
    reviews = st.text_input("Review file (empty: the dataset's own)", key="train_reviews_file",
                            placeholder="…/rcl-reviews.jsonl", disabled=not reviewed)
    runs = {row["path"]: row for row in finished_rows()}
    start = st.selectbox(
        "Finished run to fine-tune", [None, *runs], key="train_start_run",
        format_func=lambda path: "(with the third choice above)" if path is None else
        _start_label(runs[path]),
        help=f"Starts from the run's trained weights on its images and its split (its validation and test images "
             f"stay unseen) with its network and image size, for {rcl.FINE_TUNE['epochs']} epochs at learning rate "
             f"{rcl.FINE_TUNE['lr']:g}: on HAM10000 that matched training the new method from scratch in a quarter "
             "of the epochs. The settings above and under Advanced are then the run's.")
    data = "synthetic" if choice == SYNTHETIC else folder.strip()
    # "" stands for the dataset's own review file, found when the job is launched (it lists the dataset).
    return ({"data": data, "malignant": (malignant.strip() or None) if data != "synthetic" else None,
             "label_corrections": reviews.strip() if reviewed else None}, (start or "") if choice == START_RUN else None)


def _mistakes() -> dict[str, Any]:
    """How the model weighs its mistakes while it learns (the loss)."""
    st.markdown("**2 · How the model weighs its mistakes while learning**")
    loss = st.radio("Method", list(rcl.LOSSES), index=list(rcl.LOSSES).index("rcl"), key="train_loss",
                    format_func=lambda name: rcl.LOSSES[name].summary or name,
                    help="The risk-calibrated methods use the costs set on the Severity matrix page; the "
                         "others treat every mistake alike and are there to compare against.")
    name = st.text_input("Name for this run (optional; shown in tables and charts)", key="train_name",
                         help="For the paper's comparison, the prefix of its runs' names.")
    return {"loss": loss, "name": name.strip() or None}


def _advanced() -> tuple[dict[str, Any], Any]:
    """The engineers' settings, with defaults for a quick CPU run; also the uploaded weights file."""
    with st.expander("Advanced (for ML engineers): network, weights file, image size, training length, label noise"):
        st.caption("The defaults are those of `rcl train`: a few minutes on a CPU for HAM10000-sized data. "
                   "Larger networks and images can learn more but take far longer; leave these alone unless "
                   "you know why.")
        c1, c2, c3 = st.columns(3)
        choice = c1.selectbox("Network", list(MODELS), key="train_model", format_func=MODELS.get)
        other = c1.text_input("timm network name (for 'another')", key="train_other_model")
        pretrained = c1.checkbox("Start from ImageNet-pretrained weights", key="train_pretrained",
                                 help="Downloaded once (needs internet); offline, give a weights file instead.")
        upload = c1.file_uploader(
            "…or a weights file (.safetensors/.pt) for a machine without internet", key="train_weights",
            type=WEIGHT_TYPES, help="Used instead of downloading the ImageNet weights; kept in the data "
                                    "directory's weights/ folder.")
        image_size = c2.selectbox("Image size (pixels per side; images are shrunk to this)", IMAGE_SIZES,
                                  key="train_image_size", format_func=lambda v: "chosen with the network"
                                  if v == rcl.AUTO else f"{v} px")
        epochs = c2.number_input("Epochs (passes over the training images)", 1, 500, DEFAULTS.epochs,
                                 key="train_epochs")
        batch_size = c2.number_input("Batch size (images per learning step)", 1, 1024, DEFAULTS.batch_size,
                                     key="train_batch")
        lr = c3.number_input("Learning rate", 1e-6, 1.0, DEFAULTS.lr, format="%.5f", key="train_lr")
        seed = c3.number_input("Random seed (the same seed gives the same split and result)", 0, 10_000,
                               DEFAULTS.seed, key="train_seed")
        noise = c3.selectbox("Label noise (experiments only)", [None, *rcl.NOISE_KINDS], key="train_label_noise",
                             format_func=lambda k: "none: train on the labels as given" if k is None
                             else f"{k}: {rcl.NOISE_KINDS[k][0]}",
                             help="Deliberately gives a share of the training images a wrong diagnosis, to see "
                                  "how a method copes with mislabelled data. Validation and test images keep "
                                  "their labels; the changed images are listed in the run's label_noise.json.")
        rate = c3.slider("Share of eligible training images relabelled (%), with label noise", 1, 50, 10,
                         key="train_noise_rate")
    fields = {"model": other.strip() if choice == OTHER_MODEL else choice, "pretrained": bool(pretrained),
              "image_size": image_size, "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
              "seed": int(seed), "label_noise": None if noise is None else f"{noise}:{rate / 100:g}"}
    return fields, upload


def train_form() -> TrainForm:
    """The training form; nothing is submitted until a button is pressed."""
    with st.form("train_form"):
        left, right = st.columns(2, gap="large")
        with left:
            fields, start_run = _images()
        with right:
            fields |= _mistakes()
        advanced, upload = _advanced()
        fields |= advanced
        st.caption("**When you press Launch** the run is queued and trained in the background, on this machine's "
                   "GPU if it has one, else its CPU; you may close the browser. With the defaults it takes a few "
                   "minutes on a laptop CPU; progress and the time left appear below once training starts, and "
                   "the finished run appears on every page. **The paper's comparison** trains 11 runs (4 standard "
                   "methods and 7 risk-calibrated settings) per repeat: 11 times as long.")
        b1, b2, b3 = st.columns([1, 1, 2])
        launch = b1.form_submit_button("Launch", type="primary")
        launch_comparison = b2.form_submit_button("Launch the paper's comparison")
        seeds = b3.number_input("Repeats of the comparison (seeds)", 1, 10, 1, key="train_ablation_seeds")
    return TrainForm(fields, upload, start_run, launch, launch_comparison, int(seeds))


def matrix_note(matrix: rcl.SeverityMatrix, loss: str) -> None:
    """Which costs the run will learn from, in words, and the matrix's one-line name (set on Severity matrix)."""
    if not rcl.loss_spec(loss).takes_matrix:
        use = "The chosen method does not use the severity matrix: every mistake counts the same"
    elif matrix.is_standard:
        use = (f"The model learns that a missed malignancy costs **{matrix.beta:g}**, a false alarm **{matrix.alpha:g}** "
               "and mixing up two diagnoses of the same kind **1**")
    else:
        use = "The model learns from the per-cell costs edited on the Severity matrix page"
    st.caption(f"{use} · matrix: {rcl.matrix_caption(matrix)} (set on **Severity matrix**) · jobs train on a GPU "
               "when the worker sees one, else on the CPU.")


def grid_form(base: Callable[[], rcl.TrainConfig]) -> None:
    """A grid of runs (the paper's comparison or a custom grid) on this machine or a Ray cluster; trials
    take everything but the loss, α/β and seed from ``base`` (the form above)."""
    with st.expander("Grid of runs (for ML engineers): custom losses, α/β values and seeds, on this machine "
                     "or a Ray cluster"), st.form("grid_form"):
        g1, g2, g3 = st.columns(3)
        kind = g1.radio("Grid", ["the paper's ablation (11 methods)", "custom"], key="grid_kind")
        losses = g1.multiselect("Losses (custom grid)", list(rcl.LOSSES), default=["ce", "focal", "rcl"],
                                key="grid_losses")
        alphas = g2.text_input("α values for losses using the matrix (e.g. 1,5,10)", key="grid_alphas")
        betas = g2.text_input("β values for losses using the matrix (e.g. 10,20)", key="grid_betas")
        seeds = g2.text_input("Seeds", "0,1,2", key="grid_seeds")
        target = g3.radio("Run on", ["this machine", "Ray cluster"], key="grid_target")
        address = g3.text_input("Ray cluster address (empty: start Ray on this machine)",
                                rcl.default_ray_address() or "", key="grid_address")
        launch = st.form_submit_button("Launch grid")
    if launch:
        with guard("could not launch the grid"):
            custom = kind == "custom"
            configs = rcl.sweep_configs(base(), ablation=not custom, losses=losses if custom else None,
                                        alphas=alphas if custom else None, betas=betas if custom else None,
                                        seeds=seeds)
            on_ray = target == "Ray cluster"
            group = rcl.launch_sweep(configs, "ray" if on_ray else "local", address.strip() or None)
            st.success(f"Grid {group}: {len(configs)} trials sent to "
                       f"{'the Ray cluster' if on_ray else 'this machine'}; finished ones are skipped.")
