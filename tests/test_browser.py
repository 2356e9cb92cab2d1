"""The real app in a real browser: Debian's headless Chromium driven by Playwright.

Starts ``streamlit run app.py`` on a free local port with a data directory holding tiny trained
runs and an exported model, opens every page, moves a slider, uploads an image on Triage (and a
text file renamed .jpg), saves screenshots (to ``$RCL_SCREENSHOTS`` too when set) and checks that
no page shows a Streamlit exception box.
"""

from __future__ import annotations

import os
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


def test_slider_moves_live_figures(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server['url']}/Severity_matrix")
    settle(page)
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
