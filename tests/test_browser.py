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
from helpers import CHROMIUM, CHROMIUM_ARGS, PAGES, make_runs, png_bytes, running_app, settle

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
    env = {"RCL_HOME": str(home), "RCL_MODELS": str(models), "RCL_CACHE": str(shared_cache)}
    with running_app(env, base / "streamlit.log") as url:
        yield {"url": url, "base": base, "home": home}


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


def test_triage_upload(server, browser, shots, tmp_path):
    image = tmp_path / "lesion.png"
    image.write_bytes(png_bytes(96, seed=3))
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file, not an image")
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(f"{server['url']}/Triage")
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_text("P(malignant)").first.wait_for(timeout=60_000)
    settle(page)
    page.get_by_text("Grad-CAM for").first.wait_for(timeout=60_000)
    snap(page, "triage_upload", shots)
    assert_no_exception(page, "triage upload")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(fake))
    page.get_by_text("could not triage").first.wait_for(timeout=60_000)
    settle(page)
    snap(page, "triage_bad_upload", shots)
    assert_no_exception(page, "triage bad upload")
    page.close()


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
