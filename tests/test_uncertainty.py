
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl
from rcl.uncertainty import confusion_metrics

ISIC = rcl.preset("isic2018")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60))
def test_confusion_metrics_match_evaluate(pairs):
    y_true, y_pred = map(np.array, zip(*pairs))
    e = rcl.evaluate(y_true, y_pred, ISIC)
    m = confusion_metrics(np.array([e.confusion, e.confusion]), ISIC)  # a stack of two
    assert m["f1_macro"][1] == pytest.approx(e.f1_macro)
    assert m["accuracy"][1] == pytest.approx(e.accuracy)
    assert (e.cer is None and np.isnan(m["cer"][1])) or m["cer"][1] == pytest.approx(e.cer)


def predictions(seed: int, n: int, miss_rate: float = 0.2):
    """Toy (a, b benign; m malignant): a third malignant, each missed with ``miss_rate``."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice(3, size=n, p=[0.4, 0.27, 0.33])
    y_pred = y_true.copy()
    missed = (y_true == 2) & (rng.random(n) < miss_rate)
    y_pred[missed] = rng.integers(0, 2, missed.sum())
    confused = (y_true < 2) & (rng.random(n) < 0.2)
    y_pred[confused] = rng.integers(0, 3, confused.sum())
    return y_true, y_pred


def test_interval_brackets_the_value_and_is_seeded(toy_taxonomy):
    y_true, y_pred = predictions(0, 500)
    ci = rcl.bootstrap_ci(y_true, y_pred, toy_taxonomy, seed=3)
    for name in ("cer", "f1_macro", "accuracy"):
        assert ci[name]["low"] < ci[name]["value"] < ci[name]["high"]
        assert ci[name]["resamples_used"] == 1000
    assert ci["cer"]["value"] == rcl.evaluate(y_true, y_pred, toy_taxonomy).cer
    assert rcl.bootstrap_ci(y_true, y_pred, toy_taxonomy, seed=3) == ci
    assert rcl.bootstrap_ci(y_true, y_pred, toy_taxonomy, seed=4)["cer"]["low"] != ci["cer"]["low"]
    narrower = rcl.bootstrap_ci(y_true, y_pred, toy_taxonomy, confidence=0.5, seed=3)["cer"]
    assert ci["cer"]["low"] < narrower["low"] < narrower["high"] < ci["cer"]["high"]


def test_ci_covers_the_population_cer():
    """200 datasets from a known process (population CER = 0.2): the 95% CI covers it ≥ 90% of the time."""
    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"], name="toy")
    hits = 0
    for trial in range(200):
        y_true, y_pred = predictions(1000 + trial, 300)
        ci = rcl.bootstrap_ci(y_true, y_pred, taxonomy, n_resamples=500, seed=trial)["cer"]
        hits += ci["low"] <= 0.2 <= ci["high"]
    assert hits / 200 >= 0.9


def test_cer_interval_is_none_when_undefined_or_too_thin(toy_taxonomy):
    ci = rcl.bootstrap_ci([0, 1, 0, 1], [0, 2, 0, 1], toy_taxonomy)
    assert ci["cer"] == {"value": None, "low": None, "high": None, "resamples_used": 0}
    assert ci["accuracy"]["value"] == 0.75 and ci["accuracy"]["low"] is not None
    # One malignant case among 200: ~37% of resamples have none, too many to drop.
    y_true = np.zeros(200, dtype=int)
    y_true[0] = 2
    ci = rcl.bootstrap_ci(y_true, y_true, toy_taxonomy)["cer"]
    assert ci["value"] == 0.0 and ci["low"] is None and 500 < ci["resamples_used"] < 800


def test_paired_difference(toy_taxonomy):
    y_true, safe = predictions(2, 600, miss_rate=0.05)
    _, risky = predictions(2, 600, miss_rate=0.3)
    result = rcl.paired_difference(y_true, risky, safe, toy_taxonomy, metric="cer")
    assert result["diff"] == pytest.approx(result["value_a"] - result["value_b"]) and result["diff"] > 0
    assert result["significant"] and result["low"] > 0
    same = rcl.paired_difference(y_true, safe, safe, toy_taxonomy, metric="f1_macro")
    assert same["diff"] == same["low"] == same["high"] == 0 and not same["significant"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_resamples": 10}, "n_resamples must be a whole number >= 100"),
        ({"confidence": 95}, r"confidence must be in \(0, 1\)"),
        ({"metric": "auc"}, "metric must be one of cer, f1_macro, accuracy"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message, toy_taxonomy):
    with pytest.raises(ValueError, match=message):
        rcl.paired_difference([0, 2], [0, 2], [0, 1], toy_taxonomy, **kwargs)


def test_length_mismatch_is_a_clear_error(toy_taxonomy):
    with pytest.raises(ValueError, match="label arrays differ in length"):
        rcl.bootstrap_ci([0, 2, 1], [0, 2], toy_taxonomy)
