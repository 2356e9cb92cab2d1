from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rcl.data import load_dataset
from rcl.data.metadata import band, sample_metadata
from rcl.labels.subgroups import MIN_CASES, run_subgroups, subgroup_table
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
