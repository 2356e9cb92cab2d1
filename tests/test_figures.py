"""Comparable runs, matrix guard rails, re-decision, the stakeholder card and their CLI commands
(rcl.comparison, rcl.severity, rcl.redecision, rcl.run_card, rcl.cli.report; no training)."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report import fake_run

import rcl
from rcl.cli import main
from rcl.comparison import axis_range, comparable, pick_group, split_fingerprint, split_groups, with_splits
from rcl.listing import front_flags, run_rows
from rcl.redecision import redecide_run, redecision_text
from rcl.run_card import card_sections, run_card_html, run_card_markdown
from rcl.severity import SeverityMatrix, parse_cells, penalty_warnings
from rcl.taxonomy import preset

ISIC = preset("isic2018")


def other_split(folder, shift: int = 1000):
    """Give a fake run other test images (other ids): a run no longer comparable with the rest."""
    with np.load(folder / "predictions.npz") as stored:
        arrays = dict(stored)
    arrays["test_ids"] = np.array([f"img/{i + shift}.png" for i in range(len(arrays["test_ids"]))])
    np.savez(folder / "predictions.npz", **arrays)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Three runs on one test split (ce, rcl, focal), one on other images, one on another dataset."""
    root = tmp_path / "home"
    for name, loss, seed in (("a-ce", "ce", 0), ("b-rcl", "rcl", 1), ("c-focal", "focal", 2)):
        fake_run(root, name, loss=loss, seed=seed)
    other_split(fake_run(root, "d-elsewhere", seed=3))
    elsewhere = fake_run(root, "e-otherdata", seed=4)
    config = json.loads((elsewhere / "config.json").read_text())
    config["dataset"]["name"] = "other_data"
    (elsewhere / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("RCL_HOME", str(root))
    return root


# --- comparable runs ------------------------------------------------------------------------------


def test_split_fingerprint_names_the_test_images_not_their_order(home):
    first = split_fingerprint(home / "a-ce")
    assert first is not None and re.fullmatch(r"[0-9a-f]{8}", first)
    with np.load(home / "b-rcl" / "predictions.npz") as stored:
        arrays = dict(stored)
    order = np.arange(len(arrays["test_ids"]))[::-1]
    np.savez(home / "b-rcl" / "predictions.npz", **{k: v[order] for k, v in arrays.items()})
    assert split_fingerprint(home / "b-rcl") == first
    assert split_fingerprint(home / "d-elsewhere") != first
    (home / "c-focal" / "predictions.npz").unlink()
    assert split_fingerprint(home / "c-focal") is None


def test_groups_hold_only_runs_tested_on_the_same_images(home):
    rows = with_splits(run_rows(home))
    groups = split_groups(rows)
    assert [(g["dataset"], g["runs"]) for g in groups] == [("synthetic", 3), ("other_data", 1), ("synthetic", 1)]
    assert groups[0]["label"].endswith("· 3 runs") and groups[2]["label"].endswith("· 1 run")
    group = pick_group(groups, "synthetic")
    members = comparable(rows, group)
    assert {r["id"] for r in members} == {"a-ce", "b-rcl", "c-focal"}
    assert [r["on_front"] for r in members] == front_flags(members)
    cers = [r["cer"] for r in members]
    assert cers == sorted(cers)
    with pytest.raises(ValueError, match="comparable groups: synthetic · 140 test images · split [0-9a-f]{8} · 3 runs; other_data"):
        pick_group(groups, "nope")


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_axis_range_never_clips_a_value(values):
    low, high = axis_range(values)
    assert low < min(values) and high > max(values) and low <= 0


# --- matrix guard rails ---------------------------------------------------------------------------


@given(st.floats(0, 50), st.floats(0, 50))
@settings(max_examples=80, deadline=None)
def test_penalty_warnings_name_each_dangerous_setting(alpha, beta):
    warnings = " ".join(penalty_warnings(SeverityMatrix.from_penalties(ISIC, alpha, beta).values, ISIC))
    assert ("β = 0:" in warnings) == (beta == 0)
    assert ("< 1: a miss costs less" in warnings) == (0 < beta < 1)
    assert ("a miss costs less than a false alarm" in warnings) == (beta < alpha)
    assert ("α = 0:" in warnings) == (alpha == 0)


def test_the_papers_matrix_has_no_warning():
    assert penalty_warnings(SeverityMatrix.from_penalties(ISIC).values, ISIC) == []


def cells(value: str, i: int = 0, j: int = 1) -> list[list[str]]:
    table = [[f"{v:g}" for v in row] for row in SeverityMatrix.from_penalties(ISIC).values]
    table[i][j] = value
    return table


@pytest.mark.parametrize("typed, expected", [("1e9", 1e9), ("19", 19.0), ("2.5", 2.5), (" 7 ", 7.0), (".5", 0.5)])
def test_cells_are_read_exactly_as_typed(typed, expected):
    assert parse_cells(cells(typed), ISIC)[0, 1] == expected


@pytest.mark.parametrize("typed", ["1,5", "1 000", "1_000", "", "nan", "inf", "twenty", "1e9x"])
def test_cells_that_are_not_plain_numbers_are_refused_naming_the_cell(typed):
    with pytest.raises(ValueError, match=r"cell \[true=MEL, predicted=NV\] reads"):
        parse_cells(cells(typed), ISIC)


def test_a_negative_cell_is_refused_by_the_matrix_check():
    with pytest.raises(ValueError, match="finite number >= 0"):
        parse_cells(cells("-1"), ISIC)


# --- re-decision ------------------------------------------------------------------------------------


def test_redecide_run_counts_match_its_rate_and_the_stored_argmax(home):
    run = rcl.load_run(home / "a-ce")
    matrix = SeverityMatrix.from_penalties(run.taxonomy, 5, 20)
    result = redecide_run(run, matrix)
    expected = rcl.redecide(run.calibrated_probs("test"), run.predictions("test")["labels"], run.taxonomy, matrix)
    assert result["cer"] == expected.cer and result["n"] == expected.n
    assert result["malignant"] > 0 and result["missed"] / result["malignant"] == pytest.approx(result["cer"])
    assert result["argmax"]["cer"] == run.metrics["test"]["cer"]
    assert result["warnings"] == [] and not result["cost_sensitive"]
    text = redecision_text(result)
    assert f"({result['missed']} of {result['malignant']} malignant cases missed)" in text
    assert rcl.decision_rule("bayes") in text


def test_redecide_run_refuses_a_matrix_for_other_classes(home):
    run = rcl.load_run(home / "a-ce")
    with pytest.raises(ValueError, match="use a matrix for the run's classes"):
        redecide_run(run, SeverityMatrix.from_penalties(preset("brain_mri")))


# --- the stakeholder card ---------------------------------------------------------------------------


def all_runs(home):
    return [rcl.load_run(p) for p in sorted(home.iterdir())]


def test_card_of_a_plain_ce_run_shows_no_training_matrix(home):
    run = rcl.load_run(home / "a-ce")
    card = run_card_markdown(run, all_runs(home))
    missed, malignant = rcl.missed_malignant(run.metrics["test"]["confusion"], run.taxonomy)
    assert f"{missed} of {malignant} malignant cases missed" in card
    assert "Training matrix" not in card and "The `ce` loss uses no severity matrix" in card
    assert "layout" not in card and "rule `f1`" not in card and "chosen by best validation F1-macro" in card
    assert "trained from scratch, no ImageNet weights" in card
    assert "on the Pareto front of 3 runs" in card or "dominated among 3 runs" in card  # not 5: other data/images


def test_card_of_an_rcl_run_names_both_matrices(home):
    run = rcl.load_run(home / "b-rcl")
    card = run_card_markdown(run, all_runs(home))
    assert "**Training matrix** (how much the loss penalised" in card
    training = card.split("**Training matrix**")[1]
    assert "| **MEL** | 1 | 20 | 1 | 1 | 20 | 20 | 20 |" in training


def test_card_html_is_self_contained_and_prints(home):
    run = rcl.load_run(home / "a-ce")
    page = run_card_html(run, all_runs(home))
    assert page.startswith("<!doctype html>") and "@media print" in page and "@page" in page
    assert page.count("<svg") == 2 and "class=headline" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    sections = card_sections(run, all_runs(home))
    assert sum(s["box"] for s in sections) == 1


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_frontier_csv_holds_one_splits_runs(home, capsys):
    assert main(["frontier", "--csv"]) == 0
    out = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert {r["id"] for r in rows} == {"a-ce", "b-rcl", "c-focal"}
    assert "not comparable with these" in out.err and "other_data" in out.err
    stored = {r["id"]: r for r in run_rows(home)}
    for row in rows:
        assert float(row["cer"]) == pytest.approx(stored[row["id"]]["cer"])


def test_cli_frontier_unknown_dataset_is_one_line(home, capsys):
    assert main(["frontier", "--data", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished runs with dataset 'nope'" in err


def test_cli_card_and_redecide(home, tmp_path, capsys):
    assert main(["card", "a-ce", "--html"]) == 0
    assert capsys.readouterr().out.startswith("<!doctype html>")
    assert main(["card", str(home / "a-ce"), "--md"]) == 0
    assert capsys.readouterr().out.startswith("# Run card")
    matrix = SeverityMatrix.from_penalties(ISIC, 5, 0)
    (tmp_path / "m.json").write_text(matrix.to_json())
    assert main(["redecide", "a-ce", "--matrix", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert out.strip() == redecision_text(redecide_run(rcl.load_run(home / "a-ce"), matrix))
    assert "warning: β = 0" in out
    assert main(["redecide", "a-ce", "--matrix", str(tmp_path / "m.json"), "--beta", "3"]) == 2
    assert "either --matrix or --alpha/--beta" in capsys.readouterr().err


def test_cli_frontier_without_runs_says_how_to_make_one(capsys):
    assert main(["frontier"]) == 2
    assert "no finished run with stored test predictions yet: train one" in capsys.readouterr().err
