"""Helpers shared by the app and browser tests: tiny trained runs, test images, the real app in
headless Chromium (also used by ``benchmarks/app_interaction.py``)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_LOSSES = (("ce", 0), ("rcl", 0), ("focal", 1))  # ce and rcl share a test split


def make_runs(home: Path, models: Path, cache: Path) -> list[Path]:
    """Train the tiny runs into ``home`` and export the first to ``models/tiny``."""
    from rcl.config import TrainConfig
    from rcl.runs import export_run
    from rcl.train import run_training

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCL_HOME", str(home))
        mp.setenv("RCL_CACHE", str(cache))
        mp.setenv("RCL_MODELS", str(models))
        out = []
        for loss, seed in TINY_LOSSES:
            config = TrainConfig(data="synthetic", model="small_cnn", epochs=1, image_size=32, limit=300,
                                 max_steps=3, batch_size=16, loss=loss, seed=seed, name=f"tiny-{loss}")
            run_training(config, home / f"run-{seed}-{loss}")
            out.append(home / f"run-{seed}-{loss}")
        export_run(out[0], "tiny", models_root=models)
    return out


def png_bytes(size: int = 64, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


TEST_METRICS = {"cer": 0.25, "f1_macro": 0.5, "accuracy": 0.75, "n": 8,
                "tiers": {"correct": 6, "visual_ambiguity": 1, "type_1": 0, "type_2": 1}}


def write_run(folder: Path, **train) -> Path:
    """A minimal finished run folder, as the trainer writes it (no weights: listing needs none)."""
    from rcl.taxonomy import preset

    folder.mkdir(parents=True)
    config = {"train": {"loss": "ce", "model": "small_cnn", "seed": 0, "data": "synthetic", **train},
              "taxonomy": preset("isic2018").to_dict(), "dataset": {"name": "synthetic", "synthetic": True}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"test": TEST_METRICS, "epochs_run": 1}))
    return folder


# --- the real app in Debian's Chromium (tests/test_browser.py, benchmarks/screenshots.py) ----------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {"home": "", "severity_matrix": "Severity_matrix", "train": "Train", "pareto_frontier": "Pareto_frontier",
         "confusion": "Confusion", "triage": "Triage", "run_card": "Run_card", "guarantee": "Guarantee",
         "label_quality": "Label_quality"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    pid: int

    def inotify_watches(self) -> int:
        """Files and folders the server watches through inotify (0 with the file watcher off)."""
        total = 0
        for info in Path(f"/proc/{self.pid}/fdinfo").glob("*"):
            with contextlib.suppress(OSError):
                total += info.read_text().count("inotify wd:")
        return total

    def usage(self) -> tuple[float, float, float]:
        """The server's CPU seconds so far, its resident memory and its peak resident memory (MB)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        status = dict(line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines())
        return cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@contextlib.contextmanager
def streamlit_app(env: dict, log_path: Path, *extra: str, startup: float = 90, root: Path = ROOT) -> Iterator[RunningApp]:
    """``streamlit run app.py`` of the checkout ``root`` (this one by default) on a free local port with
    its config (plus ``extra`` flags); yields it once healthy; stopped on exit."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", *extra],
            cwd=root, env={**os.environ, "PYTHONPATH": str(root), **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield RunningApp(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def settle(page, timeout: float = 90) -> None:
    """Wait until the page's script has finished (the app's script state reads 'notRunning' steadily)."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout * 1000)  # every page has a title
    deadline, steady = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and steady < 4:
        state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        steady = steady + 1 if state == "notRunning" else 0
        page.wait_for_timeout(250)
    page.wait_for_timeout(700)  # charts draw after the script ends


@contextlib.contextmanager
def running_app(env: dict, log_path: Path, startup: float = 90) -> Iterator[str]:
    """:func:`streamlit_app` of this checkout, yielding only its URL (screenshots, browser tests)."""
    with streamlit_app(env, log_path, startup=startup) as app:
        yield app.url
