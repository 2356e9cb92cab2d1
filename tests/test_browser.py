"""The real app in a real browser: Debian's headless Chromium driven by Playwright.

Starts ``streamlit run app.py`` on a free local port with a data directory holding tiny trained
runs and an exported model, opens every page, moves a slider, uploads an image on Triage (and a
text file renamed .jpg), saves screenshots (to ``$RCL_SCREENSHOTS`` too when set) and checks that
no page shows a Streamlit exception box.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, PAGES, ROOT, make_runs, png_bytes, settle, streamlit_app

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_cache):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
    base = tmp_path_factory.mktemp("browser")
    home, models = base / "home", base / "models"
    home.mkdir()
    make_runs(home, models, shared_cache)
    env = {"RCL_HOME": str(home), "RCL_MODELS": str(models), "RCL_CACHE": str(shared_cache),
           "RCL_WORKER_AUTOSTART": "0"}  # the tests write job states themselves: no worker may run them
    with streamlit_app(env, base / "streamlit.log", "--server.headless", "true", "--browser.gatherUsageStats",
                       "false", "--server.fileWatcherType", "none") as app:
        yield {"url": app.url, "base": base, "home": home}


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("RCL_SCREENSHOTS"):
        folders.append(Path(os.environ["RCL_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def snap(page, name: str, folders: list[Path]) -> None:
    first = folders[0] / f"{name}.png"
    page.screenshot(path=str(first), full_page=True)
    for folder in folders[1:]:
        shutil.copy(first, folder / first.name)


def assert_no_exception(page, name: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{name}: {boxes.first.inner_text()[:500]}"


def test_a_link_straight_to_a_page_shows_the_apps_navigation(server, browser):
    """A bookmark or a shared link opened on a freshly started app (the first session, before
    anyone opened Home) still gets the app's navigation ("Home", icons), not Streamlit's listing
    of a ``pages/`` folder ("app")."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server['url']}/{PAGES['label_quality']}")
    settle(page)
    entries = [line.strip() for line in page.locator('[data-testid="stSidebarNav"]').inner_text().splitlines()]
    assert "Home" in entries and "Label quality" in entries and "app" not in entries
    page.close()


def test_every_page_renders_without_exception(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    for name, path in PAGES.items():
        page.goto(f"{server['url']}/{path}")
        settle(page)
        snap(page, name, shots)
        assert_no_exception(page, name)
        assert page.locator('[data-testid="stMain"]').inner_text().strip()
    page.close()


def pick_run(page, label: str) -> None:
    """Choose a run in the sidebar's run picker by its name."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile(re.escape(label))).first.click()
    settle(page)


def test_slider_moves_live_figures(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server['url']}/Severity_matrix")
    settle(page)
    pick_run(page, "tiny-ce")  # the app tests show β moves this run's CER
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=60_000)
    metrics_before = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert metrics_before, "the re-decided metrics are missing"
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').nth(1)  # β
    before = slider.input_value()
    slider.focus()
    page.keyboard.press("Home")  # β = 0: a miss costs nothing, so the decision turns benign
    page.wait_for_timeout(300)
    settle(page)
    snap(page, "severity_matrix_after_slider", shots)
    after = page.locator('[data-testid="stSlider"] input[type="range"]').nth(1).input_value()
    assert float(after) < float(before)
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=60_000)
    assert page.locator('[data-testid="stMetricValue"]').all_inner_texts() != metrics_before
    assert_no_exception(page, "severity matrix after slider")
    page.close()


def shown_answer(page) -> str:
    """The value of the Triage page's "Answer" metric."""
    metric = page.locator('[data-testid="stMetric"]', has_text="Answer").first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_triage_upload(server, browser, shots, tmp_path):
    from rcl.taxonomy import preset

    classes = set(preset("isic2018").classes)
    example = ROOT / "assets" / "synthetic_NV.png"
    noise = tmp_path / "noise.png"
    noise.write_bytes(png_bytes(96, seed=3))
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file, not an image")
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(f"{server['url']}/Triage")
    settle(page)
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(str(example))  # a bundled example: answered, or referred as uncertain, never unfamiliar
    page.get_by_text("Grad-CAM for").first.wait_for(timeout=60_000)
    settle(page)
    assert shown_answer(page) in classes | {"refer: uncertain"}
    snap(page, "triage_upload", shots)
    assert_no_exception(page, "triage upload")
    upload.set_input_files(str(noise))  # noise: referred as unfamiliar, no class as the answer
    page.get_by_text("Refer: unfamiliar image.").first.wait_for(timeout=60_000)
    settle(page)
    assert shown_answer(page) == "refer: unfamiliar image"
    assert page.get_by_text("P(malignant) (untrusted)").count() >= 1
    snap(page, "triage_noise", shots)
    assert_no_exception(page, "triage noise")
    upload.set_input_files(str(fake))
    page.get_by_text("could not triage").first.wait_for(timeout=60_000)
    settle(page)
    snap(page, "triage_bad_upload", shots)
    assert_no_exception(page, "triage bad upload")
    page.close()


# --- live status and state that survives a refresh (issue 18) --------------------------------------


def app_store(server):
    from rcl.jobs import JobStore

    return JobStore(server["home"] / "jobs.sqlite")


def test_demo_progress_moves_on_home_without_a_reload(server, browser, shots):
    import rcl

    store = app_store(server)
    job = store.submit(rcl.demo_config(), group="demo")
    store.claim_next()
    store.mark_running(job.id, pid=1)
    store.update_progress(job.id, epoch=1, epochs=4, step=10, total_steps=100)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server["url"])
    page.get_by_text("epoch 1 of 4 · 10%").first.wait_for(timeout=60_000)
    store.update_progress(job.id, epoch=3, epochs=4, step=60, total_steps=100)  # the worker reports on
    page.get_by_text("epoch 3 of 4 · 60%").first.wait_for(timeout=30_000)  # no reload: the fragment re-reads
    assert "epoch 1 of 4" not in page.locator('[data-testid="stMain"]').inner_text()
    snap(page, "home_demo_training", shots)
    store.mark_failed(job.id, "the training process exited with code 2\n--- last lines of train.log ---\n"
                              "rcl train: error: disk full: free some space in the data directory")
    page.get_by_text("disk full: free some space in the data directory").first.wait_for(timeout=30_000)
    assert_no_exception(page, "home with a demo job")
    page.close()


