"""The worker as a supervisor, with real processes: order, failures, cancel, and crashes (kill -9).

Children are a fake trainer (:mod:`job_helpers`) so each test takes seconds; one slow test runs the
real ``rcl train`` child end to end. Every worker and child a test starts is killed in teardown.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from job_helpers import (
    fake_command,
    fake_config,
    kill_job_children,
    running_with_pid,
    start_worker,
    starts,
    wait_for,
    write_fake_trainer,
)

from rcl import jobs
from rcl.cli import main
from rcl.config import TrainConfig
from rcl.jobs import JobStore, job_history, job_logs, run_worker, worker_status
from rcl.jobs.processes import pid_alive, python_command


@pytest.fixture(autouse=True)
def _no_gpu_probe(monkeypatch):
    """No GPU here: say so, so workers skip the torch subprocess that counts GPUs."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def store() -> JobStore:
    return JobStore()


@pytest.fixture
def fake_trainer(tmp_path) -> Path:
    return write_fake_trainer(tmp_path)


@pytest.fixture
def spawn_worker(fake_trainer, store):
    """Start fake-trainer workers as separate processes; kill them and every job child afterwards."""
    started: list[subprocess.Popen] = []

    def spawn(max_parallel: int = 1, stop_when_idle: bool = False) -> subprocess.Popen:
        started.append(start_worker(fake_trainer, max_parallel, stop_when_idle))
        return started[-1]

    yield spawn
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kill_job_children(store)


def kill_worker(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


# --- the normal path ------------------------------------------------------------------------------


def test_three_jobs_run_to_done_in_order(store, fake_trainer):
    submitted = [store.submit(fake_config(f"ok-{i}")) for i in range(3)]
    assert run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True,
                      command_factory=fake_command(fake_trainer)) == 3
    done = [store.get(j.id) for j in submitted]
    assert [j.state for j in done] == ["done"] * 3
    for before, after in zip(done, done[1:]):
        assert before.started <= before.finished <= after.started  # one at a time, oldest first
    for job in done:
        assert {"train.log", "history.jsonl", "metrics.json"} <= {p.name for p in job.run_dir.iterdir()}
        assert TrainConfig.load(job.job_dir / "config.json") == job.train_config()
        assert (job.epoch, job.epochs, job.val_f1, job.error) == (2, 2, 0.4, None)
        assert [row["epoch"] for row in job_history(job)] == [1, 2]
        log = job_logs(job.id)
        assert f"fake training {job.name}" in log and "\r" not in log
        assert [line for line in log.splitlines() if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
        assert starts(job) == [job.pid]
    assert store.workers() == []  # the worker removed its heartbeat row on the way out


def test_job_child_runs_in_the_data_directory_with_the_installed_package(store):
    """A folder named ``rcl`` where the child runs must not shadow the package."""
    bogus = store.home / "rcl"
    bogus.mkdir()
    (bogus / "__init__.py").write_text("raise SystemExit('the shadowing rcl folder was imported')\n")
    script = ("import json, os, sys, rcl; from rcl import paths; out = sys.argv[1]; os.makedirs(out); "
              "json.dump({'rcl': rcl.__file__, 'cwd': os.getcwd()}, open(os.path.join(out, 'metrics.json'), 'w'))")
    job = store.submit(fake_config("ok-1"))
    run_worker(max_parallel=1, poll_interval=0.05, once=True,
               command_factory=lambda job, config_path: [*python_command(), "-c", script, str(job.run_dir)])
    done = store.get(job.id)
    assert done.state == "done", done.error
    seen = __import__("json").loads((done.run_dir / "metrics.json").read_text())
    assert Path(seen["rcl"]).resolve() == Path(jobs.__file__).resolve().parents[1] / "__init__.py"
    assert Path(seen["cwd"]).resolve() == store.home.resolve()


def test_failing_child_is_reported_and_the_queue_goes_on(store, fake_trainer):
    failing, after = store.submit(fake_config("fail-1")), store.submit(fake_config("ok-2"))
    run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True, command_factory=fake_command(fake_trainer))
    failed = store.get(failing.id)
    assert failed.state == "failed"
    assert "exited with code 3" in failed.error and "boom: fake failure" in failed.error
    assert store.get(after.id).state == "done"


