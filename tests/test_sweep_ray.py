"""The Ray executor against a real local Ray (``num_cpus=2``): tiny trainings on the synthetic set.

One Ray instance serves the module (starting one costs ~10 s); it is shut down at the end.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from rcl import grid, paths
from rcl.cli import main
from rcl.config import TrainConfig
from rcl.jobs import JobStore

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--limit", "120", "--max-steps", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from rcl.ray_executor import connect

    connect(num_cpus=2)
    yield
    ray.shutdown()


def test_the_cli_sweep_on_ray_leaves_four_complete_run_folders_and_a_second_run_skips_them(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--data", "synthetic", "--losses", "ce,rcl", "--seeds", "0,1", *TINY, "--executor", "ray",
            "--out", str(out)]
    assert main(argv) == 0
    folders = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert folders == ["ce-seed0", "ce-seed1", "rcl-seed0", "rcl-seed1"]
    assert all(paths.is_complete(out / name) for name in folders)
    jobs = JobStore().list()
    assert sorted((j.name, j.state, j.executor) for j in jobs) == [(n, "done", "ray") for n in folders]
    assert all(j.epoch == 1 and j.epochs == 1 and j.val_f1 is not None for j in jobs)  # progress reached the store
    assert all("on Ray node" in (j.message or "") or j.message == "training finished" for j in jobs)
    capsys.readouterr()
    assert main(["jobs"]) == 0
    assert capsys.readouterr().out.count("  done   ray  ") == 4  # `rcl jobs` shows the Ray trials
    assert main(argv) == 0  # run again: every trial is finished, nothing trains
    assert "4 finished before (skipped), 0 done" in capsys.readouterr().out


def test_a_trial_whose_ray_worker_is_killed_is_retried_and_the_sweep_completes(tmp_path):
    base = TrainConfig(data="synthetic", epochs=2, limit=120, max_steps=2, image_size=32, batch_size=16, device="cpu")
    configs = grid.grid_configs(base, grid.custom_methods(["ce", "focal"]), seeds=[0, 1])
    store = JobStore()
    killed: dict[str, int] = {}

    def kill_first_trial_worker() -> None:  # a node losing a worker mid-trial
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline:
            for job in store.list(states=["running"]):
                if job.pid:
                    os.kill(job.pid, signal.SIGKILL)
                    killed[job.name] = job.pid
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_trial_worker, daemon=True)
    killer.start()
    result = grid.run_sweep(configs, tmp_path / "out", "ray", store=store, max_retries=2)
    killer.join(timeout=5)
    assert len(killed) == 1
    [(name, pid)] = killed.items()
    assert all(paths.is_complete(t.run_dir) for t in result["trials"])
    assert {j.state for j in result["jobs"]} == {"done"}
    victim = next(j for j in result["jobs"] if j.name == name)
    assert victim.pid != pid  # trained to the end by another worker process: Ray's retry
