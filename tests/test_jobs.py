"""The job store and worker: submission, ordering, cancel, crashes (child and worker), concurrency.

Scheduling mechanics run a tiny fake trainer (passed through ``run_worker(command_factory=...)``)
so they take seconds; one slow test runs the real ``rcl train`` child end to end. Every worker
and child a test starts is killed in teardown.
"""

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcl import jobs
from rcl.cli import main
from rcl.config import TrainConfig
from rcl.jobs import JobStore, job_history, job_logs, progress_reporter, run_worker, worker_status
from rcl.severity import ABLATION_CONFIGS

# Behaviour of the fake trainer is chosen by the job name's prefix: ok, slow, stubborn, fail.
FAKE_TRAINER = r'''
import json, signal, sys, time
from pathlib import Path

config_path, run_dir, job_id = sys.argv[1:4]
config = json.loads(Path(config_path).read_text())
mode = config["name"].split("-")[0]
print(f"fake training {config['name']}", flush=True)
if mode == "fail":
    print("boom: fake failure", file=sys.stderr, flush=True)
    sys.exit(3)
if mode in ("slow", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    sys.exit(0)
from rcl.jobs import progress_reporter
report = progress_reporter(job_id)
epochs = config["epochs"]
report({"kind": "start", "epochs": epochs, "total_steps": epochs})
for epoch in range(1, epochs + 1):
    row = {"epoch": epoch, "val_cer": 0.5 / epoch, "val_f1_macro": 0.2 * epoch}
    with open(Path(run_dir) / "history.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    report({"kind": "epoch", **row, "epochs": epochs, "step": epoch, "total_steps": epochs, "train_loss": 1.0})
(Path(run_dir) / "metrics.json").write_text(json.dumps({"test": {"cer": 0.1}}))
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


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
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


@pytest.fixture(autouse=True)
def _no_gpu_probe(monkeypatch):
    """No GPU here: say so, so workers skip the torch subprocess that counts GPUs."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def store() -> JobStore:
    return JobStore()


@pytest.fixture
def fake_trainer(tmp_path) -> Path:
    path = tmp_path / "fake_train.py"
    path.write_text(FAKE_TRAINER)
    return path


def fake_command(fake_trainer: Path):
    def command(job, config_path):
        return [sys.executable, str(fake_trainer), str(config_path), str(job.run_dir), str(job.id)]

    return command


@pytest.fixture
def spawn_worker(fake_trainer, store):
    """Start fake-trainer workers as separate processes; kill them and every job child afterwards."""
    started: list[subprocess.Popen] = []

    def spawn(max_parallel: int = 1, stop_when_idle: bool = False) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", WORKER, str(fake_trainer), str(max_parallel),
                                    "1" if stop_when_idle else "0"], start_new_session=True)
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kill_job_children(store)


def kill_job_children(store: JobStore) -> None:
    for job in store.list():
        if job.pid and jobs._is_job_child(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def running_with_pid(store: JobStore, job_id: int):
    job = store.get(job_id)
    return job if job.state == "running" and job.pid else None


# --- submission -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    ({"loss": "bogus"}, "unknown loss 'bogus'"),
    ({"data": "/no/such/folder"}, "dataset '/no/such/folder' does not exist"),
    ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
    ({"epochs": 0}, "epochs must be a whole number >= 1"),
    ({"colour": "red"}, "unknown config fields: colour"),
])
def test_invalid_config_fails_at_submission_and_stores_nothing(store, bad, message):
    with pytest.raises(ValueError, match=message):
        store.submit({**TrainConfig().to_dict(), **bad})
    with pytest.raises(ValueError, match=rf"config 2 \(second\): {message}"):
        store.submit_many([TrainConfig(name="first"), {**TrainConfig(name="second").to_dict(), **bad}])
    assert store.list() == []


def test_submit_records_the_job(store, tmp_path, monkeypatch):
    (tmp_path / "mydata").mkdir()
    monkeypatch.chdir(tmp_path)
    job = store.submit(TrainConfig(data="mydata", loss="rcl", model="small_cnn", seed=4), group="g1")
    assert job.state == "queued" and job.group == "g1" and job.name == "rcl-small_cnn-s4"
    # A relative data path is pinned at submission: the worker may run elsewhere.
    assert job.config["data"] == str(tmp_path / "mydata") and job.config["name"] == "rcl-small_cnn-s4"
    assert job.run_dir.parent == Path(os.environ["RCL_HOME"]).resolve()
    assert job.run_id.endswith(f"-rcl-small_cnn-s4-j{job.id}") and job.run_id[:8].isdigit()
    again = store.submit(TrainConfig(data="mydata", loss="rcl", model="small_cnn", seed=4), name="mine")
    assert again.id > job.id and again.run_dir != job.run_dir and again.name == "mine"
    assert [j.id for j in store.list(states=["queued"])] == [job.id, again.id]
    assert [j.id for j in store.list(group="g1")] == [job.id]
    assert store.get(job.id).to_dict()["progress"] == ""
    with pytest.raises(jobs.JobNotFound, match="no job 999"):
        store.get(999)
    with pytest.raises(ValueError, match="unknown job state"):
        store.list(states=["sleeping"])


def test_ablation_grid_is_one_submission(store):
    configs = jobs.make_ablation_configs(TrainConfig(epochs=1), seeds=2)
    assert len(configs) == 2 * (4 + len(ABLATION_CONFIGS))
    submitted = store.submit_many(configs, group="abl")
    assert len(store.list(group="abl")) == len(configs) == len({j.run_dir for j in submitted})
    rcl_pairs = {(j.config["alpha"], j.config["beta"]) for j in submitted if j.config["loss"] == "rcl"}
    assert rcl_pairs == {tuple(map(float, ab)) for ab in ABLATION_CONFIGS.values()}
    assert {j.config["loss"] for j in submitted} == {"ce", "wce", "focal", "label_smoothing", "rcl"}
    assert {j.config["seed"] for j in submitted} == {0, 1}


def test_schema_version_is_kept(store):
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == jobs.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {jobs.SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer rcl"):
        JobStore()


def _submit_from_process(home: str, barrier, index: int, queue) -> None:
    os.environ["RCL_HOME"] = home
    try:
        barrier.wait()
        ids = [JobStore().submit(TrainConfig(name=f"p{index}-{k}", seed=k)).id for k in range(3)]
        queue.put(("ok", ids))
    except Exception as exc:  # reported to the parent, which fails the test with it
        queue.put(("error", repr(exc)))


def test_concurrent_submissions_from_processes_lose_nothing(store):
    """8 processes submit at the same instant (3 jobs each): every write lands, no lock error."""
    context = multiprocessing.get_context("fork")  # children inherit the imported (slow) torch stack
    barrier, queue = context.Barrier(8), context.Queue()
    processes = [context.Process(target=_submit_from_process, args=(str(store.home), barrier, i, queue))
                 for i in range(8)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [r for r in results if r[0] == "error"] == []
    ids = sorted(i for _, batch in results for i in batch)
    assert ids == sorted(j.id for j in store.list()) and len(set(ids)) == 24
    assert {j.name for j in store.list()} == {f"p{i}-{k}" for i in range(8) for k in range(3)}


# --- state, progress, logs ------------------------------------------------------------------------


def test_cancel_a_queued_job_is_immediate(store):
    job = store.submit(fake_config("ok-1"))
    assert store.request_cancel(job.id).state == "cancelled"
    assert store.claim_next() is None
    assert store.request_cancel(job.id).state == "cancelled"  # twice is fine


def test_progress_reporter_writes_and_throttles(store):
    job = store.submit(fake_config("ok-1", epochs=3))
    store.claim_next()
    report = progress_reporter(job.id)
    report({"kind": "start", "epochs": 3, "total_steps": 30, "resumed_from_epoch": 0})

    def step(n: int) -> None:
        report({"kind": "step", "epoch": 1, "epochs": 3, "step": n, "total_steps": 30, "loss": 2.0})

    for n in range(1, 5):
        step(n)
    assert store.get(job.id).step is None  # within 0.5 s of the last write: skipped
    time.sleep(jobs.STEP_WRITE_INTERVAL + 0.05)
    step(6)
    step(7)
    assert store.get(job.id).step == 6
    report({"kind": "epoch", "epoch": 1, "epochs": 3, "step": 10, "total_steps": 30, "train_loss": 1.5,
            "val_cer": None, "val_f1_macro": 0.4, "selected_epoch": 1})
    got = store.get(job.id)
    assert (got.epoch, got.step, got.val_cer, got.val_f1, got.progress) == (1, 10, None, 0.4, "1/3 (33%)")
    store.mark_done(job.id)
    report({"kind": "epoch", "epoch": 2, "epochs": 3, "step": 20, "total_steps": 30, "val_cer": 0.1,
            "val_f1_macro": 0.5})
    assert store.get(job.id).epoch == 1  # a finished job's record is final
    with pytest.raises(ValueError, match="unknown progress fields"):
        store.update_progress(job.id, colour=1)


def test_job_logs_and_history_read_the_run_folder(store):
    job = store.submit(fake_config("ok-1"))
    assert job_logs(job.id) == "" and job_history(job) == []
    job.run_dir.mkdir()
    (job.run_dir / "train.log").write_text("first\n10%\r50%\r100%\nlast\n")
    (job.run_dir / "history.jsonl").write_text('{"epoch": 1, "val_cer": 0.2}\n')
    assert job_logs(job.id) == "first\n100%\nlast"
    assert job_logs(job.id, tail=1) == "last"
    assert job_history(job.id) == [{"epoch": 1, "val_cer": 0.2}]


# --- the worker -----------------------------------------------------------------------------------


def test_three_jobs_run_to_done_in_order(store, fake_trainer):
    submitted = [store.submit(fake_config(f"ok-{i}")) for i in range(3)]
    assert run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True,
                      command_factory=fake_command(fake_trainer)) == 3
    done = [store.get(j.id) for j in submitted]
    assert [j.state for j in done] == ["done"] * 3
    for before, after in zip(done, done[1:]):
        assert before.started <= before.finished <= after.started  # one at a time, oldest first
    for job in done:
        assert {"job_config.json", "train.log", "history.jsonl", "metrics.json"} <= {p.name for p in job.run_dir.iterdir()}
        assert TrainConfig.load(job.run_dir / "job_config.json") == job.train_config()
        assert (job.epoch, job.epochs, job.val_f1, job.error) == (2, 2, 0.4, None)
        assert [row["epoch"] for row in job_history(job)] == [1, 2]
        assert f"fake training {job.name}" in job_logs(job.id)
    assert store.workers() == []  # the worker removed its heartbeat row on the way out


def test_failing_child_is_reported_and_the_queue_goes_on(store, fake_trainer):
    failing, after = store.submit(fake_config("fail-1")), store.submit(fake_config("ok-2"))
    run_worker(max_parallel=1, poll_interval=0.05, stop_when_idle=True, command_factory=fake_command(fake_trainer))
    failed = store.get(failing.id)
    assert failed.state == "failed"
    assert "exited with code 3" in failed.error and "boom: fake failure" in failed.error
    assert store.get(after.id).state == "done"


def test_child_exiting_zero_without_metrics_is_a_failure(store, tmp_path):
    job = store.submit(fake_config("ok-1"))
    run_worker(max_parallel=1, poll_interval=0.05, once=True,
               command_factory=lambda job, config_path: [sys.executable, "-c", "print('nothing')"])
    assert "without writing metrics.json" in store.get(job.id).error


def test_cancel_a_running_job_stops_it(store, spawn_worker):
    """A child that ignores SIGTERM still stops: SIGKILL after the grace period (1 s here)."""
    stubborn, after = store.submit(fake_config("stubborn-1")), store.submit(fake_config("ok-2"))
    spawn_worker()
    pid = wait_for(lambda: running_with_pid(store, stubborn.id), what="the job to start").pid
    time.sleep(0.3)  # let the child install its SIGTERM handler
    asked = time.monotonic()
    assert store.request_cancel(stubborn.id).state == "running"
    wait_for(lambda: store.get(stubborn.id).state == "cancelled", timeout=8, what="the cancel")
    assert time.monotonic() - asked < 5
    assert not jobs._pid_alive(pid)
    wait_for(lambda: store.get(after.id).state == "done", what="the next job")


def test_kill_9_of_a_child_fails_its_job_and_the_next_runs(store, spawn_worker):
    slow, after = store.submit(fake_config("slow-1")), store.submit(fake_config("ok-2"))
    spawn_worker()
    pid = wait_for(lambda: running_with_pid(store, slow.id), what="the job to start").pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: store.get(slow.id).state == "failed", what="the failure")
    assert "killed by SIGKILL" in store.get(slow.id).error
    wait_for(lambda: store.get(after.id).state == "done", what="the next job")


def test_a_restarted_worker_recovers_after_a_crash(store, spawn_worker):
    """Kill -9 the worker mid-job: its successor fails that job with a reason and runs the queue."""
    slow = store.submit(fake_config("slow-1"))
    queued = [store.submit(fake_config(f"ok-{i}")) for i in range(2)]
    first = spawn_worker()
    child = wait_for(lambda: running_with_pid(store, slow.id), what="the job to start").pid
    wait_for(lambda: worker_status(store)["alive"], what="the heartbeat")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert jobs._pid_alive(child)  # the orphaned child outlives its worker...
    assert [store.get(j.id).state for j in queued] == ["queued", "queued"]
    spawn_worker(stop_when_idle=True).wait(timeout=30)
    failed = store.get(slow.id)
    assert failed.state == "failed" and "worker" in failed.error and "stopped while the job was running" in failed.error
    assert not jobs._pid_alive(child)  # ...until the new worker stops it
    assert [store.get(j.id).state for j in queued] == ["done", "done"]


def test_a_vanished_process_is_reported(store):
    """A running job whose worker and child are both gone (e.g. after a reboot)."""
    job = store.submit(fake_config("slow-1"))
    store.claim_next(worker_pid=999_999)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.mark_running(job.id, dead.pid)
    cancelled = store.submit(fake_config("slow-2"))
    store.claim_next(worker_pid=999_999)
    store.mark_running(cancelled.id, dead.pid)
    store.request_cancel(cancelled.id)  # asked while no worker was watching
    claimed_never_started = store.submit(fake_config("ok-3"))
    store.claim_next(worker_pid=999_999)
    run_worker(max_parallel=1, poll_interval=0.05, once=True,
               command_factory=lambda job, config_path: [sys.executable, "-c", "import sys; sys.exit(1)"])
    assert f"process {dead.pid} vanished" in store.get(job.id).error
    assert store.get(cancelled.id).state == "cancelled"
    # The job claimed but never started went back to the queue and then ran (and failed, by design).
    assert store.get(claimed_never_started.id).error.startswith("the training process exited with code 1")


def test_one_worker_per_data_directory(store, spawn_worker):
    worker = spawn_worker()
    status = wait_for(lambda: (s := worker_status(store))["alive"] and s, what="the heartbeat")
    assert status["pid"] == worker.pid and status["running"] == [] and status["queued"] == 0
    with pytest.raises(RuntimeError, match=f"another worker \\(pid {worker.pid}\\) is already running"):
        run_worker(once=True)
    os.kill(worker.pid, signal.SIGTERM)  # a clean stop removes the heartbeat
    assert worker.wait(timeout=10) == 0
    assert worker_status(store)["alive"] is False


def test_ensure_worker_starts_one_detached_worker(store):
    pid = jobs.ensure_worker()
    try:
        wait_for(lambda: worker_status(store)["alive"], what="the detached worker")
        assert worker_status(store)["pid"] == pid
        assert jobs.ensure_worker() == pid
    finally:
        os.killpg(pid, signal.SIGTERM)
        for process in jobs._SPAWNED:
            process.wait(timeout=10)
        jobs._SPAWNED.clear()
    assert "worker serving" in (store.home / "worker.log").read_text()


# --- command line ---------------------------------------------------------------------------------


def test_cli_submit_jobs_cancel_logs(store, tmp_path, capsys):
    config = tmp_path / "c.json"
    TrainConfig(name="ok-1", epochs=1).save(config)
    assert main(["submit", "--config", str(config), "--no-worker"]) == 0
    assert "queued job 1: ok-1" in capsys.readouterr().out
    assert main(["submit", "--ablation", "--seeds", "1", "--epochs", "1", "--no-worker", "--json"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert len(grid) == 11 and len({j["group"] for j in grid}) == 1 and grid[0]["group"].startswith("ablation-")
    assert main(["submit", "--seeds", "2", "--no-worker"]) == 2
    assert "--seeds needs --ablation" in capsys.readouterr().err

    assert main(["cancel", "2"]) == 0
    assert "job 2: cancelled" in capsys.readouterr().out
    assert main(["jobs", "--state", "cancelled", "--json"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)] == [2]
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "ok-1" in out and "queued" in out and "no worker is running" in out
    assert main(["logs", "1"]) == 0
    assert "has no log yet" in capsys.readouterr().out
    assert main(["cancel", "99"]) == 2
    assert "no job 99" in capsys.readouterr().err


# --- end to end with the real trainer -------------------------------------------------------------


@pytest.mark.slow
def test_real_training_job_end_to_end(store):
    job = store.submit(TrainConfig(model="small_cnn", epochs=1, image_size=32, limit=300, max_steps=5,
                                   batch_size=16, device="cpu"))
    run_worker(max_parallel=1, poll_interval=0.2, stop_when_idle=True)
    done = store.get(job.id)
    assert done.state == "done", done.error
    for name in ("config.json", "metrics.json", "predictions.npz", "history.jsonl", "model.safetensors",
                 "train.log", "job_config.json"):
        assert (done.run_dir / name).is_file(), name
    assert (done.epoch, done.epochs, done.step, done.total_steps) == (1, 1, 5, 5)
    assert done.val_f1 is not None and len(job_history(done)) == 1
