import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, f1_score

import rcl
from rcl.calibration import softmax
from rcl.decision import DEFAULT_ALPHAS, DEFAULT_BETAS

ISIC = rcl.preset("isic2018")


def random_probs(seed: int, n: int, k: int, concentration: float) -> np.ndarray:
    """Dirichlet rows; rounding to 2 decimals on odd seeds creates exact ties to exercise tie-breaks."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, concentration), size=n)
    if seed % 2:
        probs = np.round(probs, 2) + 1e-12
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def synthetic(seed: int, n: int = 2000, taxonomy=ISIC, signal: float = 2.0):
    """Informative but imperfect probabilities: logits = signal · one-hot(label) + noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, taxonomy.num_classes, n)
    logits = signal * np.eye(taxonomy.num_classes)[labels] + rng.normal(size=(n, taxonomy.num_classes))
    return softmax(logits), labels


# --- decide ---------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 8),
    concentration=st.sampled_from([0.05, 0.5, 1.0, 5.0]),
    cost=st.floats(0.01, 100),
    diagonal=st.floats(0, 10),
)
def test_identity_like_matrix_is_argmax(seed, k, concentration, cost, diagonal):
    probs = random_probs(seed, 50, k, concentration)
    matrix = cost * (1 - np.eye(k)) + diagonal * np.eye(k)  # the diagonal never matters
    np.testing.assert_array_equal(rcl.decide(probs, matrix), probs.argmax(axis=1))


def test_bayes_by_hand_picks_a_non_argmax_class(toy_taxonomy):
    # classes a, b benign, m malignant; α = 5, β = 20: C = [[0, 1, 5], [1, 0, 5], [20, 20, 0]]
    probs = [[0.5, 0.2, 0.3], [0.9, 0.08, 0.02]]
    matrix = rcl.SeverityMatrix.from_penalties(toy_taxonomy, alpha=5, beta=20)
    # answer a: 0.2·1 + 0.3·20 = 6.2; b: 0.5 + 6 = 6.5; m: (0.5 + 0.2)·5 = 3.5
    np.testing.assert_allclose(rcl.expected_costs(probs, matrix)[0], [6.2, 6.5, 3.5])
    # second row: a 0.08 + 0.4 = 0.48, b 0.9 + 0.4 = 1.3, m 4.9
    np.testing.assert_array_equal(rcl.decide(probs, matrix), [2, 0])


def test_ties_go_to_the_lowest_index(toy_taxonomy):
    matrix = rcl.severity_matrix(toy_taxonomy, alpha=1, beta=3)
    # a and b tie exactly (0.45 + 3·0.1 = 0.75 each); m costs 0.9·1
    probs = [[0.45, 0.45, 0.1]]
    assert rcl.expected_costs(probs, matrix)[0, 0] == rcl.expected_costs(probs, matrix)[0, 1]
    assert rcl.decide(probs, matrix).tolist() == [0]


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    concentration=st.sampled_from([0.1, 0.5, 1.0, 3.0]),
    alpha=st.sampled_from([0.5, 1, 2, 5, 10]),
    beta_1=st.floats(0.1, 50),
    step=st.floats(0.01, 50),
)
def test_raising_beta_never_raises_cer(seed, concentration, alpha, beta_1, step):
    """Raising β only makes benign answers costlier, so the malignant calls can only grow.

    Holds exactly, ties included: the within-superclass choice does not depend on β, float
    sums are monotone in each term, and a malignant answer that won a tie keeps winning it.
    """
    probs = random_probs(seed, 200, ISIC.num_classes, concentration)
    labels = np.random.default_rng(seed + 1).integers(0, ISIC.num_classes, 200)
    cer = [
        rcl.redecide(probs, labels, ISIC, rcl.severity_matrix(ISIC, alpha, beta)).cer
        for beta in (beta_1, beta_1 + step)
    ]
    assert cer[1] <= cer[0]


