import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl
from rcl.errors import DataWarning
from rcl.severity import (
    SeverityMatrix,
    as_matrix,
    cost_matrix,
    decision_warnings,
    unreachable_classes,
    validate_matrix,
)


def test_paper_matrix_for_isic(toy_taxonomy):
    m = rcl.severity_matrix(toy_taxonomy, alpha=5, beta=20)
    np.testing.assert_array_equal(m, [[1, 1, 5], [1, 1, 5], [20, 20, 1]])


def test_default_is_the_proposed_setting():
    m = rcl.severity_matrix(rcl.preset("isic2018"))
    t = rcl.preset("isic2018")
    assert m[t.index("MEL"), t.index("NV")] == 20
    assert m[t.index("NV"), t.index("MEL")] == 5
    assert m[t.index("NV"), t.index("BKL")] == 1
    assert m[t.index("MEL"), t.index("BCC")] == 1


@given(alpha=st.floats(0, 100), beta=st.floats(0, 100))
def test_matrix_structure_property(alpha, beta):
    t = rcl.preset("isic2018")
    m = rcl.severity_matrix(t, alpha, beta)
    crit = np.array(t.is_critical)
    assert np.all(np.diag(m) == 1)
    assert np.all(m[np.ix_(~crit, crit)] == alpha)
    assert np.all(m[np.ix_(crit, ~crit)] == beta)
    assert np.all(m[np.ix_(crit, crit)] == 1) and np.all(m[np.ix_(~crit, ~crit)] == 1)


def test_per_cell_edit_and_json_round_trip(tmp_path, toy_taxonomy):
    m = SeverityMatrix.from_penalties(toy_taxonomy, 5, 20).with_cell("m", "a", 40)
    assert m.values[2, 0] == 40 and m.values[2, 1] == 20
    assert not m.is_standard
    path = tmp_path / "m.json"
    m.save(path)
    loaded = SeverityMatrix.load(path)
    assert loaded == m and loaded.alpha == 5
    # a file read against the data's taxonomy must fit it
    with pytest.raises(ValueError, match="does not fit the data's classes"):
        SeverityMatrix.load(path, rcl.preset("brain_mri"))


@pytest.mark.parametrize(
    "values, message",
    [
        (np.ones((2, 2)), r"must be 3 × 3 .*got shape \(2, 2\)"),
        ([[1, 1, 1], [1, -1, 1], [1, 1, 1]], r"cell \[true=b, predicted=b\] is -1.0"),
        ([[1, 1, math.nan], [1, 1, 1], [1, 1, 1]], r"cell \[true=a, predicted=m\] is nan"),
        ([[1, 1, 1], [1, 1, 1], [math.inf, 1, 1]], r"cell \[true=m, predicted=a\] is inf"),
        ([["x", 1, 1], [1, 1, 1], [1, 1, 1]], "must be numbers"),
    ],
)
def test_malformed_matrices_name_the_problem(values, message, toy_taxonomy):
    with pytest.raises(ValueError, match=message):
        validate_matrix(values, toy_taxonomy)
    with pytest.raises(ValueError, match=message):
        SeverityMatrix(toy_taxonomy, values)


def test_bad_penalties_and_edits_are_rejected(toy_taxonomy):
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        rcl.severity_matrix(toy_taxonomy, 1, -3)
    m = SeverityMatrix.from_penalties(toy_taxonomy)
    with pytest.raises(ValueError, match=r"\[true=m, predicted=a\] is nan"):
        m.with_cell("m", "a", float("nan"))
    with pytest.raises(ValueError, match="'q' is not in taxonomy"):
        m.with_cell("q", "a", 1)


def test_cost_matrix_zeroes_the_diagonal(toy_taxonomy):
    c = cost_matrix(SeverityMatrix.from_penalties(toy_taxonomy, 2, 9))
    np.testing.assert_array_equal(c, [[0, 1, 2], [1, 0, 2], [9, 9, 0]])
    with pytest.raises(ValueError, match="square"):
        as_matrix(np.ones((2, 3)))


# -- degenerate matrices: refused when every mistake is free, warned when a class can never win --
def test_all_zero_costs_are_refused(toy_taxonomy):
    with pytest.raises(ValueError, match="0 in every off-diagonal cell"):
        SeverityMatrix(toy_taxonomy, np.eye(3))
    with pytest.raises(ValueError, match="0 in every off-diagonal cell"):
        SeverityMatrix.from_dict({"classes": ["a", "b", "m"], "values": np.zeros((3, 3)).tolist()}, toy_taxonomy)


@given(alpha=st.floats(0.01, 100), beta=st.floats(0.01, 100))
def test_standard_matrices_can_answer_every_class(alpha, beta):
    assert unreachable_classes(rcl.severity_matrix(rcl.preset("isic2018"), alpha, beta)) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 6), zeros=st.floats(0, 0.7))
def test_an_unreachable_class_is_never_the_decision(seed, k, zeros):
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.1, 10, (k, k)) * (rng.uniform(size=(k, k)) > zeros)
    np.fill_diagonal(costs, 0)
    never = set(unreachable_classes(costs))
    probs = np.vstack([rng.dirichlet(np.full(k, 0.3), 3000), np.eye(k)])
    expected = probs @ costs
    best = expected.min(axis=1, keepdims=True)
    strict = (expected <= best + 1e-12).sum(axis=1) == 1  # a single cheapest answer
    chosen = set(np.argmin(expected[strict], axis=1).tolist())
    assert not chosen & never
    # a class whose every mistake costs something wins at certainty (p = its one-hot vector)
    assert not {t for t in range(k) if (np.delete(costs[t], t) > 0).all()} & never


def test_matrix_file_where_one_answer_always_wins_is_warned(tmp_path, toy_taxonomy):
    values = rcl.severity_matrix(toy_taxonomy, 5, 20)
    values[:, 2] = 0  # answering the malignant class m never costs anything
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"classes": ["a", "b", "m"], "values": values.tolist()}))
    with pytest.warns(DataWarning, match="answers m for every image: it can never answer a, b"):
        SeverityMatrix.load(path, toy_taxonomy)
    assert decision_warnings(rcl.severity_matrix(toy_taxonomy, 5, 20), toy_taxonomy) == []


def test_penalties_and_for_taxonomy():
    isic, brain = rcl.preset("isic2018"), rcl.preset("brain_mri")
    standard = rcl.SeverityMatrix.from_penalties(isic, 3.0, 42.0)
    assert standard.penalties == (3.0, 42.0)
    assert standard.for_taxonomy(isic) is standard
    moved = standard.for_taxonomy(brain)
    assert moved.taxonomy == brain and moved.penalties == (3.0, 42.0) and moved.is_standard
    custom = rcl.SeverityMatrix(isic, standard.values)  # no α/β recorded: the paper's proposed pair
    assert custom.penalties == (5.0, 20.0)
    assert custom.for_taxonomy(brain) == rcl.SeverityMatrix.from_penalties(brain)
