import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl
from rcl.metrics import tier_matrix

# toy: a, b benign; m malignant (index 2)
Y_TRUE = [2, 2, 0, 0, 1, 2]
Y_PRED = [0, 2, 2, 1, 1, 2]  # Type II, correct, Type I, visual ambiguity, correct, correct


def test_evaluate_by_hand(toy_taxonomy):
    e = rcl.evaluate(Y_TRUE, Y_PRED, toy_taxonomy)
    assert e.tiers == {"correct": 3, "visual_ambiguity": 1, "type_1": 1, "type_2": 1}
    assert e.cer == pytest.approx(1 / 3)
    assert e.accuracy == pytest.approx(3 / 6)
    # F1 per class: a = 0, b = 2/3 (P 1/2, R 1), m = 2/3 (P 2/3, R 2/3)
    assert e.f1_macro == pytest.approx(4 / 9)
    assert e.sensitivity == pytest.approx(2 / 3)
    assert e.specificity == pytest.approx(2 / 3)
    assert e.confusion == [[0, 1, 1], [0, 1, 0], [1, 0, 2]]
    assert e.n == 6 and e.to_dict()["classes"] == ["a", "b", "m"]


def test_class_names_are_accepted(toy_taxonomy):
    e = rcl.evaluate(["m", "a"], ["A", "a"], toy_taxonomy)
    assert e.cer == 1.0 and e.tiers["type_2"] == 1


def test_cer_is_undefined_without_malignant_samples(toy_taxonomy):
    e = rcl.evaluate([0, 1, 0], [2, 1, 0], toy_taxonomy)
    assert e.cer is None and e.sensitivity is None
    assert e.specificity == pytest.approx(2 / 3)


def test_tier_matrix_colours_cells(toy_taxonomy):
    np.testing.assert_array_equal(tier_matrix(toy_taxonomy), [[0, 1, 2], [1, 0, 2], [3, 3, 0]])


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([], [], "y_true is empty"),
        ([0, 1], [0], "y_true has 2 samples but y_pred has 1"),
        ([0, 3], [0, 1], "y_true contain 3, out of range for 3 classes"),
        ([0, -1], [0, 1], "y_true contain -1"),
        ([0, 1], [0, "zebra"], "'zebra' is not in taxonomy 'toy'"),
        ([[0, 1]], [[0, 1]], "one-dimensional"),
        ([0.5, 1], [0, 1], "whole class indices"),
    ],
)
def test_bad_labels_are_clear_errors(y_true, y_pred, message, toy_taxonomy):
    with pytest.raises(ValueError, match=message):
        rcl.evaluate(y_true, y_pred, toy_taxonomy)


labels = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(pairs=labels, seed=st.integers(0, 2**16))
def test_metrics_invariant_to_sample_order(pairs, seed):
    taxonomy = rcl.preset("isic2018")
    y_true, y_pred = map(np.array, zip(*pairs))
    order = np.random.default_rng(seed).permutation(len(pairs))
    a = rcl.evaluate(y_true, y_pred, taxonomy).to_dict()
    b = rcl.evaluate(y_true[order], y_pred[order], taxonomy).to_dict()
    assert a.pop("f1_macro") == pytest.approx(b.pop("f1_macro"))
    assert a == b
    assert sum(a["tiers"].values()) == len(pairs)
    if a["cer"] is not None:
        assert a["cer"] == pytest.approx(1 - a["sensitivity"])


def test_pareto_front():
    points = [(0.30, 0.70), (0.10, 0.60), (0.20, 0.55), (0.05, 0.40), (0.10, 0.60), (None, 0.9), (0.4, 0.7)]
    # (0.20, .55) is dominated by (0.10, .60); (0.4, .7) by (0.3, .7); the undefined CER never counts
    assert rcl.pareto_front(points) == [3, 1, 4, 0]
    assert rcl.pareto_front([]) == []
    assert rcl.pareto_front([(math.nan, 0.5)]) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40))
def test_pareto_front_matches_brute_force(points):
    def dominated(p):
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)

    expected = {i for i, p in enumerate(points) if not dominated(p)}
    assert set(rcl.pareto_front(points)) == expected