@pytest.mark.parametrize(
    "probs, matrix, message",
    [
        ([[0.5, 0.5]], np.ones((3, 3)), "matrix is 3 × 3 but probs has 2 classes"),
        ([[0.5, np.nan]], np.ones((2, 2)), "NaN"),
        ([[1.2, -0.2]], np.ones((2, 2)), "must be >= 0"),
        (np.zeros((0, 2)), np.ones((2, 2)), "empty"),
        ([[0.5, 0.6]], np.ones((2, 2)), "rows must sum to 1"),
        ([0.5, 0.5], np.ones((2, 2)), r"\(N, K\) array"),
        ([[0.5, 0.5]], [[1, -1], [1, 1]], "finite and >= 0"),
        ([[0.5, 0.5]], [[1, np.inf], [1, 1]], "finite and >= 0"),
        ([[0.5, 0.5]], np.ones((2, 3)), "square"),
    ],
)
def test_bad_input_is_a_clear_error(probs, matrix, message):
    with pytest.raises(ValueError, match=message):
        rcl.decide(probs, matrix)


def test_redecide_checks_the_matrix_against_the_taxonomy(toy_taxonomy):
    with pytest.raises(ValueError, match="must be 3 × 3 for taxonomy 'toy'"):
        rcl.redecide([[0.2, 0.3, 0.5]], [2], toy_taxonomy, np.ones((2, 2)))
    with pytest.raises(ValueError, match="3 columns but there are 7 classes"):
        rcl.redecide([[0.2, 0.3, 0.5]], [2], ISIC, rcl.severity_matrix(ISIC))


def test_redecide_is_evaluate_of_decide():
    probs, labels = synthetic(0)
    matrix = rcl.SeverityMatrix.from_penalties(ISIC, 5, 20)
    assert rcl.redecide(probs, labels, ISIC, matrix) == rcl.evaluate(labels, rcl.decide(probs, matrix), ISIC)
    # The Bayes rule trades false alarms for misses.
    argmax = rcl.evaluate(labels, probs.argmax(axis=1), ISIC)
    bayes = rcl.redecide(probs, labels, ISIC, matrix)
    assert bayes.cer < argmax.cer and bayes.tiers["type_1"] > argmax.tiers["type_1"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=80))
def test_fast_evaluate_matches_scikit_learn(pairs):
    """rcl.evaluate counts with np.bincount now; its F1/confusion must equal scikit-learn's."""
    y_true, y_pred = map(np.array, zip(*pairs))
    e = rcl.evaluate(y_true, y_pred, ISIC)
    assert e.f1_macro == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert e.confusion == confusion_matrix(y_true, y_pred, labels=np.arange(7)).tolist()


# --- sweep and frontier ---------------------------------------------------------------------------
def test_sweep_grid():
    probs, labels = synthetic(1, n=500)
    rows = rcl.sweep(probs, labels, ISIC, alphas=[1, 5], betas=[1, 20, 50])
    assert [(r["alpha"], r["beta"]) for r in rows] == [(1, 1), (1, 20), (1, 50), (5, 1), (5, 20), (5, 50)]
    assert set(rows[0]) == {"alpha", "beta", "cer", "f1_macro", "accuracy", "tiers"}
    assert rows[0]["cer"] == rcl.evaluate(labels, probs.argmax(axis=1), ISIC).cer  # α = β = 1 is argmax
    with pytest.raises(ValueError, match="betas is empty"):
        rcl.sweep(probs, labels, ISIC, alphas=[1], betas=[])


def test_frontier_over_runs():
    entries = []
    for seed, loss in [(2, "ce"), (3, "rcl")]:
        probs, labels = synthetic(seed, n=400, signal=1.5 + seed / 2)
        entries.append(
            {"run_id": f"run{seed}", "loss": loss, "probs": probs, "labels": labels, "taxonomy": ISIC}
        )
    points = rcl.frontier(entries)
    per_run = 1 + len(DEFAULT_ALPHAS) * len(DEFAULT_BETAS)
    assert len(points) == 2 * per_run
    assert points[0]["decision"] == "argmax" and points[0]["alpha"] is None
    assert points[1]["decision"] == "bayes α=1 β=1"
    assert set(points[0]) == {
        "run_id",
        "loss",
        "decision",
        "alpha",
        "beta",
        "cer",
        "f1_macro",
        "accuracy",
        "pareto",
    }
    front = set(rcl.pareto_front([(p["cer"], p["f1_macro"]) for p in points]))
    assert {i for i, p in enumerate(points) if p["pareto"]} == front and front


