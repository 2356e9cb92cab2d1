"""Shared set-up of the app tests: tiny trained runs (once per session) and AppTest helpers."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, make_runs, png_bytes

import rcl

PAGES = {
    "home": ROOT / "app.py",
    "matrix": ROOT / "app_pages" / "1_Severity_matrix.py",
    "train": ROOT / "app_pages" / "2_Train.py",
    "pareto": ROOT / "app_pages" / "3_Pareto_frontier.py",
    "confusion": ROOT / "app_pages" / "4_Confusion.py",
    "triage": ROOT / "app_pages" / "5_Triage.py",
    "card": ROOT / "app_pages" / "6_Run_card.py",
    "guarantee": ROOT / "app_pages" / "7_Guarantee.py",
}
@pytest.fixture(scope="session")
def trained(tmp_path_factory, shared_cache) -> dict:
    base = tmp_path_factory.mktemp("app_runs")
    home, models = base / "home", base / "models"
    home.mkdir()
    runs = make_runs(home, models, shared_cache)
    return {"home": home, "models": models, "runs": runs}


@pytest.fixture
def with_runs(trained, monkeypatch) -> dict:
    monkeypatch.setenv("RCL_HOME", str(trained["home"]))
    monkeypatch.setenv("RCL_MODELS", str(trained["models"]))
    return trained


def app(name: str, timeout: float = 90):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PAGES[name]), default_timeout=timeout)


def texts(at) -> str:
    """Everything the page wrote, for loose assertions."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def figures(at) -> list[dict]:
    """The plotly figures a page drew, as the JSON the browser receives."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value) -> list:
    """A plotly data array: a list, or the typed-array form plotly uses for numpy input."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """What the page's download buttons would hand the browser, by file name."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    saved, original = {}, MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        saved[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    return saved


os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --- empty data directory: every page says what to do, nothing raises ------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_with_no_runs(name):
    at = app(name).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    if name in ("pareto", "confusion", "card"):
        assert "No finished runs yet" in texts(at)
    if name == "triage":
        assert "No model to triage with yet" in texts(at)
    if name == "home":
        assert "0 finished run(s)" in texts(at) + " ".join(m.value for m in at.markdown)
    if name == "guarantee":
        assert "No " in texts(at)


def test_home_demo_button_submits_a_job(monkeypatch):
    from rcl import jobs

    started = []
    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: started.append(1) or 0)
    at = app("home").run()
    at.button(key="demo_button").click().run()
    no_exception(at)
    queued = jobs.JobStore().list()
    assert len(queued) == 1 and queued[0].config["model"] == "small_cnn" and queued[0].config["data"] == "synthetic"
    assert started
    job = queued[0]
    shown = texts(at)
    assert "The demo model is training" in shown and "No finished run yet" not in shown
    assert f"**{job.name}** (job {job.id}): waiting" in progress_texts(at)
    assert "demo_button" not in [b.key for b in at.button]
    assert at.query_params["demo"] == str(job.id)
    # a refresh (a new session with the same URL) keeps the demo's state
    again = app("home")
    again.query_params["demo"] = str(job.id)
    again.run()
    assert "The demo model is training" in texts(again) and "demo_button" not in [b.key for b in again.button]


def progress_texts(at) -> list[str]:
    """The text of every progress bar on the page (st.progress)."""
    return [element.proto.text for element in at.get("progress")]


def test_home_shows_the_demo_jobs_progress_and_failure_reason(monkeypatch):
    from rcl import jobs

    store = jobs.JobStore()
    job = store.submit(rcl.demo_config(), group="demo")
    store.claim_next()
    store.mark_running(job.id, pid=1)
    store.update_progress(job.id, epoch=2, epochs=4, step=30, total_steps=100)
    at = app("home").run()
    no_exception(at)
    assert any("epoch 2 of 4 · 30%" in text for text in progress_texts(at)), progress_texts(at)
    assert "None" not in " ".join(progress_texts(at))
    store.mark_failed(job.id, "the training process exited with code 2\n--- last lines of train.log ---\n"
                              "rcl train: error: disk full: free space in the data directory")
    at.run()
    assert any("rcl train: error: disk full: free space in the data directory (the training process exited "
               "with code 2)" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="demo_button").label == "Train the demo model again"


