"""The noise study's grouping, the suspect gallery's sources and the label-quality display tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rcl.data.images import thumbnail
from rcl.labels.illusion import illusion_display
from rcl.labels.study import noise_groups, noise_of, noise_study, study_display
from rcl.labels.subgroups import subgroup_display, subgroup_table
from rcl.labels.suspects import ISSUES_DIR, read_suspects, saved_suspects, suspect_gallery, suspects_csv
from rcl.taxonomy import Taxonomy

TOY = Taxonomy.from_malignant(["a", "b", "m"], malignant=["m"], name="toy")
RULES = [None, "miss:0", "miss:0.1", "miss:0.2", "symmetric:0.1", "alarm:0.3"]


def row(n: int, loss: str, rule: str | None, seed: int, cer: float, f1: float, split: str = "s1") -> dict:
    return {"id": f"run-{n}", "loss": loss, "loss_label": loss, "label_noise": rule, "seed": seed, "dataset": "d",
            "split": split, "n_test": 100, "cer": cer, "f1_macro": f1, "cer_low": cer / 2, "cer_high": (1 + cer) / 2,
            "f1_low": f1 / 2, "f1_high": (1 + f1) / 2}


rows_strategy = st.lists(st.tuples(st.sampled_from(["ce", "rcl"]), st.sampled_from(RULES), st.integers(0, 3),
                                   st.floats(0, 1), st.floats(0, 1)), max_size=25).map(
    lambda items: [row(n, *item) for n, item in enumerate(items)])


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_every_run_is_one_point_of_each_curve_it_belongs_to(rows):
    points = noise_study(rows)
    noisy = [r for r in rows if noise_of(r)[0] is not None]
    assert bool(points) == bool(noisy)
    curves = {(p["loss"], p["kind"]) for p in points}
    assert curves == {(r["loss"], noise_of(r)[0]) for r in noisy}  # no curve without a noisy run
    # each noisy run in exactly one point; each clean run at rate 0 of every curve of its loss
    assert sorted(i for p in points if p["rate"] > 0 for i in p["ids"]) == sorted(r["id"] for r in noisy)
    for loss, kind in curves:
        clean = sorted(r["id"] for r in rows if r["loss"] == loss and noise_of(r)[0] is None)
        zero = [p for p in points if (p["loss"], p["kind"], p["rate"]) == (loss, kind, 0.0)]
        assert [sorted(p["ids"]) for p in zero] == ([clean] if clean else [])
    for p in points:
        members = [r for r in rows if r["id"] in p["ids"]]
        assert p["runs"] == len(members) and p["cer"] == pytest.approx(np.mean([r["cer"] for r in members]))
        if p["runs"] > 1:  # several seeds: the bar is their range, and holds the mean
            assert (p["cer_low"], p["cer_high"]) == (min(r["cer"] for r in members), max(r["cer"] for r in members))
            assert p["cer_low"] - 1e-12 <= p["cer"] <= p["cer_high"] + 1e-12
            assert p["interval"] == f"range over {p['runs']} runs"
        else:  # one run: its own bootstrap interval
            assert (p["f1_low"], p["f1_high"]) == (members[0]["f1_low"], members[0]["f1_high"])
    assert points == sorted(points, key=lambda p: (p["loss"], p["kind"], p["rate"]))
    assert len(study_display(points)) == len(points)


def test_a_zero_rate_is_clean_and_a_missing_cer_is_left_out():
    rows = [row(0, "ce", "miss:0", 0, 0.1, 0.5), row(1, "ce", "miss:0.2", 0, 0.3, 0.4),
            row(2, "ce", "miss:0.2", 1, 0.5, 0.2)]
    rows[2]["cer"] = None
    points = noise_study(rows)
    assert [(p["kind"], p["rate"], p["runs"]) for p in points] == [("miss", 0.0, 1), ("miss", 0.2, 2)]
    assert points[1]["cer"] == 0.3 and points[1]["f1_macro"] == pytest.approx(0.3)
    shown = study_display(points)[1]
    assert shown["CER"] == "30.0%" and shown["rate"] == "20%" and shown["F1 interval"] == "0.200 – 0.400"


def test_noise_groups_keep_only_splits_with_noisy_runs():
    rows = [row(0, "ce", None, 0, 0.1, 0.5, "s1"), row(1, "ce", "miss:0.1", 0, 0.2, 0.5, "s2"),
            row(2, "ce", "alarm:0.1", 0, 0.2, 0.5, "s2"), row(3, "ce", None, 0, 0.1, 0.5, "s2")]
    groups = noise_groups(rows)
    assert [(g["split"], g["runs"], g["noisy"]) for g in groups] == [("s2", 3, 2)]
    assert groups[0]["label"].endswith("· 3 runs · 2 with label noise")


def test_a_bad_noise_rule_in_a_row_is_one_clear_line():
    with pytest.raises(ValueError, match="unknown kind 'flip'"):
        noise_study([row(0, "ce", "flip:0.1", 0, 0.1, 0.5)])


# --- suspects ------------------------------------------------------------------------------------

SUSPECTS = {"source": "test", "method": "cleanlab", "n": 10, "flagged": 3, "misses": 1, "rows": [
    {"id": "x/1.png", "given": "b", "suggested": "a", "score": 0.1, "p_malignant": 0.1, "is_miss": False},
    {"id": "x/2.png", "given": "a", "suggested": "m", "score": 0.3, "p_malignant": 0.8, "is_miss": True},
    {"id": "x/3.png", "given": "m", "suggested": "a", "score": 0.2, "p_malignant": 0.3, "is_miss": False}]}


def test_gallery_puts_misses_first_and_finds_only_existing_images(tmp_path):
    (tmp_path / "x").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "x" / "2.png")
    rows = suspect_gallery(SUSPECTS, tmp_path)
    assert [r["id"] for r in rows] == ["x/2.png", "x/1.png", "x/3.png"]
    assert [r["path"] for r in rows] == [str(tmp_path / "x" / "2.png"), None, None]
    assert suspect_gallery({**SUSPECTS, "root": str(tmp_path / "nowhere")}, tmp_path)[0]["path"] is None  # its own root wins
    assert suspects_csv(rows).splitlines() == ["id,given,suggested,score,p_malignant,is_miss", "x/2.png,a,m,0.3,0.8,True",
                                               "x/1.png,b,a,0.1,0.1,False", "x/3.png,m,a,0.2,0.3,False"]


def test_saved_rankings_are_found_and_checked(tmp_path):
    (tmp_path / ISSUES_DIR).mkdir()
    (tmp_path / "run-1").mkdir()
    (tmp_path / ISSUES_DIR / "oof.json").write_text(json.dumps(SUSPECTS))
    (tmp_path / "run-1" / "label_issues.json").write_text(json.dumps({"rows": [{"id": "only"}]}))
    (tmp_path / ISSUES_DIR / "notes.txt").write_text("x")
    found = saved_suspects(tmp_path)
    assert found == [tmp_path / ISSUES_DIR / "oof.json", tmp_path / "run-1" / "label_issues.json"]
    assert read_suspects(found[0]) == SUSPECTS
    with pytest.raises(ValueError, match=r"^label_issues.json is not a label-issue result: expected the JSON of "
                                         r"`rcl label-issues --json` \(rows with id, given, suggested, score"):
        read_suspects(found[1])
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="^bad.json cannot be read as a label-issue result"):
        read_suspects(tmp_path / "bad.json")


def test_thumbnail_fits_the_box_and_keeps_the_aspect(tmp_path):
    Image.new("L", (400, 100)).save(tmp_path / "wide.png")
    small = thumbnail(tmp_path / "wide.png", 64)
    assert small.size == (64, 16) and small.mode == "RGB"
    with pytest.raises(ValueError, match="is not a readable image"):
        thumbnail(tmp_path / "missing.png")


# --- display tables -------------------------------------------------------------------------------


def test_subgroup_display_names_gaps_and_unestimated_groups():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1, 2], 140)
    pred = y.copy()
    pred[:210][(y[:210] == 2) & (rng.random(210) < 0.6)] = 0  # group "g1" misses most malignant cases
    groups = ["g1"] * 210 + ["g2"] * 200 + ["g3"] * 10
    result = {"groups": subgroup_table(y, pred, groups, TOY, seed=1)}
    shown = {r["group"]: r for r in subgroup_display(result)}
    g1 = result["groups"][0]["cer"]
    assert shown["g1"]["CER"] == f"{100 * g1['value']:.1f}% (95% CI {100 * g1['low']:.1f}% – {100 * g1['high']:.1f}%)"
    assert shown["g1"]["gap"].startswith(f"CER {100 * g1['diff']:+.1f} pts vs the rest")
    assert shown["g2"]["gap"].startswith("CER -") and shown["g2"]["note"] == ""
    assert shown["g3"] == {"group": "g3", "cases": 10, "malignant": 4, "CER": "not estimated", "F1-macro": "not estimated",
                           "sensitivity": "not estimated",
                           "gap": "", "note": "10 cases < 30: not estimated"}


def test_illusion_display_sets_the_two_sides_beside_the_change():
    side = {"cer": {"value": 0.1, "low": 0.05, "high": 0.2}, "f1_macro": {"value": 0.6, "low": 0.5, "high": 0.7},
            "accuracy": {"value": 0.8, "low": None, "high": None}, "n_malignant": 40}
    noisy = {**side, "cer": {"value": 0.04, "low": 0.01, "high": 0.09}, "n_malignant": 36}
    rows = illusion_display({"clean": side, "noisy": noisy})
    assert rows[0] == {"metric": "CER", "clean test labels": "10.0% (95% CI 5.0% – 20.0%)",
                       "noisy test labels": "4.0% (95% CI 1.0% – 9.0%)", "change": "-6.0 pts"}
    assert rows[2]["clean test labels"] == "80.0%" and rows[1]["change"] == "+0.000"
    assert rows[3]["change"] == "-4" and rows[3]["noisy test labels"] == "36"