def test_frontier_errors(toy_taxonomy):
    with pytest.raises(ValueError, match="at least one run"):
        rcl.frontier([])
    with pytest.raises(ValueError, match="lacks labels, taxonomy"):
        rcl.frontier([{"run_id": "x", "loss": "ce", "probs": [[1.0, 0.0, 0.0]]}])
    probs, labels = synthetic(0, n=20)
    base = {"loss": "ce", "probs": probs, "labels": labels}
    toy = {"run_id": "toy", "loss": "ce", "probs": [[1.0, 0.0, 0.0]], "labels": [0], "taxonomy": toy_taxonomy}
    with pytest.raises(ValueError, match="'toy' has a different taxonomy"):
        rcl.frontier([{**base, "run_id": "isic", "taxonomy": ISIC}, toy])


# --- referral -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.0, 0.02, 0.1])
def test_referral_meets_its_target_on_the_fitting_data(target):
    probs, labels = synthetic(4, n=1500, signal=1.5)
    assert rcl.evaluate(labels, probs.argmax(axis=1), ISIC).cer > 0.1
    rule = rcl.fit_referral(probs, labels, ISIC, target_cer=target)
    report = rcl.referral_report(rule, probs, labels, ISIC)
    assert rule.met_target
    assert 0 < report["coverage"] <= 1 and report["coverage"] == pytest.approx(rule.coverage)
    assert report["cer_accepted"] is None or report["cer_accepted"] <= target
    assert report["n_referred"] + report["n_accepted"] == 1500
    assert rule.low <= rule.high


def test_referral_band_and_decisions():
    probs, labels = synthetic(5, n=800, signal=1.5)
    matrix = rcl.severity_matrix(ISIC, 2, 5)
    assert rcl.redecide(probs, labels, ISIC, matrix).cer > 0.02  # Bayes alone does not reach the target
    rule = rcl.fit_referral(probs, labels, ISIC, target_cer=0.02, decision_matrix=matrix)
    assert rule.met_target and rule.low is not None
    decisions, referred = rcl.apply_referral(rule, probs)
    np.testing.assert_array_equal(decisions, rcl.decide(probs, matrix))  # outside the band: Bayes
    p_malignant = probs[:, list(ISIC.is_critical)].sum(axis=1)
    in_band = (p_malignant >= rule.low) & (p_malignant <= rule.high)
    benign_above = ~np.asarray(ISIC.is_critical)[decisions] & (p_malignant > rule.high)
    np.testing.assert_array_equal(referred, in_band | benign_above)
    assert referred.mean() == pytest.approx(1 - rule.coverage)
    again = rcl.ReferralRule.from_dict(json.loads(json.dumps(rule.to_dict())))
    assert again == rule
    np.testing.assert_array_equal(rcl.apply_referral(again, probs)[1], referred)


def test_referral_not_needed_and_not_reachable():
    probs, labels = synthetic(6, n=300)
    rule = rcl.fit_referral(probs, labels, ISIC, target_cer=1.0)
    assert rule.met_target
    decisions, referred = rcl.apply_referral(rule, probs)
    p_malignant = probs[:, list(ISIC.is_critical)].sum(axis=1)
    benign = ~np.asarray(ISIC.is_critical)[decisions]
    # the widest coverage: referring at most the likely malignancies decided benign
    assert referred.sum() <= (benign & (p_malignant > 0.5)).sum()
    assert not referred[~benign].any()
    # Every case: melanoma truth, 60% malignant mass spread thin, argmax says nevus: a likely
    # malignancy decided benign is always referred, so nothing is left to answer.
    probs = np.tile([0.2, 0.4, 0.2, 0.2, 0, 0, 0], (5, 1))
    rule = rcl.fit_referral(probs, [0] * 5, ISIC, target_cer=0.1)
    assert rule.coverage == 0 and rule.cer_accepted is None
    assert rcl.apply_referral(rule, probs)[1].all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), target=st.sampled_from([0.0, 0.05, 0.2]), scale=st.sampled_from([0.0, 1.0]))