def test_child_exiting_zero_without_metrics_is_a_failure(store):
    job = store.submit(fake_config("ok-1"))
    run_worker(max_parallel=1, poll_interval=0.05, once=True,
               command_factory=lambda job, config_path: [sys.executable, "-c", "print('nothing')"])
    assert "without writing metrics.json" in store.get(job.id).error


def test_cancel_a_running_job_stops_it(store, spawn_worker):
    """A child that ignores SIGTERM still stops: SIGKILL after the grace period (1 s here)."""
    stubborn, after = store.submit(fake_config("stubborn-1")), store.submit(fake_config("ok-2"))
    spawn_worker()
    pid = wait_for(lambda: running_with_pid(store, stubborn.id), what="the job to start").pid
    wait_for(lambda: starts(stubborn), what="the child to install its SIGTERM handler")
    assert store.request_cancel(stubborn.id).state == "running"
    wait_for(lambda: store.get(stubborn.id).state == "cancelled", timeout=15, what="the cancel")
    assert not pid_alive(pid)
    wait_for(lambda: store.get(after.id).state == "done", what="the next job")


# --- crashes: kill -9 -----------------------------------------------------------------------------


def test_kill_9_of_a_child_fails_its_job_and_nothing_else(store, spawn_worker):
    slow, neighbour = store.submit(fake_config("slow-1")), store.submit(fake_config("nap-2", epochs=3))
    after = store.submit(fake_config("ok-3"))
    worker = spawn_worker(max_parallel=2)
    pid = wait_for(lambda: running_with_pid(store, slow.id), what="the job to start").pid
    wait_for(lambda: running_with_pid(store, neighbour.id), what="the neighbour to start")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: store.get(slow.id).state == "failed", what="the failure")
    assert store.get(slow.id).error.startswith("the training process was killed by SIGKILL")
    wait_for(lambda: store.get(after.id).state == "done", what="the next job")
    wait_for(lambda: store.get(neighbour.id).state == "done", what="the neighbour")
    assert starts(store.get(neighbour.id)) == [store.get(neighbour.id).pid]  # never disturbed, never rerun
    assert worker.poll() is None and worker_status(store)["pid"] == worker.pid


def test_worker_killed_mid_job_then_a_submit_adopts_the_orphan(store, spawn_worker):
    """kill -9 of the worker: the next worker (as a submit starts one) adopts the live child."""
    orphan = store.submit(fake_config("nap-1", epochs=4))
    waiting = store.submit(fake_config("ok-2"))
    first = spawn_worker()
    child = wait_for(lambda: running_with_pid(store, orphan.id), what="the job to start").pid
    wait_for(lambda: (store.get(orphan.id).epoch or 0) >= 1, what="the first epoch")
    kill_worker(first)
    assert pid_alive(child) and store.get(orphan.id).state == "running"
    submitted = store.submit(fake_config("ok-3"))  # what `rcl submit` / the Launch button does
    spawn_worker(stop_when_idle=True).wait(timeout=60)
    done = store.get(orphan.id)
    assert (done.state, done.error, done.epoch, done.pid) == ("done", None, 4, child)
    assert starts(done) == [child]  # adopted and waited for: never killed, never rerun
    assert [row["epoch"] for row in job_history(done)] == [1, 2, 3, 4]
    assert [store.get(j.id).state for j in (waiting, submitted)] == ["done", "done"]
    assert [j.state for j in store.list()].count("done") == 3


def test_an_orphan_that_finished_unwatched_is_settled_done_once(store, spawn_worker):
    orphan = store.submit(fake_config("nap-1", epochs=2))
    first = spawn_worker()
    child = wait_for(lambda: running_with_pid(store, orphan.id), what="the job to start").pid
    kill_worker(first)
    wait_for(lambda: not pid_alive(child) and orphan.run_dir.is_dir(), what="the orphan to finish")
    assert store.get(orphan.id).state == "running"  # nobody watched it finish
    assert run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True) == 1
    done = store.get(orphan.id)
    assert (done.state, done.error, starts(done)) == ("done", None, [child])  # settled, not rerun
    assert (done.run_dir / "train.log").is_file()