# --- with tiny trained runs -----------------------------------------------------------------------


def run_id(trained, loss: str) -> str:
    return next(p.name for p in trained["runs"] if p.name.endswith(f"-{loss}"))


def metric_values(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def open_on(name: str, trained, loss: str):
    """The page with the run trained with ``loss`` selected."""
    at = app(name)
    at.session_state["selected_run"] = run_id(trained, loss)
    return at.run()


def test_the_selected_run_never_changes_by_itself_and_comes_back_from_the_url(trained, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(trained["home"], home)
    monkeypatch.setenv("RCL_HOME", str(home))
    monkeypatch.setenv("RCL_MODELS", str(trained["models"]))
    at = app("home").run()
    newest = at.selectbox(key="run_picker").value
    assert at.query_params["run"] == newest
    shutil.copytree(home / run_id(trained, "ce"), home / "run-9-newer")  # a run finishes meanwhile
    at.run()
    assert any("run-9-newer" in option for option in at.selectbox(key="run_picker").options)
    assert at.selectbox(key="run_picker").value == newest  # still the one shown before
    fresh = app("home")  # a refresh: a new session with the URL of a chosen run
    fresh.query_params["run"] = run_id(trained, "ce")
    fresh.run()
    assert fresh.selectbox(key="run_picker").value == run_id(trained, "ce")
    assert fresh.query_params["run"] == run_id(trained, "ce")


def test_home_shows_the_selected_runs_test_figures(with_runs):
    at = open_on("home", with_runs, "focal")
    no_exception(at)
    test = rcl.load_run(with_runs["home"] / run_id(with_runs, "focal")).metrics["test"]
    assert metric_values(at) == {"Test CER": rcl.pct(test["cer"]), "Test F1-macro": rcl.num(test["f1_macro"]),
                                 "Test accuracy": rcl.pct(test["accuracy"])}
    missed, malignant = rcl.missed_malignant(test["confusion"], rcl.preset("isic2018"))
    assert f"{missed} of {malignant} malignant cases called benign" in texts(at)
    assert "3 finished run(s)" in " ".join(m.value for m in at.markdown)


def redecided_cer(trained, loss: str, alpha: float, beta: float) -> float | None:
    run = rcl.load_run(trained["home"] / run_id(trained, loss))
    matrix = rcl.severity_matrix(run.taxonomy, alpha, beta)
    return rcl.redecide(run.calibrated_probs("test"), run.predictions("test")["labels"], run.taxonomy, matrix).cer


def test_matrix_raising_beta_never_raises_the_shown_cer(with_runs):
    at = open_on("matrix", with_runs, "ce")
    at.slider(key="alpha_slider").set_value(5.0).run()
    shown = {}
    for beta in (1.0, 5.0, 50.0):
        at.slider(key="beta_slider").set_value(beta).run()
        no_exception(at)
        shown[beta] = metric_values(at)["CER"]
        assert shown[beta] == rcl.pct(redecided_cer(with_runs, "ce", 5.0, beta)), beta
    cer = {beta: float(text.rstrip("%")) for beta, text in shown.items()}
    assert cer[1.0] >= cer[5.0] >= cer[50.0], shown  # a costlier miss calls more cases malignant
    assert cer[50.0] < cer[1.0], shown  # and here it visibly does


def test_matrix_sliders_change_live_figures(with_runs):
    at = app("matrix")
    at.session_state["selected_run"] = run_id(with_runs, "ce")
    at.run()
    no_exception(at)
    assert at.selectbox(key="taxonomy_choice").value == "selected run"
    before = metric_values(at)
    assert "CER" in before
    at.slider(key="beta_slider").set_value(0.0).run()
    at.slider(key="alpha_slider").set_value(50.0).run()
    no_exception(at)
    after = metric_values(at)
    assert after != before, (before, after)
    matrix = at.session_state["matrix"]
    assert matrix.alpha == 50.0 and matrix.beta == 0.0
    assert len(at.get("plotly_chart")) >= 2  # heatmap + tier bars


def edit_cell(at, row: int, column: str, value) -> None:
    key = at.session_state["matrix_editor_key"]
    at.session_state[key] = {"edited_rows": {row: {column: value}}, "added_rows": [], "deleted_rows": []}


@pytest.mark.parametrize("value, message", [(-1.0, "finite number >= 0"), (None, "type a plain number"),
                                            ("1,5", "reads '1,5'")])
def test_matrix_invalid_cell_shows_error(with_runs, value, message):
    at = app("matrix").run()
    edit_cell(at, 0, "NV", value)
    at.run()
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "cannot be used" in errors and message in errors.lower(), errors
    assert "Train and Triage are blocked" in errors
    save = next(b for b in at.get("download_button") if b.proto.label == "Save matrix (JSON)")
    assert save.proto.disabled and "Save is off" in texts(at)
    assert all(t.get("type") != "heatmap" for f in figures(at) for t in f["data"])
    train = app("train")
    train.session_state["matrix_problem"] = at.session_state["matrix_problem"]
    train.run()
    assert any("Training is blocked" in e.value and "Severity matrix" in e.value for e in train.error)


def test_matrix_cell_typed_1e9_is_one_billion(with_runs):
    at = app("matrix").run()
    edit_cell(at, 0, "NV", "1e9")
    at.run()
    no_exception(at)
    assert at.session_state["matrix"].values[0, 1] == 1e9


def test_matrix_warns_of_dangerous_penalties_and_shows_decision_costs(with_runs):
    at = app("matrix").run()
    heatmap = next(t for t in figures(at)[0]["data"] if t.get("type") == "heatmap")
    z = np.asarray(array(heatmap["z"]), dtype=float).reshape(7, 7)
    assert np.diag(z).tolist() == [0.0] * 7  # a correct answer costs nothing
    assert z[0, 1] == 20.0  # MEL called NV: β
    assert all("β" not in w.value for w in at.warning)
    at.slider(key="beta_slider").set_value(0.0).run()
    warnings = " ".join(w.value for w in at.warning)
    assert "β = 0: a miss costs nothing" in warnings and "less than a false alarm" in warnings
    at.slider(key="beta_slider").set_value(20.0)
    at.slider(key="alpha_slider").set_value(0.0).run()
    assert "α = 0: a false alarm costs nothing" in " ".join(w.value for w in at.warning)


def test_matrix_is_kept_in_the_url_and_restored_by_a_new_session(with_runs):
    at = app("matrix").run()
    at.slider(key="alpha_slider").set_value(3.0)
    at.slider(key="beta_slider").set_value(30.0).run()
    no_exception(at)
    assert at.query_params["alpha"] == "3" and at.query_params["beta"] == "30"
    edit_cell(at, 0, "NV", "44")
    at.run()
    kept = dict(at.query_params)
    assert json.loads(kept["cells"])[0][1] == 44
    fresh = app("matrix")  # a refresh: a new session with the same URL
    for key, value in kept.items():
        fresh.query_params[key] = value
    fresh.run()
    no_exception(fresh)
    assert fresh.slider(key="alpha_slider").value == 3.0 and fresh.slider(key="beta_slider").value == 30.0
    assert fresh.session_state["matrix"].values[0, 1] == 44.0


def test_matrix_cell_edit_is_kept_for_other_pages(with_runs):
    at = app("matrix").run()
    edit_cell(at, 0, "NV", 100.0)  # MEL called NV: far worse than other misses
    at.run()
    no_exception(at)
    assert not at.error
    matrix = at.session_state["matrix"]
    assert matrix.values[0, 1] == 100.0 and not matrix.is_standard
    at.run()  # the editor re-keys on the new values; the edit stays
    assert at.session_state["matrix"].values[0, 1] == 100.0


def test_matrix_load_json(with_runs):
    from rcl.severity import SeverityMatrix
    from rcl.taxonomy import preset

    saved = SeverityMatrix.from_penalties(preset("isic2018"), 3.0, 42.0).to_json().encode()
    at = app("matrix").run()
    at.file_uploader(key="matrix_upload").set_value(("m.json", saved, "application/json")).run()
    no_exception(at)
    assert at.slider(key="beta_slider").value == 42.0 and at.slider(key="alpha_slider").value == 3.0
    at.file_uploader(key="matrix_upload").set_value(("bad.json", b"{oops", "application/json")).run()
    no_exception(at)
    assert any("not a usable severity matrix" in e.value for e in at.error)


def test_matrix_page_explains_presets_and_penalties_in_words():
    at = app("matrix").run()
    no_exception(at)
    isic = rcl.preset("isic2018")
    assert at.selectbox(key="taxonomy_choice").format_func("isic2018") == (
        f"isic2018 (preset: {len(isic.classes)} diagnoses, malignant: {', '.join(isic.malignant)})")
    assert "How much worse is a missed malignancy than a false alarm?" in at.slider(key="beta_slider").help
    assert "How much worse is a false alarm" in at.slider(key="alpha_slider").help


def test_matrix_custom_taxonomy(with_runs):
    at = app("matrix").run()
    at.selectbox(key="taxonomy_choice").set_value("custom").run()
    no_exception(at)
    assert at.session_state["matrix"].taxonomy.classes == ("benign_a", "benign_b", "cancer")
    assert any("other classes" in w.value for w in at.warning)


def test_matrix_notes_cost_sensitive_training(with_runs):
    at = app("matrix")
    at.session_state["selected_run"] = run_id(with_runs, "rcl")
    at.run()
    no_exception(at)
    assert any("double-counts" in i.value for i in at.info)
    # by default the run's own default decision, as in its metrics.json and on Triage: not the matrix twice
    run = rcl.load_run(with_runs["home"] / run_id(with_runs, "rcl"))
    assert any("the run's default decision" in c.value for c in at.caption)
    assert metric_values(at)["CER"] == rcl.pct(run.metrics["decision"]["test"]["cer"])
    at.toggle(key="matrix_redecide_anyway").set_value(True).run()
    assert any(rcl.decision_rule("bayes") in c.value for c in at.caption)


def test_triage_upload_real_image(with_runs):
    at = app("triage").run()
    lesion = (ROOT / "assets" / "synthetic_MEL.png").read_bytes()  # like the training data
    at.file_uploader(key="triage_upload").set_value(("lesion.png", lesion, "image/png")).run()
    no_exception(at)
    values = metric_values(at)
    assert "Answer" in values and ({"P(malignant)", "P(malignant) (untrusted)"} & set(values))
    if "P(malignant) (untrusted)" in values:  # the tiny test runs may find it unfamiliar: then no class
        assert values["Answer"] == "refer: unfamiliar image"
    assert values["Answer"] in {*rcl.preset("isic2018").classes, "refer: uncertain", "refer: unfamiliar image"}
    assert any("SYNTHETIC" in w.value for w in at.warning)
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1


def test_triage_unfamiliar_image_is_referred_with_no_class(with_runs):
    at = app("triage").run()
    at.file_uploader(key="triage_upload").set_value(("noise.png", png_bytes(80), "image/png")).run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert sum("Refer: unfamiliar image" in e for e in errors) == 1, errors  # said once
    values = metric_values(at)
    assert values["Answer"] == "refer: unfamiliar image" and "P(malignant) (untrusted)" in values
    assert not set(values.values()) & set(rcl.preset("isic2018").classes)  # no class shown as the answer
    assert "UNTRUSTED" in figures(at)[0]["layout"]["title"]["text"]


def test_triage_text_file_renamed_jpg(with_runs):
    at = app("triage").run()
    at.file_uploader(key="triage_upload").set_value(("scan.jpg", b"this is not an image", "image/jpeg")).run()
    no_exception(at)
    assert any("could not triage" in e.value for e in at.error), [e.value for e in at.error]
    assert "P(malignant)" not in metric_values(at)


def test_triage_bundled_example_with_run_model(with_runs):
    at = app("triage").run()
    models = at.selectbox(key="triage_model").options
    assert any(o.startswith("model: tiny") for o in models) and any(o.startswith("run: ") for o in models)
    at.selectbox(key="triage_model").set_value(next(o for o in models if o.startswith("run: ")))
    at.selectbox(key="triage_example").set_value("MEL").run()
    no_exception(at)
    assert "Answer" in metric_values(at)


def test_train_launch_and_bad_config(monkeypatch):
    from rcl import jobs

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    at = app("train").run()
    no_exception(at)
    at.number_input(key="train_epochs").set_value(1)
    at.button[0].click().run()  # Launch
    no_exception(at)
    assert any("queued" in s.value for s in at.success), [e.value for e in at.error]
    assert len(jobs.JobStore().list()) == 1
    at.radio(key="train_data_choice").set_value("a folder on this machine")
    at.text_input(key="train_folder").set_value("/no/such/folder")
    at.button[0].click().run()
    no_exception(at)
    assert any("does not exist" in e.value for e in at.error)
    assert len(jobs.JobStore().list()) == 1


def test_train_ablation_grid_keeps_its_name_and_cancels_as_one(monkeypatch):
    from rcl import jobs

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    at = app("train").run()
    at.text_input(key="train_name").set_value("hospA")
    at.button[1].click().run()  # Launch ablation
    no_exception(at)
    grid = jobs.JobStore().list()
    assert len(grid) == 11  # 4 baselines + 7 RCL configurations, 1 seed
    assert {j.group for j in grid} == {"hospA"} and all(j.name.startswith("hospA-") for j in grid)
    assert at.selectbox[-1].value == grid[0].id  # the new grid's first job is shown, not an older one
    cancel_all = next(b for b in at.button if b.key == "cancel_group_hospA")
    assert cancel_all.label == "Cancel all 11 unfinished jobs of hospA"
    cancel_all.click().run()
    assert {j.state for j in jobs.JobStore().list()} == {"cancelled"}


def test_train_shows_a_failed_jobs_reason_and_selects_a_new_job(monkeypatch):
    from rcl import jobs

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    store = jobs.JobStore()
    failed = store.submit(rcl.TrainConfig(epochs=1), name="offline-vit")
    store.claim_next()
    store.mark_failed(failed.id, "the training process exited with code 2\n--- last lines of train.log ---\nloading\n"
                                 "rcl train: error: could not load pretrained weights for 'resnet18' (OSError): this "
                                 "machine may be offline. Download them once elsewhere and pass --weights FILE, or "
                                 "train without --pretrained.")
    at = app("train").run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("pass --weights FILE, or train without --pretrained. (the training process exited with code 2)" in e
               for e in errors), errors
    table = at.dataframe[0].value
    assert table["message"].iloc[0].endswith("(the training process exited with code 2)")
    assert "None" not in table.astype(str).to_string().replace("NaN", "")
    at.number_input(key="train_epochs").set_value(1)
    at.button[0].click().run()  # Launch
    newest = jobs.JobStore().list()[-1]
    assert newest.id != failed.id and at.selectbox[-1].value == newest.id


def test_train_weights_upload_is_saved_and_passed(monkeypatch):
    from rcl import jobs

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    at = app("train").run()
    uploader = at.get("file_uploader")[0]
    assert uploader.proto.label.startswith("…or a weights file")
    # AppTest cannot upload; the page hands the upload to the library, tested here directly
    path = rcl.save_weights_file("../../evil/resnet18.safetensors", b"abc")
    assert path == rcl.home() / "weights" / "resnet18.safetensors" and path.read_bytes() == b"abc"
    with pytest.raises(ValueError, match="expected a .safetensors"):
        rcl.save_weights_file("notes.txt", b"abc")
    with pytest.raises(ValueError, match="is empty"):
        rcl.save_weights_file("w.pt", b"")


@pytest.fixture
def pareto_home(trained, tmp_path, monkeypatch) -> dict:
    """The tiny runs (ce and rcl share a test split, focal has another), plus a run on another
    dataset and an unfinished one: only the shared split's two runs may be drawn together."""
    home = tmp_path / "pareto_home"
    shutil.copytree(trained["home"], home)
    other = home / "run-8-other"
    shutil.copytree(trained["runs"][0], other)
    config = json.loads((other / "config.json").read_text())
    config["dataset"]["name"] = "other_data"
    (other / "config.json").write_text(json.dumps(config))
    shutil.copytree(trained["runs"][1], home / "run-9-unfinished")
    (home / "run-9-unfinished" / "metrics.json").unlink()
    monkeypatch.setenv("RCL_HOME", str(home))
    monkeypatch.setenv("RCL_MODELS", str(trained["models"]))
    return {"home": home, "expected": {run_id(trained, "ce"), run_id(trained, "rcl")}}


def drawn_runs(at) -> dict[str, tuple[float, float, str]]:
    """run id -> (CER, F1, legend name) of every run point the Pareto page drew."""
    points = {}
    for trace in figures(at)[0]["data"]:
        if trace.get("mode") == "markers" and trace.get("customdata") and trace["name"] != "Bayes re-decision":
            for x, y, data in zip(array(trace["x"]), array(trace["y"]), trace["customdata"]):
                if len(data) == 5:
                    points[data[2]] = (x, y, trace["name"])
    return points


def test_pareto_draws_only_runs_of_one_test_split_and_its_csv_holds_them(pareto_home, downloads):
    at = app("pareto").run()
    no_exception(at)
    first = rcl.load_run(pareto_home["home"] / "run-0-ce")
    dataset, split = first.summary()["dataset"], rcl.split_fingerprint(first.path)
    assert rcl.split_fingerprint(pareto_home["home"] / "run-1-focal") != split
    options = at.selectbox(key="pareto_group").options
    assert len(options) == 3  # other_data, the shared split (2 runs), focal's split
    assert at.selectbox(key="pareto_group").value == f"{dataset}:{split}"  # the largest group first
    runs = {name: rcl.load_run(pareto_home["home"] / name) for name in pareto_home["expected"]}
    points = drawn_runs(at)
    assert set(points) == pareto_home["expected"]
    for name, (x, y, legend) in points.items():
        test = runs[name].metrics["test"]
        assert x == pytest.approx(test["cer"]) and y == pytest.approx(test["f1_macro"])
        assert legend == runs[name].label  # the legend names the run
    assert f"2 runs on {dataset} · " in texts(at) and "Not shown, because tested on other images" in texts(at)
    layout = figures(at)[0]["layout"]
    for x, y, _ in points.values():
        assert layout["xaxis"]["range"][0] < x < layout["xaxis"]["range"][1]
        assert layout["yaxis"]["range"][0] < y < layout["yaxis"]["range"][1]
    table = at.dataframe[0].value
    assert set(table["id"]) == pareto_home["expected"]
    assert all(v.endswith("%") for v in table["CER"])  # % on the axis, % in the table

    csv = pd.read_csv(io.BytesIO(downloads[f"pareto_{dataset}_{split}.csv"]))
    assert set(csv["id"]) == pareto_home["expected"]
    for row in csv.itertuples():
        test = runs[row.id].metrics["test"]
        assert row.cer == pytest.approx(test["cer"]) and row.f1_macro == pytest.approx(test["f1_macro"])
    rows = [{"cer": r.cer, "f1_macro": r.f1_macro} for r in csv.itertuples()]
    assert csv["on_front"].tolist() == rcl.front_flags(rows)

    at.selectbox(key="pareto_group").set_value(f"{dataset}:{rcl.split_fingerprint(pareto_home['home'] / 'run-1-focal')}")
    at.run()
    assert set(drawn_runs(at)) == {"run-1-focal"} and "1 run on" in texts(at)


def test_pareto_paper_and_decision_layers(with_runs):
    at = app("pareto").run()
    at.toggle(key="pareto_paper").set_value(True)
    at.toggle(key="pareto_rules").set_value(True).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    figure = figures(at)[0]
    traces = {t["name"]: t for t in figure["data"]}
    paper = traces["paper (published, other data)"]
    assert len(array(paper["x"])) == len(rcl.PAPER_RESULTS)
    assert sorted(array(paper["x"])) == pytest.approx(sorted(r["cer"] for r in rcl.PAPER_RESULTS))
    variants = traces["Bayes re-decision"]
    shown = [rcl.load_run(with_runs["home"] / run_id(with_runs, loss)) for loss in ("ce", "rcl")]  # one split
    expected = [p for p in rcl.decision_frontier(shown) if p["decision"] != "argmax"]
    assert len(array(variants["x"])) == len(expected)
    low, high = figure["layout"]["xaxis"]["range"]
    assert low < min(p["cer"] for p in expected) and high > max(p["cer"] for p in expected)  # never clipped


def confusion_texts(at) -> list[list[str]]:
    return next(t["text"] for t in figures(at)[0]["data"] if t.get("text"))


def test_confusion_toggle_switches_counts_to_row_shares(with_runs):
    at = open_on("confusion", with_runs, "ce")
    no_exception(at)
    counts = np.asarray(rcl.load_run(with_runs["home"] / run_id(with_runs, "ce")).metrics["test"]["confusion"])
    assert confusion_texts(at) == [[str(c) for c in row] for row in counts]
    at.toggle(key="confusion_normalise").set_value(True).run()
    no_exception(at)
    shares = counts / counts.sum(axis=1, keepdims=True)
    assert confusion_texts(at) == [[rcl.pct(v, 0) for v in row] for row in shares]
    tiers = rcl.load_run(with_runs["home"] / run_id(with_runs, "ce")).metrics["test"]["tiers"]
    assert f"Type II (fatal miss): **{tiers['type_2']}**" in texts(at)
    heatmap = next(t for t in figures(at)[0]["data"] if t.get("text"))
    classes = rcl.preset("isic2018").classes
    assert list(heatmap["y"]) == [f"{c} (n={n})" for c, n in zip(classes, counts.sum(axis=1))]  # per-class n
    assert rcl.decision_rule("argmax") in texts(at)


def test_run_card_page_shows_and_downloads_the_card(with_runs, downloads):
    at = open_on("card", with_runs, "rcl")
    no_exception(at)
    run = rcl.load_run(with_runs["home"] / run_id(with_runs, "rcl"))
    shown = "\n".join(m.value for m in at.markdown if m.value.startswith("#"))
    download = downloads[f"run_card_{run.id}.md"].decode()
    assert download.startswith(shown.split("\n", 1)[0])
    assert "- Loss: `rcl α=5 β=20`" in shown and "**Training matrix**" in shown
    test = run.metrics["test"]
    missed, malignant = rcl.missed_malignant(test["confusion"], run.taxonomy)
    assert f"{missed} of {malignant} malignant cases missed" in shown
    assert f"{test['n']} test images · accuracy {rcl.pct(test['accuracy'])}" in shown
    assert downloads[f"run_card_{run.id}.html"].decode().startswith("<!doctype html>")
    assert "<svg" in downloads[f"run_card_{run.id}.html"].decode()


def test_run_card_of_a_ce_run_has_no_training_matrix(with_runs):
    at = open_on("card", with_runs, "ce")
    no_exception(at)
    shown = "\n".join(m.value for m in at.markdown)
    assert "Training matrix" not in shown and "uses no severity matrix" in shown
    assert "layout" not in shown and "rule `f1`" not in shown


def test_train_page_names_the_current_matrix(with_runs):
    at = app("train").run()
    no_exception(at)
    assert rcl.matrix_caption(rcl.SeverityMatrix.from_penalties(rcl.preset("isic2018"))) in texts(at)


def test_train_page_speaks_plainly_and_folds_the_engineers_settings():
    at = app("train").run()
    no_exception(at)
    method = at.radio(key="train_loss")
    assert method.value == "rcl" and method.format_func("rcl") == rcl.LOSSES["rcl"].summary
    assert "a missed malignancy costs **20**, a false alarm **5**" in texts(at)
    advanced = next(e for e in at.expander if e.label.startswith("Advanced (for ML engineers)"))
    inside = {w.key for kind in ("selectbox", "number_input", "slider") for w in getattr(advanced, kind)}
    assert {"train_model", "train_image_size", "train_epochs", "train_lr", "train_label_noise"} <= inside
    defaults = rcl.TrainConfig()  # the form starts where `rcl train` starts
    assert at.selectbox(key="train_model").value == rcl.AUTO == at.selectbox(key="train_image_size").value
    assert at.number_input(key="train_epochs").value == defaults.epochs and at.number_input(key="train_lr").value == defaults.lr
    assert "does not use the severity matrix" not in texts(at)
    plain = app("train")
    plain.session_state["train_loss"] = "ce"
    plain.run()
    assert "does not use the severity matrix" in texts(plain) and "missed malignancy costs" not in texts(plain)


def test_guarantee_page_refuses_then_guarantees(with_runs):
    at = app("guarantee").run()
    no_exception(at)
    # the tiny runs have a handful of malignant validation cases: 5% with 90% confidence needs 45
    assert any("at least 45" in w.value for w in at.warning), texts(at)
    at.slider(key="guarantee_target").set_value(30).run()
    at.radio(key="guarantee_mode").set_value("expected").run()
    no_exception(at)
    assert any("At most 30% of malignant cases are called benign (on average)" in s.value for s in at.success)
    assert "Rule" in texts(at) and "re-splits" in texts(at)
    at.button(key="guarantee_save").click().run()
    from rcl.posthoc.guarantee import load_guarantee

    stored = [load_guarantee(run) for run in with_runs["runs"]]
    assert any(rule is not None and rule.target == 0.3 for rule in stored)


def test_pareto_plots_answered_case_cer_against_coverage(with_runs):
    at = app("pareto").run()
    no_exception(at)
    cover = [f for f in figures(at) if "coverage" in f["layout"].get("xaxis", {}).get("title", {}).get("text", "")]
    assert len(cover) == 1
    trace = cover[0]["data"][0]
    runs = [rcl.load_run(p) for p in with_runs["runs"]]
    shown_split = rcl.split_fingerprint(next(r for r in runs if r.summary()["label"] == "tiny-ce").path)
    stored = {r.summary()["label"]: r.metrics["abstention"] for r in runs if rcl.split_fingerprint(r.path) == shown_split}
    drawn = dict(zip(trace["text"], zip(array(trace["x"]), array(trace["y"]))))
    assert set(drawn) == set(stored) == {"tiny-ce", "tiny-rcl"}  # the runs of the split chosen, as on the frontier
    for label, (coverage, cer) in drawn.items():
        assert coverage == pytest.approx(stored[label]["coverage"]["value"])
        expected = stored[label]["cer_answered"]["value"]
        assert (cer is None and expected is None) or cer == pytest.approx(expected)
    assert any("default decision" in c.value for c in at.caption)


def test_train_fine_tunes_a_finished_run_on_its_own_split(trained, tmp_path, monkeypatch):
    """Choosing a finished run's images submits a fine-tune of that run: its weights, data, split
    (seed), network and image size, and the measured short schedule; the comparison keeps its seed."""
    from rcl import jobs
    from ui.train_form import START_RUN

    home = tmp_path / "home"
    shutil.copytree(trained["home"], home)
    monkeypatch.setenv("RCL_HOME", str(home))
    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    start = (home / trained["runs"][0].name).resolve()
    at = app("train").run()
    at.radio(key="train_data_choice").set_value(START_RUN)
    at.button[0].click().run()  # Launch, no run chosen yet
    assert any("choose the finished run to fine-tune" in e.value for e in at.error)
    assert "run-0-ce (tiny-ce) · synthetic · seed 0 · test F1 " in " ".join(at.selectbox(key="train_start_run").options)
    at.selectbox(key="train_start_run").set_value(str(start))
    at.number_input(key="train_seed").set_value(9)  # another seed would be another split: the run's wins
    at.number_input(key="train_epochs").set_value(50)
    at.button[0].click().run()
    no_exception(at)
    (job,) = jobs.JobStore().list()
    started = rcl.load_run(start).train
    assert job.config["weights"] == str(start / "model.safetensors")
    for field in ("data", "seed", "limit", "model", "image_size", "val_fraction", "test_fraction"):
        assert job.config[field] == started[field], field
    assert (job.config["epochs"], job.config["lr"]) == (rcl.FINE_TUNE["epochs"], rcl.FINE_TUNE["lr"])
    at.number_input(key="train_ablation_seeds").set_value(2)
    at.button[1].click().run()  # the comparison, two repeats: the second would be another split
    assert any("set the repeats to 1" in e.value for e in at.error) and len(jobs.JobStore().list()) == 1
