import numpy as np
import pytest

from rcl.ood import MahalanobisDetector, fit_mahalanobis


def clusters(rng, n, shift=0.0):
    means = np.array([[0, 0, 0, 0], [6, 0, 0, 0], [0, 6, 0, 0]], dtype=float) + shift
    labels = rng.integers(0, 3, n)
    return means[labels] + rng.normal(size=(n, 4)), labels


def test_flags_about_the_chosen_share_of_in_distribution_and_most_of_a_shifted_set(tmp_path):
    rng = np.random.default_rng(0)
    train, train_labels = clusters(rng, 2000)
    val, _ = clusters(rng, 1000)
    test, _ = clusters(rng, 4000)
    detector = fit_mahalanobis(train, train_labels).calibrate(val, flag_rate=0.05)
    assert detector.flag(val).mean() == pytest.approx(0.05, abs=0.002)
    assert detector.flag(test).mean() == pytest.approx(0.05, abs=0.02)  # held-out in-distribution
    far, _ = clusters(rng, 500, shift=8.0)
    assert detector.flag(far).mean() >= 0.9
    detector.save(tmp_path / "ood.npz")
    again = MahalanobisDetector.load(tmp_path / "ood.npz")
    np.testing.assert_array_equal(again.score(far), detector.score(far))


def test_nearest_class_distance_by_hand():
    detector = MahalanobisDetector(means=np.array([[0.0, 0.0], [10.0, 0.0]]), precision=np.diag([1.0, 4.0]))
    # (1, 1) is nearest class 0: 1*1 + 4*1 = 5; (9, 0) is nearest class 1: 1
    np.testing.assert_allclose(detector.score(np.array([[1.0, 1.0], [9.0, 0.0]])), [5.0, 1.0])


def test_bad_inputs():
    detector = MahalanobisDetector(means=np.zeros((1, 2)), precision=np.eye(2))
    with pytest.raises(ValueError, match=r"features must be \(N, 2\)"):
        detector.score(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="flag_rate must be in"):
        detector.calibrate(np.zeros((3, 2)), flag_rate=1.5)
    with pytest.raises(ValueError, match="at least 2 training features"):
        fit_mahalanobis(np.zeros((1, 2)), np.zeros(1))
