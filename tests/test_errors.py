"""One error boundary: every ordinary fault reaches the user as one line saying what failed and
what to do, in the CLI (``rcl.cli.main``) and the app (``ui.common.guard``), never a traceback."""

from __future__ import annotations

import errno
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from helpers import ROOT, write_run
from safetensors import SafetensorError

from rcl import errors
from rcl.cli import COMMANDS, build_parser, main
from rcl.models import read_checkpoint

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"  # as a full tmpfs gives


def one_error_line(capsys, command: str) -> str:
    """stderr's error line; fails unless there is exactly one and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"rcl {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0].removeprefix(f"rcl {command}: error: ")


@pytest.mark.parametrize(("exc", "words"), [
    (OSError(errno.ENOSPC, "No space left on device", "/x/model.json"), "the disk is full (/x/model.json): free some space"),
    (SafetensorError(SAFETENSORS_FULL), "the disk is full while saving model weights"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "/d/a.png"), "symbolic link loops back on itself (/d/a.png)"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "read-only (/ro/run): set RCL_HOME"),
    (PermissionError(errno.EACCES, "Permission denied", "/p"), "permission denied (/p)"),
    (pickle.UnpicklingError("invalid load key, 'g'."), "checkpoint (.pt) is damaged"),
    (sqlite3.DatabaseError("file is not a database"), "jobs.sqlite failed (file is not a database)"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "writable"),
    (OverflowError("Python int too large to convert to SQLite INTEGER"), "a number is out of range"),
    (ValueError("alpha must be a finite number >= 0,\n got nan"), "alpha must be a finite number >= 0, got nan"),
    (errors.UserError("model 'x' already exists"), "model 'x' already exists"),
])
def test_user_message_is_one_plain_line(exc, words):
    message = errors.user_message(exc)
    assert message is not None and words in message
    assert "\n" not in message and len(message) <= errors.MAX_LINE


def test_unexpected_error_names_itself_and_the_debug_switch():
    assert errors.user_message(KeyError("loss")) is None
    assert errors.explain(KeyError("loss")) == (
        "unexpected error (KeyError: 'loss'); run again with --debug (or RCL_DEBUG=1) to see the traceback")


# -- the CLI boundary ------------------------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path) -> Path:
    run = write_run(tmp_path / "rcl_home" / "r1")
    (run / "model.safetensors").write_bytes(os.urandom(64 * 1024))
    return run


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), SafetensorError(SAFETENSORS_FULL)])
def test_cli_disk_full_while_saving_is_one_line(finished_run, monkeypatch, capsys, exc):
    monkeypatch.setattr("rcl.runs.shutil.copy2", _raise(exc))
    assert main(["export", str(finished_run), "--name", "demo"]) == 2
    assert one_error_line(capsys, "export").startswith("the disk is full")


def test_cli_disk_full_on_a_real_tiny_tmpfs(finished_run, tmp_path, monkeypatch, capsys):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the monkeypatched cases cover the mapping")
    try:
        monkeypatch.setenv("RCL_MODELS", str(mount))
        assert main(["export", str(finished_run), "--name", "demo"]) == 2
        assert one_error_line(capsys, "export").startswith("the disk is full")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_debug_shows_the_traceback(finished_run, monkeypatch):
    monkeypatch.setattr("rcl.runs.shutil.copy2", _raise(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        main(["--debug", "export", str(finished_run), "--name", "demo"])
    monkeypatch.setenv("RCL_DEBUG", "1")
    with pytest.raises(OSError):
        main(["export", str(finished_run), "--name", "demo"])


@pytest.mark.parametrize("content", [b"garbage\n", b"PK\x03\x04truncated zip", "list", "dict"])
def test_damaged_last_pt_is_named(tmp_path, content):
    path = tmp_path / "last.pt"
    if content == "list":
        torch.save([1, 2], path)
    elif content == "dict":
        torch.save({"model": {}, "epoch": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(errors.UserError) as info:
        read_checkpoint(path)
    assert str(info.value).startswith(f"{path} is damaged (")
    assert str(info.value).endswith("): delete it or pass --overwrite")


def test_cli_train_resuming_from_a_corrupt_last_pt_starts_afresh_and_says_so(tmp_path, capsys):
    from rcl.paths import partial_dir

    out = tmp_path / "run"
    partial = partial_dir(out)
    partial.mkdir(parents=True)
    (partial / "last.pt").write_bytes(b"\x80\x04garbage from a kill mid-save")
    code = main(["train", "--data", "synthetic", "--limit", "40", "--image-size", "16", "--epochs", "1",
                 "--model", "small_cnn", "--out", str(out)])
    assert code == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rcl train: warning:")]
    assert warning == [f"rcl train: warning: the resume checkpoint {partial / 'last.pt'} is damaged: training starts "
                       "again from epoch 1"]
    assert (out / "metrics.json").is_file() and not partial.exists()


def test_cli_dataset_with_a_symlink_loop(tmp_path, capsys):
    from PIL import Image

    for name in ("nevus", "melanoma"):
        (tmp_path / "ds" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "ds" / name / f"{i}.png")
    (tmp_path / "ds" / "nevus" / "loop.png").symlink_to("loop.png")  # points at itself: ELOOP
    (tmp_path / "ds" / "melanoma" / "again").symlink_to(tmp_path / "ds")  # a folder loop
    assert main(["audit", str(tmp_path / "ds"), "--preset", "isic2018"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'ds' / 'nevus' / 'loop.png'}: cannot read the file" in out


def test_cli_matrix_whose_taxonomy_is_a_string(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"taxonomy": "isic2018", "values": [[1, 2], [3, 1]]}))
    assert main(["train", "--data", "synthetic", "--matrix", str(path), "--epochs", "1"]) == 2
    line = one_error_line(capsys, "train")
    assert line.startswith("the severity matrix's 'taxonomy' field must be an object") and "got str 'isic2018'" in line


def test_cli_damaged_job_database(tmp_path, capsys):
    db = tmp_path / "rcl_home" / "jobs.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    code = main(["jobs"])
    assert code == 2
    assert "jobs.sqlite" in one_error_line(capsys, "jobs")


def test_library_warnings_print_as_one_line(monkeypatch, capsys):
    def warn(args):
        warnings.warn("3 of 7 classes have no image: BCC, DF, VASC", errors.DataWarning, stacklevel=1)
        return 0

    build_parser()  # registers the real commands; then replace one
    monkeypatch.setitem(COMMANDS, "runs", (lambda parser: None, warn, "list"))
    assert main(["runs"]) == 0
    assert capsys.readouterr().err == "rcl runs: warning: 3 of 7 classes have no image: BCC, DF, VASC\n"


def test_broken_pipe_exits_quietly(tmp_path):
    """``rcl runs --json | head -3``: the reader goes away; rcl stops without a word."""
    home = tmp_path / "many"
    for i in range(300):  # about 200 KB of JSON: more than a pipe holds
        write_run(home / f"run-{i:03d}-{uuid.uuid4().hex[:6]}")
    env = {**os.environ, "RCL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "rcl", "runs", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    head = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert head[0] == b"[\n"
    assert err == ""
    assert process.returncode == 141


# -- the app boundary ------------------------------------------------------------------------------
def test_app_guard_shows_the_same_line(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from ui import common

    shown: list[str] = []
    monkeypatch.setattr(common.st, "error", shown.append)
    with common.guard("saving the model"):
        raise SafetensorError(SAFETENSORS_FULL)
    with common.guard():
        raise sqlite3.DatabaseError("file is not a database")
    with common.guard("reading the run"):
        raise KeyError("loss")
    assert shown[0] == f"saving the model: {errors.explain(SafetensorError(SAFETENSORS_FULL))}"
    assert shown[0].startswith("saving the model: the disk is full while saving model weights")
    assert "jobs.sqlite failed (file is not a database)" in shown[1]
    assert shown[2] == f"reading the run: {errors.explain(KeyError('loss'))}"
    monkeypatch.setenv("RCL_DEBUG", "1")
    with pytest.raises(KeyError), common.guard("debugging"):
        raise KeyError("loss")
