"""One job as the store records it: its state, progress, child process and files."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rcl.config import TrainConfig

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
LOCAL = "local"  # the executor of jobs the local worker runs; a sweep may hand its trials to "ray"


@dataclass
class Job:
    """One row of the job store. Timestamps are Unix seconds; progress fields are None until reported."""

    id: int
    name: str
    group: str | None
    config: dict
    state: str
    run_dir: Path
    created: float
    started: float | None = None
    finished: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    val_cer: float | None = None
    val_f1: float | None = None
    message: str | None = None
    pid: int | None = None
    worker_pid: int | None = None
    heartbeat: float | None = None
    cancel_requested: bool = False
    error: str | None = None
    pid_start: str | None = None
    executor: str = LOCAL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["group"] = data.pop("group_name")
        data["config"] = json.loads(data["config"])
        data["run_dir"] = Path(data["run_dir"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def job_dir(self) -> Path:
        """The job's own files (``config.json``, ``train.log``), hidden beside the run folders."""
        return job_dir(self.run_dir)

    @property
    def log_path(self) -> Path:
        return self.job_dir / "train.log"

    @property
    def is_finished(self) -> bool:
        return self.state not in ACTIVE_STATES

    @property
    def progress(self) -> str:
        """``"3/10"`` epochs, with the step percentage while running (``"3/10 (34%)"``)."""
        if not self.epochs:
            return ""
        text = f"{self.epoch or 0}/{self.epochs}"
        if self.state == "running" and self.step and self.total_steps:
            text += f" ({100 * self.step / self.total_steps:.0f}%)"
        return text

    def train_config(self) -> TrainConfig:
        from rcl.config import TrainConfig

        return TrainConfig.from_dict(self.config)

    def to_dict(self) -> dict:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data["run_dir"] = str(self.run_dir)
        data["run_id"] = self.run_id
        data["progress"] = self.progress
        return data


def job_dir(run_dir: Path) -> Path:
    """``<home>/.jobs/<run_id>/``: outside the run folder, which appears only once training succeeds."""
    return run_dir.parent / ".jobs" / run_dir.name


def submission(config: TrainConfig | dict, name: str | None) -> tuple[str, dict]:
    """Validate a config and fix what must not depend on the submitter's directory (relative paths)."""
    from rcl.config import SYNTHETIC, TrainConfig

    data = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    checked = TrainConfig.from_dict(data).check()
    name = name or checked.name or f"{checked.loss}-{checked.model}-s{checked.seed}"
    checked.name = checked.name or name
    # The worker runs in the data directory, not the submitter's: pin relative paths now.
    if checked.data != SYNTHETIC:
        checked.data = str(Path(checked.data).expanduser().resolve())
    if checked.weights is not None:
        checked.weights = str(Path(checked.weights).expanduser().resolve())
    return name, checked.to_dict()


def run_folder_name(name: str, job_id: int) -> str:
    """``20261124-153000-<name>-j12``: sortable by time, readable, unique within one job store."""
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{tag}-j{job_id}"
