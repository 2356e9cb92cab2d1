"""Train many ``TrainConfig``s side by side, each in its own process, for the benchmarks.

A benchmark grid on a many-core machine (or one GPU that a small CNN leaves mostly idle) finishes
sooner with several trainings at once than one after the other. Each trial trains into
``out/<config.name>`` through the project's own ``run_training``; a trial whose folder is
complete is skipped, so an interrupted benchmark resumes; a trial that fails is reported and the
others go on.

    from benchmarks.parallel import train_all
    train_all(configs, Path("runs/bench"), jobs=8, threads=2)

Two benchmarks often train the same config under different names (the label-noise grid's clean CE
run is the ablation's CE run): ``reuse=[other_runs_folder]`` copies such a finished run instead
of training it again. Training on the CPU is deterministic per seed, so the copy is the run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rcl.config import TrainConfig, as_recorded
from rcl.models import pick_device


def _init(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _train(config: dict, out: str) -> tuple[str, float, str | None]:
    """Train one trial; return (name, seconds, error or None). Errors are returned, not raised, so
    one broken trial never takes the pool down."""
    from rcl.train import run_training

    began = time.perf_counter()
    try:
        run_training(TrainConfig.from_dict(config), out)
        return Path(out).name, time.perf_counter() - began, None
    except Exception as exc:  # noqa: BLE001 - reported with its traceback, the other trials go on
        return Path(out).name, time.perf_counter() - began, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _settings(train: dict, device: str) -> str:
    """A run's training settings as it records them, apart from its name, with the kind of device it
    trains on instead of the one asked for ("auto" and "cpu" train alike on a CPU machine), as
    comparable text."""
    record = {k: v for k, v in as_recorded(train).items() if k != "name"}
    return json.dumps({**record, "device": device.split(":")[0]}, sort_keys=True)


def reuse_finished(pending: list[TrainConfig], out: Path, sources) -> list[TrainConfig]:
    """Copy into ``out/<name>`` every finished run in a ``sources`` folder whose stored settings are
    those a pending config would train with; return the configs still to train."""
    finished = {}
    for source in sources:
        if not Path(source).is_dir():  # a mistyped folder would silently retrain everything
            raise SystemExit(f"--reuse: {source} is not a folder of finished runs")
        for stored in sorted(Path(source).glob("*/config.json")):
            if (stored.parent / "metrics.json").is_file():
                record = json.loads(stored.read_text())
                finished.setdefault(_settings(record["train"], record.get("device") or record["train"]["device"]),
                                    stored.parent)
    left = []
    for config in pending:
        checked = TrainConfig.from_dict(config.to_dict()).check()
        match = finished.get(_settings(checked.to_dict(), pick_device(checked.device).type))
        if match is None:
            left.append(config)
            continue
        shutil.copytree(match, out / config.name, dirs_exist_ok=True)
        print(f"{config.name}: the same training as {match}, copied", file=sys.stderr, flush=True)
    return left


def train_all(configs: list[TrainConfig], out: Path, jobs: int = 1, threads: int | None = None,
              reuse=()) -> list[str]:
    """Train every config into ``out/<name>``, skipping finished folders and copying the same
    training finished in a ``reuse`` folder: here one after the other (``jobs`` 1), else in
    ``jobs`` processes of ``threads`` torch threads each (default: an equal share of the cores;
    one after the other, torch's own default unless ``threads`` is given).
    Returns the names of the trials that failed."""
    out.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or None in names:
        raise ValueError("every config needs its own name (the trial's folder)")
    pending = reuse_finished([c for c in configs if not (out / c.name / "metrics.json").is_file()], out, reuse)
    print(f"{len(configs) - len(pending)} of {len(configs)} trials already finished; {len(pending)} to train "
          f"with {jobs} process(es)", file=sys.stderr, flush=True)
    failed = []
    if jobs <= 1:
        _init(threads)  # the same thread budget as one pool process
        for config in pending:
            name, seconds, error = _train(config.to_dict(), str(out / config.name))
            print(f"{name}: {'FAILED ' + error if error else 'done'} in {seconds:.0f} s", file=sys.stderr, flush=True)
            failed += [name] if error else []
        return failed
    if pending:
        from rcl.engine import load_run_data

        load_run_data(pending[0])  # decodes the images into the cache once, before the workers all read it
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)  # each process its share of the cores
    context = multiprocessing.get_context("spawn")  # CUDA and threads: never fork a parent that holds them
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_train, c.to_dict(), str(out / c.name)) for c in pending]
        for done, future in enumerate(as_completed(futures), 1):
            name, seconds, error = future.result()
            print(f"[{done}/{len(pending)}] {name}: {'FAILED ' + error if error else 'done'} in {seconds:.0f} s",
                  file=sys.stderr, flush=True)
            if error:
                failed.append(name)
    return failed
