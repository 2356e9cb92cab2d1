"""Start-up time of the light commands (`rcl jobs`, `rcl logs`, `rcl cancel`) beside `python -c pass`.

Each command runs as a fresh process on an empty data directory (a new ``$RCL_HOME``), as a user
would type it; ``python -c pass`` is the floor no Python command can beat, and ``import torch`` is
what the light commands must not pay. Goal: ``rcl jobs`` well under 1 s. Prints figures only.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 5] [--root OTHER_CHECKOUT]

``--root`` times another checkout's ``rcl`` (e.g. the commit before a change) with the same script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "rcl jobs": ["-m", "rcl", "jobs"],
    "rcl logs 1 (no such job)": ["-m", "rcl", "logs", "1"],
    "rcl cancel 1 (no such job)": ["-m", "rcl", "cancel", "1"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def timed(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=env["RCL_HOME"], capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose rcl is timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "RCL_HOME": home, "RCL_WORKER_AUTOSTART": "0",
               "PYTHONPATH": os.pathsep.join(p for p in (str(args.root), os.environ.get("PYTHONPATH")) if p)}
        # Interleaved rounds, so a busy machine slows every command alike.
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for command in COMMANDS.values():
            timed(command, env)  # warm the file cache once
        for _ in range(args.repeats):
            for name, command in COMMANDS.items():
                times[name].append(timed(command, env))
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':30s} {'median s':>9s} {'min s':>7s} {'x python -c pass':>17s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:30s} {median:9.3f} {min(values):7.3f} {median / floor:17.1f}")
    print(f"({args.repeats} runs each, fresh process per run, empty data directory, rcl from {args.root}, "
          f"{sys.platform}, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
