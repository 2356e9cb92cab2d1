"""Sweeps without Ray: the grid, skipping finished trials, trial rows in the job store, grid progress.

The Ray executor itself is exercised against a local Ray in ``test_sweep_ray.py``.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from helpers import ROOT, write_run
from hypothesis import given, settings
from hypothesis import strategies as st
from job_helpers import fake_command, write_fake_trainer

from rcl import grid
from rcl.ablation import ablation_configs
from rcl.cli import main
from rcl.config import TrainConfig
from rcl.jobs import JobStore, run_worker
from rcl.jobs.client import ORPHAN_AFTER, list_jobs
from rcl.jobs.job import Job
from rcl.paper import METHODS


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path / "rcl_home" / "jobs.sqlite")


def test_a_custom_grid_gives_penalties_only_to_losses_that_take_the_matrix():
    methods = grid.custom_methods(["ce", "Focal", "RCL"], alphas=[1, 5], betas=[20])
    configs = grid.grid_configs(TrainConfig(alpha=2, beta=3), methods, seeds=[0, 1])
    assert [c.name for c in configs[:4]] == ["ce-seed0", "focal-seed0", "rcl-a1-b20-seed0", "rcl-a5-b20-seed0"]
    assert len(configs) == 8
    by_name = {c.name: c for c in configs}
    assert (by_name["rcl-a5-b20-seed1"].alpha, by_name["rcl-a5-b20-seed1"].beta, by_name["rcl-a5-b20-seed1"].seed) == (5, 20, 1)
    assert (by_name["ce-seed0"].alpha, by_name["ce-seed0"].beta) == (2, 3)  # untouched: CE ignores them


@settings(max_examples=25, deadline=None)
@given(losses=st.lists(st.sampled_from(["ce", "wce", "focal", "rcl", "expected_risk"]), min_size=1, unique=True),
       alphas=st.lists(st.sampled_from([1.0, 2.0, 5.0]), min_size=1, max_size=3, unique=True),
       betas=st.lists(st.sampled_from([10.0, 20.0]), min_size=1, max_size=2, unique=True),
       seeds=st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),
       models=st.lists(st.sampled_from(["small_cnn", "resnet18"]), min_size=1, unique=True))
def test_the_grid_size_is_the_product_of_its_axes_and_every_name_is_unique(losses, alphas, betas, seeds, models):
    matrix_losses = sum(loss in ("rcl", "expected_risk") for loss in losses)
    configs = grid.grid_configs(TrainConfig(), grid.custom_methods(losses, alphas, betas), seeds, models)
    assert len(configs) == len(seeds) * len(models) * (len(losses) - matrix_losses + matrix_losses * len(alphas) * len(betas))
    assert len({c.name for c in configs}) == len(configs)
    assert all(c.name.endswith(f"-seed{c.seed}") for c in configs)


def test_the_ablation_is_the_papers_eleven_methods_per_seed_and_model():
    configs = ablation_configs(TrainConfig(), range(2))
    assert [c.name for c in configs[:11]] == [f"{m}-seed0" for m in METHODS]
    assert {(c.loss, c.alpha, c.beta) for c in configs if c.name.startswith("RCL-Sparse")} == {("rcl", 1, 20)}
    two_models = grid.grid_configs(TrainConfig(), grid.ablation_methods(), [0], models=["small_cnn", "resnet18"])
    assert len(two_models) == 22 and two_models[11].name == "CE-resnet18-seed0"


def test_an_empty_axis_or_a_repeated_trial_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        grid.grid_configs(TrainConfig(), grid.custom_methods(["ce"]), seeds=[])
    with pytest.raises(ValueError, match="losses"):
        grid.custom_methods([])
    with pytest.raises(ValueError, match="repeated: a"):
        grid.plan([TrainConfig(name="a"), TrainConfig(name="a", seed=1)], tmp_path)


def test_a_finished_trial_is_skipped_and_a_finished_run_of_another_config_is_refused(tmp_path):
    configs = grid.grid_configs(TrainConfig(epochs=1), grid.custom_methods(["ce", "rcl"]), seeds=[0])
    trials = grid.plan(configs, tmp_path / "out")
    folder = trials[0].run_dir
    write_run(folder)
    (folder / "config.json").write_text(json.dumps({"train": configs[0].to_dict() | {"device": "cuda"}}))
    todo, finished = grid.split_finished(trials)
    assert [t.name for t in finished] == ["ce-seed0"] and [t.name for t in todo] == ["rcl-seed0"]
    (folder / "config.json").write_text(json.dumps({"train": configs[0].to_dict() | {"epochs": 7}}))
    with pytest.raises(ValueError, match="holds a finished run of another config"):
        grid.split_finished(trials)
    # a run from before the sampling option drew each image once: not what "auto" now does for CE
    older = {k: v for k, v in configs[0].to_dict().items() if k != "sampling"}
    (folder / "config.json").write_text(json.dumps({"train": older}))
    with pytest.raises(ValueError, match="holds a finished run of another config"):
        grid.split_finished(trials)
    (folder / "config.json").write_text(json.dumps({"train": configs[0].to_dict() | {"sampling": "sqrt_balanced"}}))
    assert [t.name for t in grid.split_finished(trials)[1]] == ["ce-seed0"]  # "auto", resolved, is the same


def test_trials_keep_their_row_a_failed_one_is_requeued_and_only_local_rows_are_claimed(store, tmp_path):
    config = TrainConfig(name="ce-seed0", epochs=1)
    [job] = store.submit_many([config], group="g", run_dirs=[tmp_path / "out" / "ce-seed0"], executor="ray", owner=1)
    assert (job.executor, job.state, job.run_dir) == ("ray", "queued", tmp_path / "out" / "ce-seed0")
    assert store.claim_next() is None  # the local worker never takes a Ray trial
    store.mark_failed(job.id, "boom")
    [again] = store.submit_many([config], group="g2", run_dirs=[job.run_dir])
    assert (again.id, again.state, again.error, again.group, again.executor) == (job.id, "queued", None, "g2", "local")
    assert store.claim_next().id == job.id
    [same] = store.submit_many([config], group="g3", run_dirs=[job.run_dir])  # running locally: left alone
    assert (same.state, same.group) == ("running", "g2")
    assert len(store.list()) == 1


def test_trials_of_a_vanished_sweep_driver_are_failed_with_what_to_do(store, tmp_path, monkeypatch):
    [job] = store.submit_many([TrainConfig(name="a", epochs=1)], run_dirs=[tmp_path / "a"], executor="ray", owner=1)
    store.mark_started(job.id, 4242, "on Ray node n1 (pid 4242)")
    assert list_jobs(store=store)[0][0].state == "running"  # fresh: untouched
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE jobs SET heartbeat = heartbeat - ?", (ORPHAN_AFTER + 1,))
    [row] = list_jobs(store=store)[0]
    assert row.state == "failed" and "run the same sweep again" in row.error


def test_a_store_from_before_executors_migrates_with_local_jobs(tmp_path):
    from rcl.jobs.store import MIGRATIONS

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        for statements in MIGRATIONS[:2]:
            for sql in statements:
                conn.execute(sql)
        conn.execute("INSERT INTO jobs (name, config, state, run_dir, created) VALUES ('old', '{}', 'queued', 'x', 1)")
        conn.execute("PRAGMA user_version = 2")
    [job] = JobStore(path).list()
    assert job.executor == "local"


def test_a_local_sweep_runs_every_trial_and_a_second_run_skips_them(store, tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "ensure_worker", lambda store: None)
    configs = [TrainConfig(name=f"ok-{i}", epochs=2) for i in range(3)]
    result = grid.run_sweep(configs, tmp_path / "out", "local", store=store, wait=False)
    assert [j.state for j in result["jobs"]] == ["queued"] * 3
    assert run_worker(stop_when_idle=True, poll_interval=0.05, store=store,
                      command_factory=fake_command(write_fake_trainer(tmp_path))) == 3
    assert all((tmp_path / "out" / c.name / "metrics.json").is_file() for c in configs)
    [row] = grid.grid_rows(store.list())
    assert (row["group"], row["trials"], row["done"], row["state"], row["progress"]) == (result["group"], 3, 3, "done", 1.0)
    for folder in (tmp_path / "out").glob("ok-*"):  # the fake trainer writes no config.json: give it the trial's
        (folder / "config.json").write_text(json.dumps({"train": next(c for c in configs if c.name == folder.name)
                                                        .to_dict()}))
    again = grid.run_sweep(configs, tmp_path / "out", "local", store=store, wait=False)
    assert (len(again["skipped"]), again["jobs"], again["group"]) == (3, [], result["group"])


def _job(**fields) -> Job:
    return Job(**{"id": 1, "name": "t", "group": "g", "config": {}, "state": "running", "run_dir": "x",
                  "created": 0.0, **fields})


def test_grid_progress_counts_steps_of_running_trials_and_whole_finished_ones():
    assert grid.job_fraction(_job(step=5, total_steps=20, epoch=0, epochs=2)) == 0.25
    assert grid.job_fraction(_job(state="done")) == 1.0
    assert grid.job_fraction(_job(state="queued")) == 0.0
    jobs = [_job(id=1, state="done"), _job(id=2, step=5, total_steps=10, epochs=2),
            _job(id=3, state="failed", error="boom\ntrace"), _job(id=4, group="other", state="queued", created=5.0)]
    rows = grid.grid_rows(jobs)
    assert [r["group"] for r in rows] == ["other", "g"]  # newest first
    g = rows[1]
    assert (g["trials"], g["done"], g["running"], g["failed"], g["state"]) == (3, 1, 1, 1, "running")
    assert g["summary"] == "1/3 done · 1 running · 1 failed"
    assert g["progress"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert [r["message"] for r in grid.trial_rows(jobs, "g")] == ["", "", "boom"]


def test_the_cli_lists_a_grid_without_running_it(tmp_path, capsys):
    assert main(["sweep", "--data", "synthetic", "--losses", "ce,rcl", "--betas", "10,20", "--seeds", "0,1",
                 "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("to run") == 6 and "rcl-b20-seed1" in out and not (tmp_path / "out").exists()


def test_the_cli_refuses_a_mixed_grid_in_one_line(capsys):
    assert main(["sweep", "--ablation", "--losses", "ce", "--dry-run"]) == 2
    assert "leave out losses" in capsys.readouterr().err


def test_number_axes_may_be_text_and_a_bad_item_is_named():
    configs = grid.sweep_configs(TrainConfig(), losses=["rcl"], alphas="1, 5", seeds="0,1")
    assert [c.name for c in configs] == ["rcl-a1-seed0", "rcl-a5-seed0", "rcl-a1-seed1", "rcl-a5-seed1"]
    with pytest.raises(ValueError, match="seeds: expected whole numbers"):
        grid.sweep_configs(TrainConfig(), seeds="0,x")


def _train_page():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app_pages" / "2_Train.py"), default_timeout=90).run()


def test_the_train_page_sends_a_custom_grid_to_this_machine_and_shows_it_as_one_row(monkeypatch):
    monkeypatch.setattr(grid, "ensure_worker", lambda store: None)
    at = _train_page()
    at.radio(key="grid_kind").set_value("custom")
    at.multiselect(key="grid_losses").set_value(["ce", "rcl"])
    at.text_input(key="grid_betas").set_value("10,20")
    at.text_input(key="grid_seeds").set_value("0")
    at.button(key="FormSubmitter:grid_form-Launch grid").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("3 trials sent to this machine" in s.value for s in at.success), [e.value for e in at.error]
    jobs = JobStore().list()
    assert sorted(j.name for j in jobs) == ["ce-seed0", "rcl-b10-seed0", "rcl-b20-seed0"]
    assert len({j.group for j in jobs}) == 1
    grids = [e.label for e in at.expander if "(for ML engineers)" not in e.label]  # not the forms' expanders
    assert grids == [f"{jobs[0].group} · local · 0/3 done · 3 queued"]


def test_the_train_page_sends_the_ablation_to_a_ray_cluster_through_a_background_driver(monkeypatch):
    started = []
    monkeypatch.setattr(grid.subprocess, "Popen", lambda command, **kw: started.append(command))
    at = _train_page()
    at.text_input(key="grid_seeds").set_value("0,1")
    at.radio(key="grid_target").set_value("Ray cluster")
    at.text_input(key="grid_address").set_value("ray://head:10001")
    at.button(key="FormSubmitter:grid_form-Launch grid").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("22 trials sent to the Ray cluster" in s.value for s in at.success), [e.value for e in at.error]
    [command] = started
    assert command[command.index("--executor") + 1] == "ray" and command[-1] == "ray://head:10001"
    configs, _, group = grid.load_plan(command[command.index("--plan") + 1])
    assert len(configs) == 22 and configs[0].name == "CE-seed0" and group.startswith("sweep-")


def test_a_trial_another_process_runs_is_refused_not_run_twice(store, tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "ensure_worker", lambda store: None)
    configs = [TrainConfig(name="a", epochs=1)]
    store.submit_many(configs, group="g", run_dirs=[tmp_path / "out" / "a"], executor="ray", owner=99)
    for executor in ("local", "ray"):
        with pytest.raises(ValueError, match="being run by another sweep"):
            grid.run_sweep(configs, tmp_path / "out", executor, store=store)
    with sqlite3.connect(store.path) as conn:  # that sweep's driver went quiet: its trial may be taken over
        conn.execute("UPDATE jobs SET created = created - ?", (ORPHAN_AFTER + 1,))
    [job] = grid.run_sweep(configs, tmp_path / "out", "local", store=store, wait=False)["jobs"]
    assert (job.executor, job.state) == ("local", "queued")
    with pytest.raises(ValueError, match="queued on this machine's worker"):
        grid.run_sweep(configs, tmp_path / "out", "ray", store=store)


def test_a_trial_asks_ray_for_a_gpu_where_the_cluster_has_them_and_a_cpu_otherwise():
    from rcl.ray_executor import trial_resources

    assert trial_resources({"CPU": 32, "GPU": 4}) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert trial_resources({"CPU": 32, "GPU": 4}, gpus_per_trial=0.5, cpus_per_trial=4) == {"num_cpus": 4,
                                                                                            "num_gpus": 0.5}
    assert trial_resources({"CPU": 2}) == {"num_cpus": 1.0, "num_gpus": 0}
    with pytest.raises(ValueError, match="gpus_per_trial"):
        trial_resources({"GPU": 2}, gpus_per_trial=0)


def test_threads_sharing_a_fresh_store_never_read_before_its_tables_exist(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    for i in range(10):
        fresh = JobStore(tmp_path / f"s{i}" / "jobs.sqlite")
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _, store=fresh: store.list(), range(4))) == [[]] * 4
