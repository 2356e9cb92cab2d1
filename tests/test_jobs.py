"""The job store and its users: submission, schema, concurrency, progress, logs, the CLI, and
faults of the database file (read-only, full, damaged), plus the import graph that keeps the job
package below the training engine. The worker is tested in test_jobs_worker.py.
"""

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from job_helpers import fake_config

from rcl import jobs, paths
from rcl.ablation import ablation_configs
from rcl.cli import main
from rcl.config import TrainConfig
from rcl.jobs import JobStore, JobStoreError, job_history, job_logs, progress_reporter
from rcl.jobs.store import MIGRATIONS
from rcl.paper import ABLATION_CONFIGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store() -> JobStore:
    return JobStore()


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
    with pytest.raises(jobs.JobNotFound, match="no job with id 999"):
        store.get(999)
    with pytest.raises(ValueError, match="unknown job state"):
        store.list(states=["sleeping"])


def test_ablation_grid_is_one_submission(store):
    configs = ablation_configs(TrainConfig(epochs=1), range(2))
    assert len(configs) == 2 * (4 + len(ABLATION_CONFIGS))
    submitted = jobs.submit(configs, group="abl", start_worker=False)
    assert len(store.list(group="abl")) == len(configs) == len({j.run_dir for j in submitted})
    rcl_pairs = {(j.config["alpha"], j.config["beta"]) for j in submitted if j.config["loss"] == "rcl"}
    assert rcl_pairs == {tuple(map(float, ab)) for ab in ABLATION_CONFIGS.values()}
    assert {j.config["loss"] for j in submitted} == {"ce", "wce", "focal", "label_smoothing", "rcl"}
    assert {j.config["seed"] for j in submitted} == {0, 1}


def test_an_ablation_keeps_the_name_it_was_given():
    from rcl.ablation import method_of
    from rcl.paper import METHODS

    named = ablation_configs(TrainConfig(epochs=1, name="hosp-A"), range(1))
    assert [c.name for c in named[:2]] == ["hosp-A-CE-seed0", "hosp-A-WCE-seed0"]
    assert [method_of(c.name) for c in named] == list(METHODS)
    assert [method_of(c.name) for c in ablation_configs(TrainConfig(epochs=1), range(1))] == list(METHODS)


def test_schema_version_is_kept(store):
    store.list()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == jobs.SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {jobs.SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer rcl"):
        JobStore().list()


def test_a_version_1_store_migrates_and_keeps_its_jobs(store):
    with sqlite3.connect(store.path) as conn:
        for sql in MIGRATIONS[0]:
            conn.execute(sql)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO jobs (name, config, state, run_dir, created) VALUES (?, ?, 'queued', ?, 0)",
                     ("old", json.dumps(TrainConfig(name="old").to_dict()), str(store.home / "old-j1")))
    [old] = JobStore().list()
    assert (old.name, old.state, old.pid_start) == ("old", "queued", None)
    assert JobStore().submit(fake_config("new-1")).id == 2


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


def test_job_logs_and_history_follow_the_run(store):
    job = store.submit(fake_config("ok-1"))
    assert job_logs(job.id) == "" and job_history(job) == []
    job.run_dir.mkdir()
    (job.run_dir / "train.log").write_text("an older rcl logged in the run folder\n")
    assert job_logs(job.id) == "an older rcl logged in the run folder"
    (job.run_dir / "train.log").unlink()
    job.run_dir.rmdir()
    job.job_dir.mkdir(parents=True)
    job.log_path.write_text("first\n10%\r50%\r100%\nlast\n")
    assert job_logs(job.id) == "first\n100%\nlast"
    assert job_logs(job.id, tail=1) == "last"
    training = paths.partial_dir(job.run_dir)  # while training, the run lives here
    training.mkdir()
    (training / "history.jsonl").write_text('{"epoch": 1, "val_cer": 0.2}\n')
    assert job_history(job.id) == [{"epoch": 1, "val_cer": 0.2}]
    (training / "metrics.json").write_text("{}")
    training.rename(job.run_dir)  # finished: the partial folder became the run folder
    assert job_history(job) == [{"epoch": 1, "val_cer": 0.2}]


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
    assert "no job with id 99 " in capsys.readouterr().err




