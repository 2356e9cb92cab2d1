"""Screenshots of every page of the app at 1400 × 1000, in Debian's Chromium, into docs/screenshots/.

    .venv/bin/python benchmarks/screenshots.py [--home DIR] [--out docs/screenshots]

Without ``--home`` the pages show tiny runs trained here on the synthetic images (two on one test
split, one on another, and an exported model, as the browser tests use); with it, the runs of
that data directory. Each page is saved twice: the 1400 × 1000 window (``NAME.png``) and the
whole page at that width (``NAME_full.png``). Besides each page as it opens, it saves the Severity page with β = 0 (its
warnings, restored from the URL) and with an invalid cell (the refusal and the disabled Save).
Needs ``apt-get install chromium`` and the ``playwright`` package (no browser download).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import CHROMIUM, CHROMIUM_ARGS, PAGES, make_runs, running_app, settle  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}


def shoot(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)

        def save(name: str) -> None:
            """``NAME.png``: the 1400 × 1000 window; ``NAME_full.png``: the same width, the whole page."""
            saved.append(out / f"{name}.png")
            page.screenshot(path=str(saved[-1]))
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height))})
            page.wait_for_timeout(500)
            saved.append(out / f"{name}_full.png")
            page.screenshot(path=str(saved[-1]))
            page.set_viewport_size(VIEWPORT)

        for name, path in PAGES.items():
            page.goto(f"{url}/{path}")
            settle(page)
            save(name)
        page.goto(f"{url}/Severity_matrix?alpha=5&beta=0")
        settle(page)
        save("severity_matrix_beta_0")
        cell = page.locator('[data-testid="stDataFrameResizable"]').first
        cell.dblclick(position={"x": 200, "y": 55})  # row MEL, column NV: opens the cell's text box
        page.wait_for_timeout(400)
        page.keyboard.press("Control+A")
        page.keyboard.type("1,5")
        page.keyboard.press("Enter")
        page.wait_for_timeout(400)
        settle(page)
        save("severity_matrix_invalid_cell")
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a data directory with finished runs (default: train tiny ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home, models = args.home, tmp / "models"
        if home is None:
            home = tmp / "home"
            home.mkdir()
            make_runs(home, models, tmp / "cache")
        env = {"RCL_HOME": str(home), "RCL_MODELS": str(models), "RCL_CACHE": str(tmp / "cache"),
               "RCL_WORKER_AUTOSTART": "0"}
        with running_app(env, tmp / "streamlit.log") as url:
            for path in shoot(url, args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
