"""Fine-tuning a finished run: its weights as the start of a short run on the same split.

No ImageNet weights can be downloaded on an offline machine, but a run trained on the data at hand
is a start the project makes itself. On HAM10000 a CE run fine-tuned with another loss for a
quarter of the from-scratch epochs reached that loss's trade-off or better
(``benchmarks/results/finetune_start.md``), so a clinician who moves α/β waits minutes less.

Only on the start's own split: a run of the same dataset with another seed or other fractions
learnt some of the images the new run is scored on. ``check_start_split`` refuses that when a run
begins; ``fine_tune_fields`` gives the fields that reproduce the start's split.
"""

from __future__ import annotations

from pathlib import Path

from rcl.errors import UserError
from rcl.paths import RUN_WEIGHTS
from rcl.runs import Run, load_run
from rcl.text import initialisation

# The fine-tune schedule chosen in benchmarks/results/finetune_start.md (a cosine schedule run to its
# end): over 3 seeds the lowest RCL-Proposed CER of the schedules tried, at a higher F1 than from scratch.
FINE_TUNE = {"epochs": 6, "lr": 3e-4}
# TrainConfig fields that decide which images a run holds out (with the model and image size, what
# a fine-tune takes from its start).
SPLIT_FIELDS = ("data", "preset", "taxonomy", "malignant", "label_columns", "val_fraction", "test_fraction",
                "limit", "drop_duplicates", "seed", "label_corrections")


def fine_tune_fields(run: Run) -> dict:
    """``TrainConfig`` fields that fine-tune ``run``: its images, split, network and image size,
    its weights as the start and the measured schedule (``FINE_TUNE``). Loss and matrix are the
    caller's: that is what a fine-tune changes."""
    if not (run.path / RUN_WEIGHTS).is_file():
        raise ValueError(f"run {run.id} has no saved weights yet (is it finished?)")
    train = run.train
    return {**{name: train[name] for name in SPLIT_FIELDS if name in train}, "model": train["model"],
            "image_size": train["image_size"], "weights": str(run.path / RUN_WEIGHTS), **FINE_TUNE}


def start_text(train: dict) -> str:
    """Where a run's weights started, in words, and for a fine-tune where its start's began
    ("fine-tuned from run CE-seed0 (trained from scratch, no ImageNet weights)"), so a fine-tune of
    a from-scratch model is never mistaken for an ImageNet-pretrained one. A start folder that is
    gone or unreadable leaves the first part alone."""
    text = initialisation(train)
    weights = Path(train["weights"]) if train.get("weights") else None
    if weights is None or weights.name != RUN_WEIGHTS:
        return text
    try:
        return f"{text} ({initialisation(load_run(weights.parent).train)})"
    except (ValueError, OSError, KeyError):
        return text


def check_start_split(weights: str | Path | None, data_root: str | Path, held_out_ids: list[str]) -> None:
    """Refuse to start from a run that may have trained on this run's validation or test images.

    Weights from elsewhere (not a run folder) and runs of another dataset are not checked: that is
    transfer, not leakage. ``held_out_ids``: this run's validation and test sample ids.
    """
    folder = Path(weights).expanduser().parent if weights else None
    if folder is None or not (folder / "config.json").is_file() or not (folder / "predictions.npz").is_file():
        return
    start = load_run(folder)
    if Path(start.config.get("dataset", {}).get("root", "")).resolve() != Path(data_root).resolve():
        return
    seen = set(start.predictions("val")["ids"].tolist()) | set(start.predictions("test")["ids"].tolist())
    trained_on = [i for i in held_out_ids if i not in seen]
    if trained_on:
        raise UserError(
            f"the start run {start.id} was trained on another split of this dataset ({len(trained_on)} of this "
            f"run's {len(held_out_ids)} validation/test images were not held out from it, e.g. {trained_on[0]}), so "
            "its scores would be inflated. Start from a run with the same data, seed, fractions and limit, or "
            "train from scratch.")