# --- faults of the database file: one line in the CLI, a plain message in the app -----------------


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


def with_pragma(monkeypatch, pragma: str) -> None:
    """Every connection the store opens gets ``pragma``: SQLite's own read-only / full-disk errors."""
    connect = sqlite3.connect

    def connect_with_pragma(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.execute(pragma)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect_with_pragma)


def test_a_damaged_job_database_is_one_line(store, capsys):
    store.path.write_bytes(b"this is not a database" * 100)
    for argv in (["jobs"], ["cancel", "1"], ["logs", "1"], ["submit", "--no-worker"]):
        err = one_line_error(capsys, argv)
        assert f"the job database {store.path} is damaged" in err and "move it aside" in err
    with pytest.raises(JobStoreError, match="is damaged"):
        JobStore().list()
    assert issubclass(JobStoreError, RuntimeError)  # a user error for every boundary that maps those


def test_a_read_only_job_database_lists_but_refuses_writes_in_one_line(store, monkeypatch, capsys):
    job = store.submit(fake_config("ok-1"))
    with_pragma(monkeypatch, "PRAGMA query_only = ON")
    assert main(["jobs"]) == 0 and "ok-1" in capsys.readouterr().out  # reading still works
    err = one_line_error(capsys, ["cancel", str(job.id)])
    assert "is read-only" in err and "set RCL_HOME to a writable folder" in err
    assert store.get(job.id).state == "queued"


def test_a_full_disk_under_the_job_database_is_one_line(store, monkeypatch, capsys):
    store.submit(fake_config("ok-1"))
    with sqlite3.connect(store.path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with_pragma(monkeypatch, f"PRAGMA max_page_count = {pages}")
    config = store.home / "c.json"
    TrainConfig(name="big-" + "x" * 20_000, epochs=1).save(config)  # a row that needs new pages
    err = one_line_error(capsys, ["submit", "--config", str(config), "--no-worker"])
    assert "disk full" in err and "free space" in err
    assert len(store.list()) == 1


@pytest.mark.parametrize("job_id", ["99999999999999999999999", "-3", "0", "abc"])
def test_an_impossible_job_id_is_no_such_job(store, capsys, job_id):
    for argv in (["logs", job_id], ["cancel", job_id]):
        err = one_line_error(capsys, argv)
        assert "no job with id" in err or "job ids are whole numbers" in err


def test_the_train_page_shows_a_damaged_job_database_as_a_message(store):
    from streamlit.testing.v1 import AppTest

    store.path.write_bytes(b"garbage" * 1000)
    at = AppTest.from_file(str(ROOT / "app_pages" / "2_Train.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("is damaged" in e.value and "move it aside" in e.value for e in at.error), [e.value for e in at.error]


# --- the import graph: the job package sits below the training engine ------------------------------

ENGINE = ("torch", "rcl.train", "rcl.engine", "rcl.posthoc", "rcl.ablation", "rcl.losses", "rcl.models")


def test_no_job_module_imports_the_training_engine():
    import ast

    for path in (ROOT / "rcl" / "jobs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(ENGINE), f"{path.name} imports {name}"


def test_light_commands_load_neither_torch_nor_the_engine(store):
    store.submit(fake_config("ok-1"))
    script = ("import sys; from rcl.cli import main\n"
              "for argv in (['jobs'], ['logs', '1'], ['cancel', '1'], ['jobs', '--json']):\n"
              "    assert main(argv) == 0, argv\n"
              f"loaded = sorted(m for m in sys.modules if m.startswith({ENGINE!r}))\n"
              "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "RCL_HOME": str(store.home)})
    assert result.returncode == 0, result.stderr
