from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rcl.data import load_dataset
from rcl.data.metadata import band, sample_metadata
from rcl.labels.subgroups import (
    MIN_CASES,
    NOT_DESCRIBED,
    dataset_metadata,
    run_subgroups,
    subgroup_table,
    suspect_rate_table,
    suspect_rates,
)
from rcl.metrics import evaluate
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import bootstrap_ci

TOY = Taxonomy.from_malignant(["a", "b", "m"], malignant=["m"], name="toy")


def _case(rng, n, miss_rate):
    """n cases, a third malignant; malignant ones called benign with probability miss_rate."""
    y = rng.choice(3, n, p=[0.35, 0.3, 0.35])
    pred = y.copy()
    malignant = y == 2
    pred[malignant & (rng.random(n) < miss_rate)] = 0
    benign_noise = ~malignant & (rng.random(n) < 0.15)
    pred[benign_noise] = 1 - pred[benign_noise]
    return y, pred


@pytest.fixture
def fabricated():
    rng = np.random.default_rng(0)
    parts = [_case(rng, 400, 0.05), _case(rng, 300, 0.45), _case(rng, 12, 0.1)]
    y = np.concatenate([p[0] for p in parts])
    pred = np.concatenate([p[1] for p in parts])
    groups = np.array(["histo"] * 400 + ["follow_up"] * 300 + ["confocal"] * 12)
    return y, pred, groups


def test_subgroup_intervals_match_a_direct_bootstrap(fabricated):
    y, pred, groups = fabricated
    rows = {r["group"]: r for r in subgroup_table(y, pred, groups, TOY, n_resamples=2000, seed=3)}
    inside = groups == "follow_up"
    row = rows["follow_up"]
    assert row["n"] == 300 and row["n_malignant"] == int((y[inside] == 2).sum())
    assert row["cer"]["value"] == pytest.approx(evaluate(y[inside], pred[inside], TOY).cer)
    same = bootstrap_ci(y[inside], pred[inside], TOY, n_resamples=2000, seed=3)
    assert (row["cer"]["low"], row["cer"]["high"]) == (same["cer"]["low"], same["cer"]["high"])
    # A plain index bootstrap (resample the cases, recompute) gives the same interval within noise.
    rng = np.random.default_rng(11)
    yi, pi = y[inside], pred[inside]
    draws = [rng.integers(0, yi.size, yi.size) for _ in range(2000)]
    scores = [evaluate(yi[d], pi[d], TOY) for d in draws]
    cer, sens = [s.cer for s in scores], [s.sensitivity for s in scores]
    assert np.quantile(cer, [0.025, 0.975]) == pytest.approx([row["cer"]["low"], row["cer"]["high"]], abs=0.02)
    assert np.quantile(sens, [0.025, 0.975]) == pytest.approx(
        [row["sensitivity"]["low"], row["sensitivity"]["high"]], abs=0.02)


def test_gap_flagged_when_the_difference_excludes_zero(fabricated):
    y, pred, groups = fabricated
    rows = {r["group"]: r for r in subgroup_table(y, pred, groups, TOY, seed=0)}
    assert rows["follow_up"]["cer"]["gap"] and rows["follow_up"]["cer"]["diff"] > 0.25
    assert rows["histo"]["cer"]["gap"] and rows["histo"]["cer"]["diff"] < 0
    assert rows["follow_up"]["cer"]["diff_low"] > 0


def test_too_small_subgroup_is_reported_not_estimated(fabricated):
    y, pred, groups = fabricated
    rows = {r["group"]: r for r in subgroup_table(y, pred, groups, TOY)}
    small = rows["confocal"]
    assert small["n"] == 12 and small["too_small"] == f"12 cases < {MIN_CASES}: not estimated"
    assert "cer" not in small and "f1_macro" not in small


def test_few_malignant_cases_leave_cer_unestimated():
    y = np.array([0, 1] * 30 + [2] * 4)
    rows = subgroup_table(y, y, ["g"] * y.size, TOY)
    assert rows[0]["cer"] is None and rows[0]["f1_macro"]["value"] == 1.0
    assert "4 malignant cases < 10" in rows[0]["too_small"]


def test_metadata_of_a_csv_layout_by_sample_id(tmp_path):
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"img{i}.png")
    pd.DataFrame({"path": [f"img{i}.png" for i in range(6)], "label": ["a", "b", "m"] * 2,
                  "site": ["back", "face"] * 3, "age": [10, 20, 30, 40, 50, 60]}).to_csv(tmp_path / "data.csv", index=False)
    table = load_dataset(tmp_path / "data.csv", taxonomy=TOY)
    meta = sample_metadata(table)
    assert list(meta.columns) == ["site", "age"]
    assert meta.loc["img3.png", "site"] == "face" and meta.loc["img4.png", "age"] == "50"
    banded = band(pd.Series([str(a) for a in range(0, 90, 5)]))
    assert banded.nunique() == 4


