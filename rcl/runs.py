"""Run folders and exported models: read, list, load for inference, promote to ``models/NAME``.

A run folder is what ``run_training`` writes (docs/ARCHITECTURE.md). An exported model folder
holds only what triage needs: ``model.safetensors`` and ``model.json`` (architecture, taxonomy,
matrix, preprocessing, metrics, provenance).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rcl import paths
from rcl.errors import explain
from rcl.loss_registry import carries_costs, loss_spec
from rcl.ood import OOD_FILE, MahalanobisDetector
from rcl.posthoc.guarantee import GUARANTEE_FILE
from rcl.severity import SeverityMatrix
from rcl.taxonomy import Taxonomy
from rcl.text import penalties

MODEL_CARD = "model.json"
# What inference needs from a run's metrics.json beyond the weights (fitted on validation).
EXTRAS = ("calibration", "decision", "referral", "ood")


def read_history(run_dir: str | Path) -> list[dict]:
    """Per-epoch rows of a run folder's ``history.jsonl`` (empty before the first epoch ends).

    The trainer replaces the file atomically each epoch, so a reader never sees half of it. While
    the run trains, the file is in its partial folder (``paths.partial_dir``), and is read there.
    """
    path = Path(run_dir) / "history.jsonl"
    if not path.is_file():
        path = paths.partial_dir(run_dir) / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_label(train: dict) -> str:
    """``rcl α=5 β=20`` for the matrix losses, the loss name otherwise."""
    loss = train.get("loss", "?")
    if loss_spec(loss).takes_matrix:
        return f"{loss} {penalties(train.get('alpha'), train.get('beta'))}"
    return loss


def _cost_sensitive(decision: dict, loss: str) -> bool:
    """The run's stored ``decision.cost_sensitive_training``, or the loss registry for runs whose
    stored flag predates spelling-proof loss names (any spelling of a cost-carrying loss counts)."""
    return bool(decision.get("cost_sensitive_training")) or carries_costs(loss)


@dataclass
class Run:
    """A finished or in-progress run folder, read lazily."""

    path: Path
    config: dict = field(repr=False)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def train(self) -> dict:
        return self.config["train"]

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return Taxonomy.from_dict(self.config["taxonomy"])

    @cached_property
    def matrix(self) -> SeverityMatrix:
        return SeverityMatrix(self.taxonomy, self.config["matrix"], self.train.get("alpha"), self.train.get("beta"))

    @property
    def finished(self) -> bool:
        return (self.path / "metrics.json").is_file()

    @cached_property
    def metrics(self) -> dict:
        """``metrics.json`` (empty before the run finishes); a damaged file is a ``ValueError``."""
        return _read_json_object(self.path / "metrics.json") if self.finished else {}

    def history(self) -> list[dict]:
        return read_history(self.path)

    def predictions(self, split: str = "test") -> dict[str, np.ndarray]:
        """``probs``, ``logits``, ``labels`` and ``ids`` of a split, as stored."""
        path = self.path / "predictions.npz"
        if not path.is_file():
            raise ValueError(f"run {self.id} has no predictions yet (is it finished?)")
        with np.load(path, allow_pickle=False) as data:
            keys = [k for k in data.files if k.startswith(f"{split}_")]
            if not keys:
                raise ValueError(f"run {self.id} stored no {split!r} predictions")
            return {k.removeprefix(f"{split}_"): data[k] for k in keys}

    def calibrated_probs(self, split: str = "test") -> np.ndarray:
        """Probabilities for decisions: the logits scaled by the temperature fitted on validation
        (argmax is unchanged; Bayes decisions and referral bands depend on calibration)."""
        from rcl.calibration import apply_temperature

        stored = self.predictions(split)
        temperature = self.metrics.get("calibration", {}).get("temperature")
        if temperature is None or "logits" not in stored:
            return stored["probs"]
        return apply_temperature(stored["logits"], temperature)

    def reselect(self, rule: str, cer_cap: float | None = None, f1_floor: float | None = None) -> dict:
        """Apply another checkpoint-selection rule to this finished run, without retraining.

        The run stores every epoch's validation and test logits (``epochs.npz``), so the figures
        of the epoch the new rule picks are exact. The saved weights stay those of the rule the
        run was trained with: deploying the new choice means retraining with ``--select``.
        """
        from rcl.metrics import evaluate
        from rcl.selection import select_epoch

        history = self.history()
        path = self.path / "epochs.npz"
        if not history or not path.is_file():
            raise ValueError(f"run {self.id} kept no per-epoch predictions: retrain it to use another rule")
        epoch = select_epoch(history, rule, cer_cap, f1_floor)
        result = {"rule": rule, "epoch": epoch + 1, "trained_with": self.train.get("select", "f1"),
                  "trained_epoch": self.metrics.get("selected_epoch")}
        with np.load(path, allow_pickle=False) as saved:
            for split in ("val", "test"):
                labels = self.predictions(split)["labels"]
                predictions = saved[f"{split}_logits"][epoch].argmax(axis=1)
                result[split] = evaluate(labels, predictions, self.taxonomy).to_dict()
        return result

    @property
    def cost_sensitive(self) -> bool:
        """Trained with a loss that carries the severity costs (a full-matrix decision would apply them twice)."""
        return _cost_sensitive(self.metrics.get("decision", {}), self.train["loss"])

    @property
    def label(self) -> str:
        """A short name for tables and legends."""
        t = self.train
        return t.get("name") or f"{loss_label(t)} · {t['model']} · seed {t['seed']}"

    def summary(self) -> dict:
        """One flat row: identity, config and test metrics (``rcl runs``, the app's tables)."""
        t, test = self.train, self.metrics.get("test", {})
        dataset, tiers = self.config.get("dataset", {}), test.get("tiers", {})
        matrix_loss = loss_spec(t["loss"]).takes_matrix
        return {
            "id": self.id,
            "label": self.label,
            "status": "done" if self.finished else "incomplete",
            "dataset": dataset.get("name", t["data"]),
            "synthetic": bool(dataset.get("synthetic", t["data"] == "synthetic")),
            "taxonomy": self.config["taxonomy"].get("name"),
            "model": t["model"],
            "loss": t["loss"],
            "alpha": t.get("alpha") if matrix_loss else None,
            "beta": t.get("beta") if matrix_loss else None,
            "seed": t["seed"],
            "epochs": self.metrics.get("epochs_run"),
            "cer": test.get("cer"),
            "f1_macro": test.get("f1_macro"),
            "accuracy": test.get("accuracy"),
            "type_2": tiers.get("type_2"),
            "type_1": tiers.get("type_1"),
            "visual_ambiguity": tiers.get("visual_ambiguity"),
            "n_test": test.get("n"),
            "created": self.config.get("created"),
            "path": str(self.path),
        }


@dataclass
class DamagedRun:
    """A run folder that cannot be read, and why: listed as "damaged" instead of hiding the others."""

    path: Path
    reason: str

    @property
    def id(self) -> str:
        return self.path.name

    def summary(self) -> dict:
        """The same keys as ``Run.summary``: identity, status "damaged", the reason; no metrics."""
        return {key: None for key in SUMMARY_KEYS} | {
            "id": self.id, "label": self.id, "status": "damaged", "reason": self.reason, "path": str(self.path)}


SUMMARY_KEYS = ("id", "label", "status", "dataset", "synthetic", "taxonomy", "model", "loss", "alpha", "beta",
                "seed", "epochs", "cer", "f1_macro", "accuracy", "type_2", "type_1", "visual_ambiguity",
                "n_test", "created", "path")
REQUIRED_TRAIN = ("loss", "model", "seed")  # what every listing of a run shows


def run_folders(root: str | Path | None = None) -> list[Path]:
    """Folders directly under ``root`` (default: the data directory) holding a ``config.json``,
    newest name first. Hidden folders (a run still training in ``.NAME.partial``) are not runs."""
    root = Path(root) if root is not None else paths.home()
    if not root.is_dir():
        return []
    return [c for c in sorted(root.iterdir(), reverse=True)
            if not c.name.startswith(".") and c.is_dir() and (c / "config.json").is_file()]


def _read_json_object(path: Path) -> dict:
    """A JSON file holding an object, or a ``ValueError`` saying how it is damaged."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is damaged (not valid JSON: {exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is damaged (a JSON {type(data).__name__}, not an object)")
    return data


def load_run(path: str | Path) -> Run:
    """A run folder, or a clear error saying why it is not one."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"run folder {str(path)!r} does not exist")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{str(path)!r} is not a run folder (no config.json)")
    config = _read_json_object(config_path)
    train, taxonomy = config.get("train"), config.get("taxonomy")
    if not isinstance(train, dict) or not isinstance(taxonomy, dict):
        raise ValueError("config.json is not an rcl run config (no 'train' and 'taxonomy' objects)")
    missing = [key for key in REQUIRED_TRAIN if key not in train]
    if missing:
        raise ValueError(f"config.json is damaged (its 'train' section has no {', '.join(missing)})")
    return Run(path.resolve(), config)


