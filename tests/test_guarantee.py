"""Guaranteed miss rate: hand-computed bounds, monotonicity, refusal, and the guarantee itself judged
against the population risk of a known generator over many calibration draws."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from rcl.cli import main
from rcl.posthoc.guarantee import (
    GuaranteedRule,
    apply_guarantee,
    fit_guarantee,
    load_guarantee,
    min_malignant_cases,
    save_guarantee,
)
from rcl.posthoc.guarantee_report import guarantee_report, resplit_check
from rcl.taxonomy import Taxonomy

CRITICAL = (False, True)


def malignant_only(p):
    """Calibration data made only of malignant cases with P(malignant) = p (two classes)."""
    p = np.asarray(p, dtype=np.float64)
    return np.c_[1 - p, p], np.ones(p.size, dtype=np.int64)


# --- hand-computed cases ---------------------------------------------------------------------------
def test_expected_mode_hand_computed():
    # n = 19, target 0.1: (k + 1) / 20 <= 0.1 allows k = 1 miss, so the threshold is the 2nd smallest p.
    probs, labels = malignant_only(np.arange(1, 20) / 100)
    rule = fit_guarantee(probs, labels, CRITICAL, 0.1, "expected")
    assert rule.threshold == pytest.approx(0.02)
    assert rule.misses_calibration == 1
    assert rule.bound == pytest.approx(2 / 20)
    assert rule.delta is None


def test_high_probability_mode_hand_computed():
    # n = 22, target 0.1: P(Bin(22, 0.1) = 0) = 0.9^22 = 0.0985 <= 0.1 but P(<= 1) = 0.339: zero misses.
    probs, labels = malignant_only(np.arange(1, 23) / 100)
    rule = fit_guarantee(probs, labels, CRITICAL, 0.1, "high-probability", delta=0.1)
    assert rule.threshold == pytest.approx(0.01) and rule.misses_calibration == 0
    assert rule.bound == pytest.approx(1 - 0.1 ** (1 / 22))  # Clopper–Pearson with no miss
    # n = 38: P(Bin(38, 0.1) <= 1) = 0.9^38 + 38·0.1·0.9^37 = 0.095 <= 0.1, P(<= 2) = 0.25: one miss.
    assert 0.9**38 + 38 * 0.1 * 0.9**37 < 0.1
    probs, labels = malignant_only(np.arange(1, 39) / 100)
    rule = fit_guarantee(probs, labels, CRITICAL, 0.1, "high-probability", delta=0.1)
    assert rule.threshold == pytest.approx(0.02) and rule.misses_calibration == 1
    assert rule.bound <= 0.1


def test_benign_cases_do_not_move_the_threshold():
    probs, labels = malignant_only(np.arange(1, 39) / 100)
    benign = np.c_[np.full(10, 0.99), np.full(10, 0.01)]
    rule = fit_guarantee(np.r_[probs, benign], np.r_[labels, np.zeros(10, np.int64)], CRITICAL, 0.1, delta=0.1)
    assert rule.threshold == pytest.approx(0.02) and rule.n_malignant == 38 and rule.n_calibration == 48


def test_three_way_rule_hand_computed():
    # 30 malignant with p >= 0.5 (caught), 10 below at 0.01..0.10; target 0.1, expected mode:
    # (k + 1) / (k + 1 + 30) <= 0.1 allows k = 2 misses: low = the 3rd smallest p = 0.03.
    p = np.r_[np.arange(1, 11) / 100, np.linspace(0.6, 0.9, 30)]
    benign = np.c_[[0.8, 0.7, 0.98, 0.6], [0.2, 0.3, 0.02, 0.4]]  # p = 0.2, 0.3, 0.02, 0.4
    probs = np.r_[malignant_only(p)[0], benign]
    labels = np.r_[np.ones(40, np.int64), np.zeros(4, np.int64)]
    rule = fit_guarantee(probs, labels, CRITICAL, 0.1, "expected", refer_above=0.5)
    assert rule.refer_low == pytest.approx(0.03) and rule.threshold == 0.5
    assert rule.misses_calibration == 2 and rule.bound == pytest.approx(3 / 33)
    # referred: malignant 0.03..0.10 (8) and benign 0.2, 0.3, 0.4 (3) of 44 cases
    assert rule.referral_rate == pytest.approx(11 / 44)
    decisions, referred = apply_guarantee(rule, probs)
    assert referred.sum() == 11
    assert (decisions[:40][p >= 0.5] == 1).all() and (decisions[:2] == 0).all() and (decisions[40:] == 0).all()


# --- refusal ---------------------------------------------------------------------------------------
def test_refuses_when_too_few_malignant_cases_and_says_how_many():
    assert min_malignant_cases(0.1, "high-probability", 0.1) == 22  # log(0.1) / log(0.9) = 21.85
    assert min_malignant_cases(0.05, "high-probability", 0.1) == 45  # 44.89
    assert min_malignant_cases(0.05, "expected") == 19  # 1/(n+1) <= 0.05
    probs, labels = malignant_only(np.arange(1, 22) / 100)
    with pytest.raises(ValueError, match="has 21 malignant cases.*at least 22"):
        fit_guarantee(probs, labels, CRITICAL, 0.1, "high-probability", delta=0.1)
    probs, labels = malignant_only(np.arange(1, 19) / 100)
    with pytest.raises(ValueError, match="has 18 malignant cases.*at least 19"):
        fit_guarantee(probs, labels, CRITICAL, 0.05, "expected")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"target": 0}, "target must be a rate"), ({"target": 0.1, "mode": "sometimes"}, "mode must be one of"),
     ({"target": 0.1, "delta": 1.5}, "delta must be a rate"), ({"target": 0.1, "refer_above": 2}, "refer_above")],
)
def test_bad_arguments_are_named(kwargs, message):
    probs, labels = malignant_only(np.linspace(0.01, 0.99, 60))
    with pytest.raises(ValueError, match=message):
        fit_guarantee(probs, labels, CRITICAL, **kwargs)


# --- monotonicity ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=60, max_size=120),
    targets=st.tuples(st.floats(0.06, 0.5), st.floats(0.06, 0.5)),
    mode=st.sampled_from(["expected", "high-probability"]),
)
def test_looser_target_never_lowers_the_threshold(p, targets, mode):
    probs, labels = malignant_only(p)
    low, high = sorted(targets)
    strict, loose = (fit_guarantee(probs, labels, CRITICAL, t, mode, delta=0.1) for t in (low, high))
    assert loose.threshold >= strict.threshold
    for rule in (strict, loose):
        assert rule.bound <= rule.target + 1e-12
        # the rule applied to its own calibration cases misses exactly what it reports
        decisions, _ = apply_guarantee(rule, probs)
        assert int((decisions == 0).sum()) == rule.misses_calibration
    # more confidence (smaller δ) never raises the threshold
    if mode == "high-probability":
        assert fit_guarantee(probs, labels, CRITICAL, high, mode, delta=0.01).threshold <= loose.threshold


# --- the guarantee against the population --------------------------------------------------------
# Generator: malignant P(malignant) ~ Beta(4, 2), benign ~ Beta(2, 4), prevalence 20%. The population
# miss rate of "malignant iff p >= λ" is the Beta(4, 2) CDF at λ, exactly.
MALIGNANT, BENIGN = beta_dist(4, 2), beta_dist(2, 4)
DRAWS, N_CAL, PREVALENCE, DELTA = 1000, 300, 0.2, 0.1


def draw(rng, n):
    sick = rng.random(n) < PREVALENCE
    p = np.where(sick, MALIGNANT.rvs(n, random_state=rng), BENIGN.rvs(n, random_state=rng))
    return np.c_[1 - p, p], sick.astype(np.int64)


def population_cer(rule) -> float:
    missed = MALIGNANT.cdf(rule.refer_low if rule.refer_low is not None else rule.threshold)
    answered = missed + MALIGNANT.sf(rule.threshold) if rule.refer_low is not None else 1.0
    return missed / answered


# With DRAWS independent calibration sets, the number of violations is Binomial(DRAWS, q) with q <= δ
# if the guarantee holds. We accept up to its 99.9% quantile at q = δ (a correct method fails this
# with probability < 0.1%, and the seed is fixed); δ + 4 points would be caught.
VIOLATION_LIMIT = binom.ppf(0.999, DRAWS, DELTA) / DRAWS


@pytest.mark.parametrize("refer_above", [None, 0.5])
def test_high_probability_guarantee_holds_against_the_population(refer_above):
    rng = np.random.default_rng(0)
    risks = np.array([population_cer(fit_guarantee(*draw(rng, N_CAL), CRITICAL, 0.1, delta=DELTA,
                                               refer_above=refer_above)) for _ in range(DRAWS)])
    violations = (risks > 0.1).mean()
    assert violations <= VIOLATION_LIMIT
    assert np.median(risks) > 0.03  # not trivially safe (a threshold at 0 would give 0)
    if refer_above is None:  # two-way, continuous scores: the violation probability is known exactly
        expected = exact_violation_probability(0.1)
        low, high = binom.ppf([0.0005, 0.9995], DRAWS, expected) / DRAWS
        assert low <= violations <= high, (violations, expected)


def exact_violation_probability(target):
    """P(population CER > target) of the two-way rule: given n malignant calibration cases it is
    P(Binomial(n, target) <= m), m = the most misses the test allows (a distribution-free tolerance
    limit), averaged over n ~ Binomial(N_CAL, PREVALENCE)."""
    total = 0.0
    for n in range(min_malignant_cases(target, "high-probability", DELTA), N_CAL + 1):
        cdf = binom.cdf(np.arange(n + 1), n, target)
        total += binom.pmf(n, N_CAL, PREVALENCE) * cdf[cdf <= DELTA].max()
    return total


@pytest.mark.parametrize("refer_above", [None, 0.5])
def test_expected_guarantee_holds_against_the_population(refer_above):
    rng = np.random.default_rng(1)
    risks = np.array([population_cer(fit_guarantee(*draw(rng, N_CAL), CRITICAL, 0.1, "expected",
                                               refer_above=refer_above)) for _ in range(DRAWS)])
    # mean risk <= target up to 3 standard errors of the mean over the draws
    assert risks.mean() <= 0.1 + 3 * risks.std(ddof=1) / math.sqrt(DRAWS)
    # conformal risk control is tight: the mean is within ~2/(n+1) of the target (n ≈ 60 malignant)
    assert risks.mean() >= 0.1 - 0.04


def test_resplit_check_on_a_pool_from_the_generator():
    taxonomy = Taxonomy.from_malignant(["nevus", "mel"], ["mel"])
    probs, labels = draw(np.random.default_rng(2), 3000)
    check = resplit_check(probs, labels, taxonomy, 0.1, "expected", n_calibration=300, resplits=100, seed=0)
    assert check["splits"] + check["refused"] == 100 and check["pool_cer"].size == check["splits"]
    # the pool stands in for the population: its mean CER obeys the expected-risk guarantee
    assert check["pool_cer"].mean() <= 0.1 + 3 * check["pool_cer"].std(ddof=1) / math.sqrt(check["splits"])
    assert (check["false_alarm_rate"] > 0).all() and (check["referral_rate"] == 0).all()
    with pytest.raises(ValueError, match="n_calibration"):
        resplit_check(probs, labels, taxonomy, 0.1, n_calibration=3000)


# --- storage and report ----------------------------------------------------------------------------
def test_rule_round_trips_through_the_run_folder(tmp_path):
    probs, labels = malignant_only(np.linspace(0.01, 0.99, 60))
    rule = fit_guarantee(probs, labels, CRITICAL, 0.1, refer_above=0.5, classes=("benign", "malignant"))
    assert GuaranteedRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert load_guarantee(tmp_path) is None
    save_guarantee(rule, tmp_path)
    assert load_guarantee(tmp_path) == rule


def test_report_counts_misses_false_alarms_and_referrals():
    taxonomy = Taxonomy.from_malignant(["nevus", "mel"], ["mel"])
    rule = GuaranteedRule(mode="expected", target=0.1, delta=None, threshold=0.5, bound=0.1, n_calibration=10,
                          n_malignant=10, misses_calibration=0, classes=taxonomy.classes,
                          critical=taxonomy.is_critical, refer_low=0.3)
    p = np.array([0.1, 0.4, 0.6, 0.9, 0.2, 0.35, 0.7, 0.05])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    report = guarantee_report(rule, np.c_[1 - p, p], labels, taxonomy, n_resamples=200)
    assert report["misses"] == 1 and report["n_answered_malignant"] == 3  # 0.1 missed, 0.4 referred
    assert report["cer"]["value"] == pytest.approx(1 / 3)
    assert report["false_alarm_rate"]["count"] == 1 and report["false_alarm_rate"]["n"] == 4  # 0.7
    assert report["referral_rate"]["count"] == 2 and report["malignant_referred"] == 1


# --- the command line on a tiny trained run ---------------------------------------------------------
@pytest.mark.slow
def test_cli_guarantee_on_a_synthetic_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--limit", "700", "--epochs", "2", "--image-size", "32",
                 "--seed", "0", "--device", "cpu", "--out", str(out)]) == 0
    capsys.readouterr()
    target = 0.2
    assert main(["guarantee", str(out), "--max-cer", str(target), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (out / "guarantee.json").is_file()
    with np.load(out / "predictions.npz") as stored:
        probs, labels = stored["test_probs"], stored["test_labels"]
    taxonomy = Taxonomy.from_dict(json.loads((out / "config.json").read_text())["taxonomy"])
    critical = np.asarray(taxonomy.is_critical)
    p = probs[:, critical].sum(axis=1)
    sick = critical[labels]
    called = p >= printed["threshold"]
    misses = int((sick & ~called).sum())
    assert misses == printed["report"]["misses"]
    # a small test split has its own noise: accept up to the 99% quantile of Binomial(n, target)
    assert misses <= binom.ppf(0.99, sick.sum(), target)
    assert (~called[~sick]).any(), "the rule called every benign case malignant"
    assert main(["guarantee", str(out), "--max-cer", "0.001"]) == 2
    assert "at least" in capsys.readouterr().err

    # the stored rule decides triage when chosen: its threshold on the softmax P(malignant), its sentence
    examples = sorted(str(p) for p in (Path(__file__).parents[1] / "assets").glob("synthetic_*.png"))
    assert main(["predict", str(out), *examples, "--rule", "guarantee", "--json"]) == 0
    answered = json.loads(capsys.readouterr().out)
    malignant = {c for c, m in zip(taxonomy.classes, taxonomy.is_critical) if m}
    for result in answered:
        assert result["guarantee"].startswith(f"At most {target:.0%} of malignant cases are called benign")
        assert f"P(malignant) ≥ {printed['threshold']:.3f}" in result["decision_rule"]
        if not result["answer"]["referred"]:
            assert (result["decision"] in malignant) == (result["malignant_probability"] >= printed["threshold"])
    (out / "guarantee.json").unlink()
    assert main(["predict", str(out), examples[0], "--rule", "guarantee"]) == 2
    assert "has no guaranteed rule: run `rcl guarantee" in capsys.readouterr().err