def test_failed_jobs_reason_on_the_train_page(server, browser, shots):
    import rcl

    store = app_store(server)
    job = store.submit(rcl.TrainConfig(epochs=1), name="offline-resnet")
    store.claim_next()
    store.mark_running(job.id, pid=1)
    store.mark_failed(job.id, "the training process exited with code 2\n--- last lines of train.log ---\n"
                              "rcl train: error: could not load pretrained weights for 'resnet18' (OSError): this "
                              "machine may be offline. Download them once elsewhere and pass --weights FILE, or "
                              "train without --pretrained.")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server['url']}/Train")
    settle(page)
    alert = page.locator('[data-testid="stAlertContentError"]').filter(has_text="could not load pretrained weights")
    alert.first.wait_for(timeout=60_000)
    assert "pass --weights FILE" in alert.first.inner_text()
    assert "exited with code 2" in alert.first.inner_text()
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Advanced (for ML engineers)").first.click()
    page.get_by_text("…or a weights file").first.wait_for(timeout=10_000)  # and the way to give one
    snap(page, "train_failed_job", shots)
    assert_no_exception(page, "train with a failed job")
    page.close()


def sidebar_run(page) -> str:
    """The run shown in the sidebar picker (its text, or its input's value where the picker filters)."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    inputs = box.locator("input")
    value = inputs.first.input_value() if inputs.count() else ""
    return " ".join(part for part in (box.inner_text().removeprefix("Run").strip(), value.strip()) if part)


def test_a_refresh_keeps_the_selected_run(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server["url"])
    settle(page)
    first = sidebar_run(page)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    assert first, "the sidebar shows no selected run"
    other = next(t for t in options.all_inner_texts() if t.strip() and t.strip() not in first)
    options.filter(has_text=other.strip()).first.click()
    settle(page)
    chosen = sidebar_run(page)
    assert other.strip() in chosen and "run=" in page.url
    page.reload()
    settle(page)
    assert sidebar_run(page) == chosen  # a refresh keeps it
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Confusion").click()  # another page
    page.wait_for_url("**/Confusion**", timeout=30_000)
    settle(page)
    assert sidebar_run(page) == chosen
    page.reload()
    settle(page)
    assert sidebar_run(page) == chosen and "run=" in page.url
    snap(page, "confusion_after_refresh", shots)


def test_pareto_shows_only_runs_of_one_test_split(server, browser, shots):
    import rcl

    runs = {p.name: rcl.load_run(p) for p in server["home"].iterdir() if (p / "metrics.json").is_file()}
    split = rcl.split_fingerprint(runs["run-0-ce"].path)
    same = {r.label for r in runs.values() if rcl.split_fingerprint(r.path) == split}
    other = {r.label for r in runs.values()} - same
    assert len(same) == 2 and other  # the tiny runs: ce and rcl share a split, focal has its own
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server['url']}/Pareto_frontier")
    settle(page)
    page.locator(".legendtext").first.wait_for(timeout=60_000)
    legend = set(page.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)"))
    snap(page, "pareto_one_split", shots)
    assert same <= legend and not (other & legend), legend
    assert_no_exception(page, "pareto")
    page.close()


def test_a_refresh_keeps_alpha_and_beta(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server['url']}/Severity_matrix")
    settle(page)
    sliders = page.locator('[data-testid="stSlider"] input[type="range"]')
    for index, key in ((1, "End"), (0, "Home")):  # β = 50, then α = 0
        sliders.nth(index).focus()
        page.keyboard.press(key)
        page.wait_for_timeout(300)
        settle(page)
    assert "alpha=0" in page.url and "beta=50" in page.url, page.url
    page.reload()
    settle(page)
    sliders = page.locator('[data-testid="stSlider"] input[type="range"]')
    assert float(sliders.nth(0).input_value()) == 0 and float(sliders.nth(1).input_value()) == 50
    assert page.get_by_text("α = 0: a false alarm costs nothing").count() == 1
    snap(page, "severity_after_refresh", shots)
    assert_no_exception(page, "severity after refresh")
    page.close()
