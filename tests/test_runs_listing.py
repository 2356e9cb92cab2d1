"""Listing is isolated per run: a damaged run folder is listed as damaged with its reason, the
others as usual, in the library, ``rcl runs`` (table and --json) and the app's run rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_run

from rcl.cli import main
from rcl.listing import run_rows
from rcl.runs import DamagedRun, Run, list_runs

# each damage, and the words its reason must contain
DAMAGES = {
    "truncated": (lambda f: (f / "metrics.json").write_text('{"test": {"cer": 0.'), "metrics.json is damaged (not valid JSON"),
    "list": (lambda f: (f / "metrics.json").write_text("[]"), "metrics.json is damaged (a JSON list"),
    "noloss": (lambda f: (f / "config.json").write_text(json.dumps(
        {"train": {"model": "small_cnn", "seed": 0}, "taxonomy": {}})), "has no loss"),
    "config-list": (lambda f: (f / "config.json").write_text("[1]"), "config.json is damaged (a JSON list"),
    "binary": (lambda f: (f / "metrics.json").write_bytes(b"\xff\xfe\x00garbage"), "metrics.json is damaged"),
}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "home"
    write_run(root / "good-1")
    write_run(root / "good-2", loss="rcl", alpha=5, beta=20)
    for name, (damage, _) in DAMAGES.items():
        damage(write_run(root / f"bad-{name}"))
    (root / ".bad-training.partial").mkdir()  # a run still training is hidden, not a run
    (root / ".bad-training.partial" / "config.json").write_text("{")
    monkeypatch.setenv("RCL_HOME", str(root))
    return root


def test_library_lists_good_runs_and_damaged_ones_with_reasons(home):
    runs = list_runs(home, include_damaged=True)
    good = sorted(r.id for r in runs if isinstance(r, Run))
    damaged = {r.id: r.reason for r in runs if isinstance(r, DamagedRun)}
    assert good == ["good-1", "good-2"]
    assert set(damaged) == {f"bad-{name}" for name in DAMAGES}
    for name, (_, words) in DAMAGES.items():
        assert words in damaged[f"bad-{name}"], (name, damaged[f"bad-{name}"])
    # without include_damaged, the damaged ones are simply left out (callers that need a Run)
    assert sorted(r.id for r in list_runs(home)) == ["good-1", "good-2"]


def test_unreadable_file_is_a_damaged_run(home, monkeypatch):
    original = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.parent.name == "good-1" and self.name == "metrics.json":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    damaged = {r.id: r.reason for r in list_runs(home, include_damaged=True) if isinstance(r, DamagedRun)}
    assert damaged["good-1"].startswith("permission denied (") and "metrics.json" in damaged["good-1"]


def test_cli_runs_lists_the_others_and_names_each_damage(home, capsys):
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    table = [line.split()[:2] for line in lines[1:] if not line.startswith("damaged:")]
    assert ["good-2", "done"] in table and ["good-1", "done"] in table
    assert sum(1 for row in table if row[1] == "damaged") == len(DAMAGES)
    assert "Traceback" not in out
    for name, (_, words) in DAMAGES.items():
        assert any(line.startswith(f"damaged: bad-{name}: ") and words in line for line in lines), name


def test_cli_runs_json_marks_damaged_rows(home, capsys):
    assert main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good-2"]["status"] == "done" and rows["good-2"]["cer"] == 0.25 and rows["good-2"]["alpha"] == 5
    assert rows["bad-list"]["status"] == "damaged" and rows["bad-list"]["cer"] is None
    assert "a JSON list" in rows["bad-list"]["reason"]
    assert set(rows["bad-list"]) >= set(rows["good-1"])  # same columns, so tables line up


def test_app_run_rows_isolate_a_damaged_run(home):
    rows = run_rows(home)
    assert sorted(r["id"] for r in rows) == ["good-1", "good-2"]
    assert {r["f1_macro"] for r in rows} == {0.5}
    with_damaged = run_rows(home, include_damaged=True)
    assert {r["id"]: r["status"] for r in with_damaged}["bad-truncated"] == "damaged"


@pytest.mark.parametrize("train, words", [
    ({"loss": "rcl", "sampling": "auto"}, "sqrt_balanced sampling"),  # "auto" as the loss resolves it
    ({"loss": "wce", "sampling": "auto"}, "shuffle sampling"),  # a loss that weights classes itself
    ({"loss": "ce"}, "shuffle sampling"),  # a run stored before the option drew with a shuffle
    ({"loss": "ce", "weights": "/runs/CE-seed0/model.safetensors"}, "fine-tuned from run CE-seed0"),
])
def test_a_runs_hover_line_says_how_it_drew_images_and_where_it_started(train, words):
    from rcl.listing import config_text

    assert words in config_text({"model": "cnn4", "image_size": 40, "epochs": 24, "lr": 1e-3, "seed": 0, **train})
