"""Shared by the job tests: a fake trainer (real child processes, no torch), workers and waiting.

The fake trainer behaves like ``rcl train --job-id``: it reports progress, trains in the run's
partial folder and renames it to the run folder on success. Its behaviour is chosen by the job
name's prefix: ok, nap (slow-ish but finishes), slow (60 s), stubborn (ignores SIGTERM), fail.
Every start is appended to ``starts`` in the job's folder, so a test can count (re)starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcl.config import TrainConfig
from rcl.jobs import JobStore
from rcl.jobs.processes import is_job_child

FAKE_TRAINER = r'''
import json, os, signal, sys, time
from pathlib import Path

from rcl import paths
from rcl.jobs import progress_reporter

config_path, run_dir, job_id = sys.argv[1:4]
config = json.loads(Path(config_path).read_text())
mode = config["name"].split("-")[0]
with open(Path(config_path).parent / "starts", "a") as fh:
    fh.write(f"{os.getpid()}\n")
print(f"fake training {config['name']}", flush=True)
if mode == "fail":
    print("boom: fake failure", file=sys.stderr, flush=True)
    sys.exit(3)
if mode in ("slow", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    sys.exit(0)
report = progress_reporter(job_id)
epochs = config["epochs"]
partial = paths.partial_dir(run_dir)
partial.mkdir(parents=True, exist_ok=True)
report({"kind": "start", "epochs": epochs, "total_steps": epochs})
for epoch in range(1, epochs + 1):
    if mode == "nap":
        time.sleep(1.0)
    row = {"epoch": epoch, "val_cer": 0.5 / epoch, "val_f1_macro": 0.2 * epoch}
    with open(partial / "history.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"epoch {epoch}/{epochs}", flush=True)
    report({"kind": "epoch", **row, "epochs": epochs, "step": epoch, "total_steps": epochs, "train_loss": 1.0})
(partial / "metrics.json").write_text(json.dumps({"test": {"cer": 0.1}}))
os.replace(partial, run_dir)
report({"kind": "end"})
'''

WORKER = r'''
import sys
from rcl.jobs import run_worker

fake, max_parallel, stop_when_idle = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

def command(job, config_path):
    return [sys.executable, fake, str(config_path), str(job.run_dir), str(job.id)]

run_worker(max_parallel=max_parallel, poll_interval=0.1, stop_when_idle=stop_when_idle,
           command_factory=command, kill_grace=1.0)
'''


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def fake_config(name: str, epochs: int = 2) -> TrainConfig:
    return TrainConfig(name=name, epochs=epochs)


def write_fake_trainer(folder: Path) -> Path:
    path = folder / "fake_train.py"
    path.write_text(FAKE_TRAINER)
    return path


def fake_command(fake_trainer: Path):
    def command(job, config_path):
        return [sys.executable, str(fake_trainer), str(config_path), str(job.run_dir), str(job.id)]

    return command


def start_worker(fake_trainer: Path, max_parallel: int = 1, stop_when_idle: bool = False) -> subprocess.Popen:
    """A fake-trainer worker in its own process (so it can be killed like a real one)."""
    return subprocess.Popen([sys.executable, "-c", WORKER, str(fake_trainer), str(max_parallel),
                             "1" if stop_when_idle else "0"], start_new_session=True)


def kill_job_children(store: JobStore) -> None:
    for job in store.list():
        if job.pid and is_job_child(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def running_with_pid(store: JobStore, job_id: int):
    job = store.get(job_id)
    return job if job.state == "running" and job.pid else None


def starts(job) -> list[int]:
    """Pids of every process that started training this job."""
    path = job.job_dir / "starts"
    return [int(line) for line in path.read_text().split()] if path.is_file() else []
