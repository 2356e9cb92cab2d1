"""How fast the real app answers a presenter: slider → new metrics, sidebar page switch, first load.

Starts ``streamlit run app.py`` with the repository's config over a data directory of tiny trained
runs (or ``--home DIR``), drives it in Debian's headless Chromium (Playwright) at 1400×1000, and
times, from the user's action to the new content on screen, the median over ``--tries``:

- slider: α on *Severity matrix* moved between its ends; until the re-decided metrics differ (α, not
  β: a tiny run that calls everything benign answers β's ends alike, while α = 0 makes a malignant
  answer free);
- page switch: a sidebar link (Home → Confusion → Train → Severity matrix → Home); until the
  target's title shows and its script has finished;
- first load: a new browser tab on Home; until the script has finished.

    python benchmarks/app_interaction.py --tries 5 --out benchmarks/results/app_interaction.md

``--baseline DIR`` measures another checkout first (same data, same browser), side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import CHROMIUM, CHROMIUM_ARGS, make_runs, streamlit_app  # noqa: E402

IDLE_JS = """() => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state')
                   === 'notRunning'"""
METRICS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
                       .map(e => e.innerText).join('|')"""
SWITCHES = [("Confusion", "Confusion"), ("Train", "Train"), ("Severity matrix", "Severity matrix"),
            ("Home", "RCL safety-accuracy explorer")]


def idle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_function(IDLE_JS, timeout=timeout_ms, polling=20)


def slider_seconds(page) -> float:
    """α to its other end; seconds until the metrics on screen change."""
    before = page.evaluate(METRICS_JS)
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').nth(0)  # α
    slider.focus()
    key = "End" if float(slider.input_value()) <= float(slider.get_attribute("min") or 0) else "Home"
    start = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function(f"() => ({METRICS_JS})() !== {before!r} && ({IDLE_JS})()", timeout=120_000, polling=20)
    return time.perf_counter() - start


def switch_seconds(page, link: str, title: str) -> float:
    start = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    page.wait_for_function(
        f"""() => Array.from(document.querySelectorAll('[data-testid="stMain"] h1'))
                   .some(h => h.innerText.trim().startsWith({title!r})) && ({IDLE_JS})()""",
        timeout=120_000, polling=20)
    return time.perf_counter() - start


def first_load_seconds(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=120_000)
    idle(page)
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def measure(url: str, tries: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"slider → new metrics": [], "page switch (sidebar)": [], "first load (Home)": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        first_load_seconds(browser, url)  # warm-up: imports and caches of the server process
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/Severity_matrix")
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=120_000)
        idle(page)
        slider_seconds(page)  # warm-up
        for _ in range(tries):
            times["slider → new metrics"].append(slider_seconds(page))
        for _ in range(tries):
            for link, title in SWITCHES:
                times["page switch (sidebar)"].append(switch_seconds(page, link, title))
        page.close()
        for _ in range(tries):
            times["first load (Home)"].append(first_load_seconds(browser, url))
        browser.close()
    return times


def report(results: dict[str, dict[str, list[float]]], command: str, note: str) -> str:
    """One table: per interaction, the median (min–max) of each app measured, and the ratio to the first."""
    names = list(results)
    lines = [
        "# App interaction benchmark",
        "",
        f"Reproduce: `{command}`",
        "",
        f"{datetime.now():%Y-%m-%d %H:%M} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPU "
        f"cores · headless Chromium 1400×1000 · {note}",
        "",
        "| interaction | " + " | ".join(f"{n}: median s (min–max, tries)" for n in names)
        + (f" | {names[1]} / {names[0]} |" if len(names) == 2 else " |"),
        "|---|" + "---|" * (len(names) + (len(names) == 2)),
    ]
    for interaction in results[names[0]]:
        cells = []
        for name in names:
            values = results[name][interaction]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}, {len(values)})")
        if len(names) == 2:
            base, new = (statistics.median(results[n][interaction]) for n in names)
            cells.append(f"{new / base:.2f}")
        lines.append(f"| {interaction} | " + " | ".join(cells) + " |")
    lines += ["", "From the user's action (key press, click, new tab) to the new content on screen with the "
              "page's script finished. Target: under 1 s for the slider and a page switch on a quiet machine."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--home", type=Path, help="a data directory with runs (default: tiny runs trained now)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of the app (e.g. a worktree of the previous commit), measured first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.home is None:
            home, models = tmp / "home", tmp / "models"
            home.mkdir()
            make_runs(home, models, tmp / "cache")
            env, note = {"RCL_HOME": str(home), "RCL_MODELS": str(models), "RCL_CACHE": str(tmp / "cache")}, \
                "3 tiny synthetic runs"
        else:
            env, note = {"RCL_HOME": str(args.home.resolve())}, f"runs of {args.home}"
        env["RCL_WORKER_AUTOSTART"] = "0"
        load = os.getloadavg()[0]
        apps = {"baseline": args.baseline.resolve()} if args.baseline else {}
        apps["this checkout"] = ROOT
        results = {}
        for name, root in apps.items():
            with streamlit_app(env, tmp / f"streamlit-{len(results)}.log", "--server.headless", "true",
                               root=root) as app:
                results[f"{name} ({root.name})"] = measure(app.url, args.tries)
    command = "python benchmarks/app_interaction.py --tries " + str(args.tries) + "".join(
        f" --{flag} {value}" for flag, value in (("home", args.home), ("baseline", args.baseline), ("out", args.out))
        if value)
    text = report(results, command, f"{note} · load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