def check_run(folder: Path) -> Run | DamagedRun:
    """The run in ``folder`` with its summary readable, or a ``DamagedRun`` saying what is wrong."""
    try:
        run = load_run(folder)
        run.summary()  # reads metrics.json: a truncated or foreign file shows up here
        return run
    except (ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        return DamagedRun(folder, explain(exc))


def list_runs(root: str | Path | None = None, finished_only: bool = False,
              include_damaged: bool = False) -> list[Run | DamagedRun]:
    """Every run folder directly under ``root`` (default: the data directory), newest first.

    One damaged folder never hides the others: it is left out, or listed as a ``DamagedRun``
    with its reason when ``include_damaged`` (whatever ``finished_only`` says).
    """
    runs: list[Run | DamagedRun] = []
    for folder in run_folders(root):
        run = check_run(folder)
        if isinstance(run, DamagedRun):
            if include_damaged:
                runs.append(run)
        elif run.finished or not finished_only:
            runs.append(run)
    return runs


def export_run(run_dir: str | Path, name: str, models_root: str | Path | None = None, overwrite: bool = False) -> Path:
    """Promote a finished run to ``models/NAME``: weights and the model card, nothing else."""
    run = load_run(run_dir)
    if not run.finished or not (run.path / paths.RUN_WEIGHTS).is_file():
        raise ValueError(f"run {run.id} is not finished: nothing to export")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"model name {name!r} must be a plain folder name")
    target = Path(models_root or paths.models_dir()) / name
    if target.exists() and not overwrite:
        raise ValueError(f"model {name!r} already exists at {target}; pass --overwrite to replace it")
    tmp = target.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(run.path / paths.RUN_WEIGHTS, tmp / paths.RUN_WEIGHTS)
    for extra in (OOD_FILE, GUARANTEE_FILE):  # the detector and a guaranteed rule travel with the model
        if (run.path / extra).is_file():
            shutil.copy2(run.path / extra, tmp / extra)
    card = {
        "name": name,
        "model": run.train["model"],
        "image_size": run.train["image_size"],
        "preprocessing": {"resize": "square, bilinear with antialias", "normalize": "imagenet"},
        "taxonomy": run.config["taxonomy"],
        "matrix": run.config["matrix"],
        "loss": run.train["loss"],
        "alpha": run.train["alpha"],
        "beta": run.train["beta"],
        "dataset": {k: run.config.get("dataset", {}).get(k) for k in ("name", "layout", "synthetic", "sizes")},
        "metrics": {s: {k: run.metrics[s].get(k) for k in ("cer", "f1_macro", "accuracy", "tiers")}
                    for s in ("val", "test") if s in run.metrics},
        "extras": {k: run.metrics[k] for k in EXTRAS if k in run.metrics},
        "source_run": run.id,
        "versions": run.config.get("versions", {}),
    }
    (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


@dataclass
class LoadedModel:
    """A model ready for inference, from a run folder or an exported model folder."""

    model: object  # torch.nn.Module in eval mode
    taxonomy: Taxonomy
    matrix: np.ndarray
    image_size: int
    architecture: str
    source: Path
    card: dict  # metrics, dataset info, extras (temperature, OOD...)
    ood: MahalanobisDetector | None = None  # "unfamiliar image" detector, when the run fitted one

    @property
    def synthetic(self) -> bool:
        return bool(self.card.get("dataset", {}).get("synthetic"))

    @property
    def cost_sensitive(self) -> bool:
        """Trained with a loss that carries the severity costs (a full-matrix decision would apply them twice)."""
        return _cost_sensitive(self.card.get("extras", {}).get("decision", {}), self.card.get("loss", "ce"))


def load_model(source: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a run folder or an exported model folder for inference."""
    import torch

    from rcl.models import make_model, place, read_state_dict

    source = Path(source).expanduser()
    if (source / MODEL_CARD).is_file():
        card = json.loads((source / MODEL_CARD).read_text())
        architecture, image_size = card["model"], int(card["image_size"])
        taxonomy, matrix = Taxonomy.from_dict(card["taxonomy"]), np.asarray(card["matrix"], dtype=np.float64)
    else:
        run = load_run(source)
        if not (run.path / paths.RUN_WEIGHTS).is_file():
            raise ValueError(f"run {run.id} has no saved weights yet (model.safetensors)")
        architecture, image_size = run.train["model"], int(run.train["image_size"])
        taxonomy, matrix = run.taxonomy, np.asarray(run.config["matrix"], dtype=np.float64)
        card = {"dataset": run.config.get("dataset", {}), "metrics": run.metrics,
                "extras": {k: run.metrics[k] for k in EXTRAS if k in run.metrics},
                "loss": run.train["loss"]}
    model = make_model(architecture, taxonomy.num_classes, image_size=image_size)
    model.load_state_dict(read_state_dict(source / paths.RUN_WEIGHTS))
    place(model.eval(), torch.device(device))
    ood = MahalanobisDetector.load(source / OOD_FILE) if (source / OOD_FILE).is_file() else None
    return LoadedModel(model, taxonomy, matrix, image_size, architecture, source.resolve(), card, ood)