def test_a_job_whose_worker_and_child_died_resumes(store, spawn_worker):
    """Both killed (a reboot, an OOM killer): the job is requeued and its next child resumes it."""
    job = store.submit(fake_config("nap-1", epochs=3))
    first = spawn_worker()
    child = wait_for(lambda: running_with_pid(store, job.id), what="the job to start").pid
    wait_for(lambda: (store.get(job.id).epoch or 0) >= 1, what="the first epoch")
    kill_worker(first)
    os.killpg(child, signal.SIGKILL)
    wait_for(lambda: not pid_alive(child), what="the child to die")
    spawn_worker(stop_when_idle=True).wait(timeout=60)
    done = store.get(job.id)
    assert (done.state, done.error) == ("done", None)
    assert len(starts(done)) == 2 and starts(done)[0] == child  # requeued once, run again to the end


def test_recovery_of_each_unwatched_state(store):
    """Claimed but never started → requeued; cancelled while unwatched → cancelled; a reused pid → not ours."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        reused = store.submit(fake_config("ok-1"))
        store.claim_next(worker_pid=999_999)
        store.mark_running(reused.id, stranger.pid, pid_start="1")  # same pid, another process
        cancelled = store.submit(fake_config("slow-2"))
        store.claim_next(worker_pid=999_999)
        store.mark_running(cancelled.id, stranger.pid, pid_start="1")
        store.request_cancel(cancelled.id)  # asked while no worker was watching
        never_started = store.submit(fake_config("ok-3"))
        store.claim_next(worker_pid=999_999)
        run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True,
                   command_factory=lambda job, config_path: [sys.executable, "-c", "import sys; sys.exit(1)"])
        assert stranger.poll() is None  # a process that is not ours is never signalled
        assert store.get(cancelled.id).state == "cancelled"
        # Requeued, then run again under this worker (and failed, by design of this command).
        for job_id in (reused.id, never_started.id):
            assert store.get(job_id).error.startswith("the training process exited with code 1")
    finally:
        stranger.kill()
        stranger.wait()


def test_shutdown_requeues_running_jobs_to_resume(store, spawn_worker):
    job = store.submit(fake_config("slow-1"))
    worker = spawn_worker()
    pid = wait_for(lambda: running_with_pid(store, job.id), what="the job to start").pid
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    stopped = store.get(job.id)
    assert not pid_alive(pid)
    assert (stopped.state, stopped.pid) == ("queued", None)
    assert "the worker stopped (SIGTERM)" in stopped.message and "resumes" in stopped.message


# --- one worker, started on demand ----------------------------------------------------------------


def test_one_worker_per_data_directory(store, spawn_worker):
    worker = spawn_worker()
    status = wait_for(lambda: (s := worker_status(store))["alive"] and s, what="the heartbeat")
    assert status["pid"] == worker.pid and status["running"] == [] and status["queued"] == 0
    with pytest.raises(RuntimeError, match=f"another worker \\(pid {worker.pid}\\) is already running"):
        run_worker(once=True)
    os.kill(worker.pid, signal.SIGTERM)  # a clean stop removes the heartbeat
    assert worker.wait(timeout=10) == 0
    assert worker_status(store)["alive"] is False


def test_ensure_worker_starts_one_detached_worker_in_the_data_directory(store):
    pid = jobs.ensure_worker()
    try:
        wait_for(lambda: worker_status(store)["alive"], what="the detached worker")
        assert worker_status(store)["pid"] == pid
        assert jobs.ensure_worker() == pid
        assert Path(os.readlink(f"/proc/{pid}/cwd")) == store.home.resolve()
    finally:
        os.killpg(pid, signal.SIGTERM)
        for process in jobs.client._SPAWNED:
            process.wait(timeout=10)
        jobs.client._SPAWNED.clear()
    assert "worker serving" in (store.home / "worker.log").read_text()


def test_an_idle_worker_exits_after_its_idle_time_and_a_busy_one_does_not(store, fake_trainer):
    assert run_worker(idle_exit=0.3, poll_interval=0.05) == 0  # nothing to do: returns by itself
    store.submit(fake_config("nap-1"))
    finished = run_worker(idle_exit=0.0, poll_interval=0.05, command_factory=fake_command(fake_trainer))
    assert finished == 1 and store.list()[0].state == "done"  # idle only once the queue was served
    with pytest.raises(ValueError, match="idle_exit must be"):
        run_worker(idle_exit=-1)


def test_the_app_started_worker_idles_out_and_stop_worker_stops_one(store, spawn_worker):
    assert jobs.client.WORKER_IDLE_MINUTES > 0
    assert jobs.stop_worker(store) is None  # none running: nothing to stop
    worker = spawn_worker()
    wait_for(lambda: worker_status(store)["alive"], what="the heartbeat")
    assert jobs.stop_worker(store) == worker.pid
    assert worker.wait(timeout=10) == 0 and worker_status(store)["alive"] is False
    assert main(["worker", "--stop"]) == 0


def test_the_app_exiting_stops_the_worker_it_started_when_no_job_runs(store):
    pid = jobs.ensure_worker()
    try:
        wait_for(lambda: worker_status(store)["alive"], what="the detached worker")
        command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        assert command[-3:-1] == ["--idle-exit", f"{jobs.client.WORKER_IDLE_MINUTES:g}"]
        jobs.client._stop_idle_spawned_workers()  # what runs at the app's exit
        assert jobs.client._SPAWNED[-1].wait(timeout=10) == 0
    finally:
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        jobs.client._SPAWNED.clear()


def test_reading_job_state_restarts_a_missing_worker(store, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(jobs.client, "ensure_worker", lambda *a, **k: started.append(1) or 4242)
    monkeypatch.setenv("RCL_WORKER_AUTOSTART", "1")
    assert worker_status(store)["revived"] is None and started == []  # nothing waits: no worker
    store.submit(fake_config("ok-1"))
    assert worker_status(store)["revived"] == 4242 and started == [1]
    assert main(["jobs"]) == 0
    assert "started one (pid 4242)" in capsys.readouterr().out
    monkeypatch.setenv("RCL_WORKER_AUTOSTART", "0")
    assert worker_status(store)["revived"] is None and len(started) == 2


# --- end to end with the real trainer -------------------------------------------------------------


@pytest.mark.slow
def test_real_training_job_end_to_end(store):
    (store.home / "rcl").mkdir()  # a folder that would shadow the package in the child's directory
    (store.home / "rcl" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    job = store.submit(TrainConfig(model="small_cnn", epochs=2, image_size=32, limit=300, max_steps=5,
                                   batch_size=16, device="cpu"))
    run_worker(max_parallel=1, poll_interval=0.2, stop_when_idle=True)
    done = store.get(job.id)
    assert done.state == "done", done.error
    for name in ("config.json", "metrics.json", "predictions.npz", "history.jsonl", "model.safetensors", "train.log"):
        assert (done.run_dir / name).is_file(), name
    assert (done.epoch, done.epochs, done.step, done.total_steps) == (2, 2, 10, 10)
    assert done.val_f1 is not None and len(job_history(done)) == 2
    log = (done.run_dir / "train.log").read_text()
    assert "\r" not in log  # no progress-bar frames in a log file
    assert [line.split(":")[0] for line in log.splitlines() if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]


@pytest.mark.slow
def test_real_worker_killed_mid_job_then_a_submit_finishes_it_once(store, capsys):
    """The real `rcl submit` / `rcl worker` / `rcl train` processes: kill -9 the worker mid-job."""
    tiny = ["--data", "synthetic", "--model", "small_cnn", "--image-size", "32", "--limit", "300", "--max-steps", "5",
            "--batch-size", "16", "--device", "cpu"]
    try:
        assert main(["submit", *tiny, "--epochs", "3", "--name", "orphan"]) == 0
        job = store.list()[0]
        child = wait_for(lambda: running_with_pid(store, job.id), timeout=120, what="the job to start").pid
        wait_for(lambda: (store.get(job.id).epoch or 0) >= 1, timeout=120, what="the first epoch")
        first = worker_status(store, revive=False)["pid"]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not pid_alive(first), what="the worker to die")
        assert main(["submit", *tiny, "--epochs", "1", "--name", "after"]) == 0
        wait_for(lambda: all(j.state == "done" for j in store.list()), timeout=300, what="both jobs")
    finally:
        for process in jobs.client._SPAWNED:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        jobs.client._SPAWNED.clear()
        kill_job_children(store)
    done = store.get(job.id)
    assert (done.state, done.error, done.epoch, done.pid) == ("done", None, 3, child)
    log = (done.run_dir / "train.log").read_text()
    assert log.count(f"] job {job.id} on CPU:") == 1  # started once: adopted or settled, never rerun
    assert [line.split(":")[0] for line in log.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3"]