def test_referral_never_sends_a_likely_malignancy_home(seed, target, scale):
    """Whatever the band: a benign decision above it is referred, and the coverage the fit reports is
    the coverage its own rule gives."""
    probs, labels = synthetic(seed, n=200, signal=1.0)
    matrix = rcl.scaled_matrix(rcl.severity_matrix(ISIC, 2, 5), scale)
    rule = rcl.fit_referral(probs, labels, ISIC, target_cer=target, decision_matrix=matrix)
    decisions, referred = rcl.apply_referral(rule, probs)
    p_malignant = probs[:, list(ISIC.is_critical)].sum(axis=1)
    ceiling = 0.5 if rule.high is None else rule.high
    answered_benign = ~referred & ~np.asarray(ISIC.is_critical)[decisions]
    assert (p_malignant[answered_benign] <= ceiling).all()
    assert referred.mean() == pytest.approx(1 - rule.coverage)
    report = rcl.referral_report(rule, probs, labels, ISIC)
    assert report["cer_accepted"] == pytest.approx(rule.cer_accepted) if rule.cer_accepted is not None \
        else report["cer_accepted"] in (None, 0.0)


def test_referral_errors(toy_taxonomy):
    probs, labels = synthetic(7, n=50)
    with pytest.raises(ValueError, match=r"target_cer must be a rate in \[0, 1\]"):
        rcl.fit_referral(probs, labels, ISIC, target_cer=5)
    with pytest.raises(ValueError, match="no malignant case"):
        rcl.fit_referral(probs, np.full(50, 1), ISIC, target_cer=0.1)
    rule = rcl.fit_referral(probs, labels, ISIC, target_cer=0.1)
    with pytest.raises(ValueError, match="other classes"):
        rcl.referral_report(rule, [[0.2, 0.3, 0.5]], [0], toy_taxonomy)
    with pytest.raises(ValueError, match="low <= high"):
        rcl.ReferralRule.from_dict(rule.to_dict() | {"low": 0.9, "high": 0.1})
    with pytest.raises(ValueError, match="a referral rule needs"):
        rcl.ReferralRule.from_dict({"low": None})


# --- decision scale -------------------------------------------------------------------------------
def test_scaled_matrix(toy_taxonomy):
    m = rcl.severity_matrix(toy_taxonomy, 5, 20)
    np.testing.assert_array_equal(rcl.scaled_matrix(m, 1), m)
    np.testing.assert_array_equal(rcl.scaled_matrix(m, 0), np.ones((3, 3)))
    np.testing.assert_array_equal(rcl.scaled_matrix(m, 2), rcl.severity_matrix(toy_taxonomy, 9, 39))
    edited = rcl.SeverityMatrix.from_penalties(toy_taxonomy).with_cell("a", "b", 0.5)
    assert rcl.scaled_matrix(edited, 3)[0, 1] == 0  # 1 + 3·(0.5 − 1) < 0 is clipped
    with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
        rcl.scaled_matrix(m, -1)


def test_tuned_scale_meets_the_validation_target():
    probs, labels = synthetic(8, n=1500, signal=1.5)
    matrix = rcl.SeverityMatrix.from_penalties(ISIC, 2, 10)
    argmax_cer = rcl.evaluate(labels, probs.argmax(axis=1), ISIC).cer
    target = argmax_cer / 3
    tuned = rcl.tune_decision_scale(probs, labels, ISIC, matrix, target_cer=target)
    assert tuned["met_target"] and tuned["cer"] <= target
    again = rcl.redecide(probs, labels, ISIC, tuned["matrix"])
    assert again.cer == tuned["cer"] and again.f1_macro == tuned["f1_macro"]
    unreachable = rcl.tune_decision_scale(probs, labels, ISIC, matrix, target_cer=0.0, scales=[0.1, 1])
    assert not unreachable["met_target"] and unreachable["scale"] == 1  # the lower-CER one


def test_tuned_scale_may_add_no_cost_at_all():
    """A model trained with the costs may already be right: s = 0 (argmax) must be a candidate."""
    from rcl.decision_scale import tune_decision_scale

    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    probs = np.array([[0.6, 0.0, 0.4]] * 5 + [[0.0, 0.9, 0.1]] * 5 + [[0.1, 0.0, 0.9]] * 5)
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)  # argmax is perfect; any extra cost flips the first five
    tuned = tune_decision_scale(probs, labels, taxonomy, rcl.severity_matrix(taxonomy, 5, 20), target_cer=0.0)
    assert tuned["scale"] == 0.0 and tuned["f1_macro"] == 1.0
