import numpy as np
import pytest

import rcl
from rcl.calibration import softmax


def test_softmax_is_stable_for_huge_logits():
    probs = softmax([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(probs, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.isfinite(probs).all()


def test_ece_and_reliability_by_hand():
    probs = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]
    labels = [0, 1, 0, 1]  # confident 0.9 ✓, 0.8 ✗, 0.6 ✓, 0.7 ✓
    # bins of 0.2: (0.4, 0.6] acc 1 conf 0.6; (0.6, 0.8] acc 1/2 conf 0.75; (0.8, 1] acc 1 conf 0.9
    # ECE = 1/4·0.4 + 2/4·0.25 + 1/4·0.1 = 0.25
    assert rcl.expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.25)
    diagram = rcl.reliability_diagram(probs, labels, n_bins=5)
    assert diagram["count"] == [0, 0, 1, 2, 1]
    assert diagram["accuracy"][:2] == [None, None]
    np.testing.assert_allclose(diagram["accuracy"][2:], [1, 0.5, 1])
    np.testing.assert_allclose(diagram["confidence"][2:], [0.6, 0.75, 0.9])
    np.testing.assert_allclose(diagram["centers"], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert len(diagram["edges"]) == 6 and diagram["ece"] == pytest.approx(0.25)


def calibrated_logits(seed: int, n: int = 4000, k: int = 5):
    """Logits whose softmax is the true label distribution: labels are drawn from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    probs = softmax(logits)
    labels = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    return logits, labels


def test_temperature_fixes_an_overconfident_model():
    logits, labels = calibrated_logits(0)
    overconfident = 5 * logits
    before = rcl.expected_calibration_error(softmax(overconfident), labels)
    temperature = rcl.fit_temperature(overconfident, labels)
    after = rcl.expected_calibration_error(rcl.apply_temperature(overconfident, temperature), labels)
    assert temperature == pytest.approx(5, rel=0.15)
    assert after < before / 3 and after < 0.03
    # Temperature never changes the argmax decision.
    np.testing.assert_array_equal(
        rcl.apply_temperature(overconfident, temperature).argmax(1), logits.argmax(1)
    )


def test_calibrated_model_keeps_temperature_near_one():
    logits, labels = calibrated_logits(1)
    assert rcl.fit_temperature(logits, labels) == pytest.approx(1, rel=0.1)
    assert rcl.expected_calibration_error(softmax(logits), labels) < 0.03


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rcl.fit_temperature(np.zeros((0, 3)), []), "logits is empty"),
        (lambda: rcl.fit_temperature([[1.0, 2.0]], [0, 1]), "labels has 2 entries but there are 1 rows"),
        (lambda: rcl.fit_temperature([[1.0, 2.0]], [2]), "out of range for 2 classes"),
        (lambda: rcl.fit_temperature([[1.0, np.nan]], [0]), "NaN"),
        (lambda: rcl.apply_temperature([[1.0, 2.0]], 0), "temperature must be a finite number > 0"),
        (lambda: rcl.apply_temperature([[1.0, 2.0]], np.nan), "temperature must be a finite number > 0"),
        (
            lambda: rcl.expected_calibration_error([[0.5, 0.5]], [0], n_bins=0),
            "n_bins must be a whole number",
        ),
        (lambda: rcl.expected_calibration_error([[2.0, 3.0]], [0]), "not logits"),
        (lambda: rcl.expected_calibration_error([[0.5, 0.5]], [0.5]), "integer class indices"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