def test_unknown_by_column_is_one_clear_line(capsys):
    run = SimpleNamespace(train={"data": "synthetic"}, taxonomy=Taxonomy.from_malignant(
        ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"], ["MEL", "BCC", "AKIEC"]))
    with pytest.raises(ValueError, match=r"^--by 'sex': the dataset 'synthetic' has no such metadata column "
                                         r"\(columns it has: none\)$"):
        run_subgroups(run, "sex")


def test_suspect_rate_intervals_match_a_direct_bootstrap():
    rng = np.random.default_rng(2)
    flagged = np.concatenate([rng.random(500) < 0.05, rng.random(200) < 0.30, rng.random(20) < 0.5])
    groups = np.array(["histo"] * 500 + ["follow_up"] * 200 + ["confocal"] * 20)
    rows = {r["group"]: r for r in suspect_rate_table(flagged, groups, n_resamples=4000, seed=1)}
    assert [r["group"] for r in suspect_rate_table(flagged, groups)] == ["histo", "follow_up", "confocal"]
    follow = rows["follow_up"]
    inside = groups == "follow_up"
    assert (follow["n"], follow["flagged"]) == (200, int(flagged[inside].sum()))
    assert follow["rate"]["value"] == pytest.approx(flagged[inside].mean())
    # Resampling the labels themselves (indices with replacement) gives the same interval within noise.
    own, rest = flagged[inside], flagged[~inside]
    draws = rng.integers(0, own.size, (4000, own.size))
    rate = own[draws].mean(axis=1)
    assert np.quantile(rate, [0.025, 0.975]) == pytest.approx([follow["rate"]["low"], follow["rate"]["high"]], abs=0.01)
    diff = rate - rest[rng.integers(0, rest.size, (4000, rest.size))].mean(axis=1)
    assert np.quantile(diff, [0.025, 0.975]) == pytest.approx(
        [follow["rate"]["diff_low"], follow["rate"]["diff_high"]], abs=0.01)
    assert follow["rate"]["gap"] and follow["rate"]["diff"] > 0.15  # 30% against about 6%
    assert "rate" not in rows["confocal"] and rows["confocal"]["too_small"] == f"20 labels < {MIN_CASES}: not estimated"


def test_suspect_rates_within_each_given_class_compare_like_with_like():
    # Nevi confirmed by follow-up are rarely flagged, biopsied ones often; the malignant class is
    # all histopathology: no within-class comparison for it.
    ids = [f"s{i}" for i in range(300)]
    given = np.array(["NV"] * 200 + ["MEL"] * 100)
    dx = pd.Series(["follow_up"] * 100 + ["histo"] * 200, index=ids)
    flagged_ids = ids[95:100] + ids[100:140] + ids[200:260]  # 5 of 100 follow-up NV, 40 of 100 histo NV, 60 of 100 MEL
    result = suspect_rates(ids, flagged_ids, dx, "dx_type", given=given)
    overall = {r["group"]: r["rate"]["value"] for r in result["groups"]}
    assert overall == {"histo": pytest.approx(100 / 200), "follow_up": pytest.approx(0.05)}
    assert list(result["within_class"]) == ["NV"]
    nevi = {r["group"]: r["rate"] for r in result["within_class"]["NV"]}
    assert nevi["histo"]["value"] == pytest.approx(0.40) and nevi["follow_up"]["value"] == pytest.approx(0.05)
    assert nevi["follow_up"]["gap"] and nevi["follow_up"]["diff"] == pytest.approx(-0.35)


def test_no_flag_in_a_group_is_not_a_gap_by_itself():
    # 0 of 30 flagged against 40 of 1000: Fisher's exact test p = 0.63. A bootstrap of the flags would
    # give the group a zero-width interval and call the difference a gap.
    flagged = np.concatenate([np.zeros(30, bool), np.arange(1000) < 40])
    groups = ["small"] * 30 + ["large"] * 1000
    rows = {r["group"]: r["rate"] for r in suspect_rate_table(flagged, groups)}
    assert rows["small"]["value"] == 0 and rows["small"]["low"] == pytest.approx(0, abs=1e-3)
    assert rows["small"]["high"] > 0.05 and not rows["small"]["gap"] and not rows["large"]["gap"]


def test_the_same_labels_get_the_same_interval_in_every_table_and_unknown_ids_are_named():
    ids = [f"s{i}" for i in range(300)]
    given = ["NV"] * 200 + ["MEL"] * 100
    dx = pd.Series(["follow_up"] * 100 + ["histo"] * 150, index=ids[:250])  # the last 50 ids: no metadata row
    result = suspect_rates(ids, ids[95:100] + ids[100:140], dx, "dx_type", given=given)
    overall = {r["group"]: r for r in result["groups"]}
    within = {r["group"]: r for r in result["within_class"]["NV"]}
    assert (overall["follow_up"]["rate"]["low"], overall["follow_up"]["rate"]["high"]) == (
        within["follow_up"]["rate"]["low"], within["follow_up"]["rate"]["high"])
    assert overall[NOT_DESCRIBED]["n"] == 50


def test_metadata_of_a_csv_whose_labels_are_annotator_columns(tmp_path):
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"img{i}.png")
    pd.DataFrame({"path": [f"img{i}.png" for i in range(6)], "dr_a": ["a", "b", "m"] * 2, "dr_b": ["a", "m", "m"] * 2,
                  "site": ["back", "face"] * 3}).to_csv(tmp_path / "votes.csv", index=False)
    meta = dataset_metadata(tmp_path / "votes.csv", taxonomy=TOY, label_columns=["dr_a", "dr_b"])
    assert meta.loc["img1.png", "site"] == "face"
