"""A decision rule with a guaranteed miss rate: "at most 5% of malignant cases called benign".

Tuning a threshold so that *validation* CER meets a target is a point estimate on one split; on new
patients the miss rate can be well above it. Distribution-free risk control turns the same stored
probabilities into a statement about new patients, for any model, provided the calibration cases
are exchangeable with the patients the rule will see (same hospital, device, population):

* ``mode="expected"``: conformal risk control (Angelopoulos, Bates, Fisch, Lei, Schuster, 2022,
  "Conformal risk control"): E[CER on a new malignant case] ≤ target.
* ``mode="high-probability"``: Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei, 2021,
  "Learn then test") with an exact binomial (Clopper–Pearson) p-value:
  P(population CER ≤ target) ≥ 1 − δ over the draw of the calibration set.

The rule. Decide *malignant* iff ``p ≥ threshold``, where ``p`` = P(malignant superclass) = the
sum of the probabilities of the critical classes; a case called malignant gets its most probable
malignant class, one called benign its most probable benign class. The loss of a malignant case
is ``1{p < threshold}`` (a miss), monotone in the threshold: a higher threshold misses more. The
least conservative (highest) threshold that passes the test is chosen.

Why the guarantee conditions on the malignant cases: CER is a rate *over malignant cases*,
P(called benign | malignant). Controlling the joint loss ``1{malignant and missed}`` over all
cases would bound CER × prevalence, a number that moves with prevalence and is not the CER a
clinician reads. Restricting both calibration and the guarantee to malignant cases is the
class-conditional ("Mondrian") form of conformal calibration: malignant calibration cases are
exchangeable with future malignant cases whenever all cases are, and the bound holds given the
number ``n`` of malignant calibration cases. Benign cases only enter the reported price.

How the threshold is chosen, with ``k`` the calibration misses at a threshold and ``h`` the
calibration malignant cases the rule still catches (``h = n − k`` for the two-way rule):

* expected: ``(k + 1) / (k + 1 + h) ≤ target``. For the two-way rule this is the conformal risk
  control condition ``n/(n+1)·R̂ + B/(n+1) ≤ target`` with loss bound ``B = 1``; the chosen
  threshold is then the (m+1)-th smallest malignant ``p``, m = ⌊target·(n+1)⌋ − 1, and a new
  malignant case falls below it with probability ≤ (m+1)/(n+1) by exchangeability of ranks.
* high-probability: ``P(Binomial(k + h, target) ≤ k) ≤ δ``, i.e. the one-sided Clopper–Pearson
  upper bound on the miss rate at level δ is ≤ target. Candidates are tested in fixed sequence from
  the conservative end (low threshold, few misses) and the last rejection is kept; because the
  miss rate is monotone in the threshold this controls the error at δ without any multiplicity
  correction. Taking the candidates at the calibration values of ``p`` loses nothing: if the
  chosen threshold were past the first fixed threshold λ* whose true miss rate exceeds the
  target, the test at λ* would have rejected too (its miss count is no larger), which happens
  with probability ≤ δ. For continuous scores the two-way rule is the classical distribution-free
  tolerance limit: P(miss rate > target) = P(Binomial(n, target) ≤ m) exactly.

Three-way rule (referral). With ``refer_above = u`` fixed in advance (default 0.5: malignant is
the more probable superclass), cases with ``p ≥ u`` are called malignant, those below a
calibrated ``low ≤ u`` benign, and ``low ≤ p < u`` are referred to a specialist. The guarantee
is then on CER *among the malignant cases the model answers* (not referred): the same two
conditions with ``h`` = malignant calibration cases at or above ``u`` (fixed while ``low``
moves). High-probability: given the number of answered malignant cases, their misses are
binomial, so the p-value is valid conditionally and the same fixed-sequence argument holds.
Expected: by the rank argument, P(miss | answered) = E[J]/(E[J] + E[H]) ≤ target where J ≤
target/(1 − target)·H holds on every draw. The referral rate (all cases) is reported with its
exact binomial interval. The answer has the library's referral type: ``(decisions, referred)``
as returned by :func:`rcl.decision.apply_referral`.

Probabilities. The threshold is on the stored softmax of the model's logits, not the
temperature-scaled probabilities: the temperature is fitted on the validation split, which is
also the calibration split here, and conformal validity needs a score fixed before calibration.
The rule records this (``probabilities``) and must be applied to the same kind of probabilities.

Why not MAPIE: its risk controllers (``mapie.risk_control``) wrap a fitted estimator (a
``predict_proba`` object and, for ``BinaryClassificationController``, scikit-learn) rather than
stored probability arrays; its Learn-then-Test p-values are Hoeffding–Bentkus, looser than the
exact binomial for a 0/1 loss; and it has no class-conditional (malignant-only) risk or
three-way referral rule. The whole bound is a binomial tail and an order statistic (scipy), so a
new pinned dependency would add more than it saves.

Not guaranteed: anything under distribution shift (another hospital, device, population, or an
image the unfamiliar-image detector flags), the miss rate within one small test split (which
has its own sampling noise), or under-calls *within* the malignant superclasses of a graded
taxonomy (the miss here is "called benign").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rcl.calibration import check_probs

GUARANTEE_MODES = ("expected", "high-probability")
GUARANTEE_FILE = "guarantee.json"
DEFAULT_REFER_ABOVE = 0.5
PROBABILITIES = "softmax"  # the kind of probabilities a rule is calibrated on (see the docstring)
# Float slack for "(k + 1) ≤ target·(k + 1 + h)": 0.1·20 must count as 2.
_SLACK = 1e-9


# --- validation ----------------------------------------------------------------------------------
def _check_rate(value, name: str) -> float:
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be a rate strictly between 0 and 1, got {value!r}")
    return value


def _check_mode(mode: str) -> str:
    if mode not in GUARANTEE_MODES:
        raise ValueError(f"mode must be one of {', '.join(GUARANTEE_MODES)}, got {mode!r}")
    return mode


def malignant_probability(probs, critical) -> np.ndarray:
    """P(malignant superclass) per case: the sum of the critical classes' probabilities."""
    critical = np.asarray(critical, dtype=bool)
    probs = check_probs(probs, critical.size)
    if not critical.any() or critical.all():
        raise ValueError("critical must mark at least one malignant and one benign class")
    return probs[:, critical].sum(axis=1)


# --- the bounds ----------------------------------------------------------------------------------
def passes(misses, caught, target: float, mode: str, delta: float | None = None) -> np.ndarray:
    """Does a threshold with ``misses`` missed and ``caught`` caught calibration cases pass?

    Vectorised over arrays of counts; monotone: one more miss (same ``caught``) never helps.
    """
    # scipy.stats is imported on use: it is slow to import, and `import rcl` imports this module.
    from scipy.stats import binom

    k, h = np.asarray(misses, dtype=np.int64), np.asarray(caught, dtype=np.int64)
    if mode == "expected":
        return k + 1 <= target * (k + 1 + h) + _SLACK
    return binom.cdf(k, k + h, target) <= delta


def bound(misses: int, caught: int, target: float, mode: str, delta: float | None = None) -> float:
    """The guaranteed figure at a threshold: the conformal risk bound ``(k+1)/(k+1+h)`` (expected)
    or the one-sided Clopper–Pearson upper bound on the miss rate at level ``δ`` (high-probability)."""
    if mode == "expected":
        return (misses + 1) / (misses + 1 + caught)
    return _upper(misses, misses + caught, 1 - delta)


def _upper(count: int, n: int, confidence: float) -> float:
    """One-sided Clopper–Pearson upper limit: the Beta(k + 1, n − k) quantile (1 when k = n)."""
    from scipy.stats import beta

    return 1.0 if count >= n else float(beta.ppf(confidence, count + 1, n - count))


def min_malignant_cases(target: float, mode: str = "high-probability", delta: float | None = 0.1) -> int:
    """The fewest malignant calibration cases for which the target is reachable at all (zero misses).

    expected: ``1/(n+1) ≤ target``, i.e. n ≥ 1/target − 1; high-probability: ``(1 − target)^n ≤ δ``,
    i.e. n ≥ log δ / log(1 − target).
    """
    target, mode = _check_rate(target, "target"), _check_mode(mode)
    if mode == "high-probability":
        delta = _check_rate(delta, "delta")
        n = math.ceil(math.log(delta) / math.log1p(-target))
    else:
        n = math.ceil(1 / target - 1)
    n = max(n - 2, 0)
    while not passes(0, n, target, mode, delta):  # exact, whatever the float rounding above
        n += 1
    return n


def exact_interval(count: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Two-sided Clopper–Pearson interval of a proportion ``count / n`` (None, None when n = 0)."""
    if n == 0:
        return None, None
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = 0.0 if count == 0 else float(beta.ppf(tail, count, n - count + 1))
    return low, _upper(count, n, 1 - tail)


# --- the rule ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuaranteedRule:
    """Malignant iff P(malignant) ≥ ``threshold``; with ``refer_low``, refer ``refer_low ≤ p < threshold``.

    ``bound`` is the guaranteed figure (see :func:`bound`); ``misses_calibration`` the calibration
    misses at the threshold; ``referral_rate`` (with its 95% exact interval) is measured on all
    calibration cases. ``delta`` is None in expected mode.
    """

    mode: str
    target: float
    delta: float | None
    threshold: float
    bound: float
    n_calibration: int
    n_malignant: int
    misses_calibration: int
    classes: tuple[str, ...]
    critical: tuple[bool, ...]
    refer_low: float | None = None
    referral_rate: float = 0.0
    referral_ci: tuple[float | None, float | None] = (None, None)
    probabilities: str = PROBABILITIES
    calibration_split: str = "val"

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        if len(self.classes) != len(self.critical):
            raise ValueError(f"guaranteed rule: {len(self.classes)} classes but {len(self.critical)} critical flags")
        if self.refer_low is not None and not self.refer_low <= self.threshold:
            raise ValueError(f"guaranteed rule: refer_low {self.refer_low} must be <= threshold {self.threshold}")

    @property
    def refers(self) -> bool:
        return self.refer_low is not None and self.refer_low < self.threshold

    def sentence(self) -> str:
        """The guarantee in one sentence, for a triage screen or a report."""
        who = "of the malignant cases it answers" if self.refers else "of malignant cases"
        level = "on average" if self.mode == "expected" else f"with {1 - self.delta:.0%} confidence"
        return (f"At most {self.target:.0%} {who} are called benign ({level}), calibrated on "
                f"{self.n_malignant} malignant of {self.n_calibration} {self.calibration_split} cases; "
                "not valid for images flagged unfamiliar or from another population.")

    def to_dict(self) -> dict:
        return asdict(self) | {"classes": list(self.classes), "critical": list(self.critical),
                               "referral_ci": list(self.referral_ci)}

    @classmethod
    def from_dict(cls, data: Mapping) -> GuaranteedRule:
        try:
            return cls(
                mode=str(data["mode"]), target=float(data["target"]),
                delta=None if data["delta"] is None else float(data["delta"]),
                threshold=float(data["threshold"]), bound=float(data["bound"]),
                n_calibration=int(data["n_calibration"]), n_malignant=int(data["n_malignant"]),
                misses_calibration=int(data["misses_calibration"]),
                classes=tuple(str(c) for c in data["classes"]),
                critical=tuple(bool(c) for c in data["critical"]),
                refer_low=None if data.get("refer_low") is None else float(data["refer_low"]),
                referral_rate=float(data.get("referral_rate", 0.0)),
                referral_ci=tuple(data.get("referral_ci", (None, None))),
                probabilities=str(data.get("probabilities", PROBABILITIES)),
                calibration_split=str(data.get("calibration_split", "val")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a guaranteed rule: missing or bad field ({exc!r})") from exc


def _refuse(n_have: int, target: float, mode: str, delta: float | None, where: str) -> ValueError:
    need = min_malignant_cases(target, mode, delta)
    level = "in expectation" if mode == "expected" else f"with confidence {1 - delta:.0%}"
    return ValueError(
        f"the calibration split has {n_have} malignant cases{where}; a miss rate <= {target:g} {level} "
        f"needs at least {need} even with zero misses: use a larger calibration split or a looser target"
    )


def fit_guarantee(
    probs,
    labels,
    critical,
    target: float,
    mode: str = "high-probability",
    delta: float | None = 0.1,
    refer_above: float | None = None,
    classes=None,
    calibration_split: str = "val",
) -> GuaranteedRule:
    """The least conservative rule meeting ``target`` on the calibration cases (see the module docstring).

    ``probs``: (N, K) calibration probabilities (softmax); ``labels``: (N,) class indices;
    ``critical``: K booleans (the taxonomy's malignant mask). ``refer_above`` set: a three-way rule
    calling malignant at ``p ≥ refer_above`` and referring a calibrated band below it.
    Raises ValueError when even zero misses could not meet the target with this many cases.
    """
    target, mode = _check_rate(target, "target"), _check_mode(mode)
    delta = _check_rate(delta, "delta") if mode == "high-probability" else None
    critical = np.asarray(critical, dtype=bool)
    p = malignant_probability(probs, critical)
    labels = np.asarray(labels)
    if labels.shape != p.shape or labels.dtype.kind not in "iu" or (labels < 0).any() or (labels >= critical.size).any():
        raise ValueError(f"labels must be {p.size} class indices in 0..{critical.size - 1}")
    sick = np.sort(p[critical[labels]])
    n = sick.size
    if refer_above is None:
        candidates = np.unique(sick)
        misses = np.searchsorted(sick, candidates, side="left")
        caught = n - misses
        where = ""
    else:
        refer_above = _check_rate(refer_above, "refer_above")
        candidates = np.unique(np.append(sick[sick < refer_above], refer_above))
        misses = np.searchsorted(sick, candidates, side="left")
        caught = np.full_like(misses, n - np.searchsorted(sick, refer_above, side="left"))
        where = f" with P(malignant) >= {refer_above:g} (of {n})"
    ok = passes(misses, caught, target, mode, delta)
    stop = int(np.argmin(ok)) if not ok.all() else ok.size  # fixed sequence: the first non-rejection
    if stop == 0:
        raise _refuse(int(caught[0]) if refer_above is not None else n, target, mode, delta, where)
    k, h, low = int(misses[stop - 1]), int(caught[stop - 1]), float(candidates[stop - 1])
    threshold = low if refer_above is None else float(refer_above)
    referred = int(((p >= low) & (p < threshold)).sum())
    k_classes = critical.size
    return GuaranteedRule(
        mode=mode, target=target, delta=delta, threshold=threshold,
        bound=bound(k, h, target, mode, delta), n_calibration=int(p.size), n_malignant=n,
        misses_calibration=k,
        classes=tuple(str(c) for c in (classes if classes is not None else range(k_classes))),
        critical=tuple(bool(c) for c in critical),
        refer_low=None if refer_above is None else low,
        referral_rate=referred / p.size, referral_ci=exact_interval(referred, p.size),
        calibration_split=calibration_split,
    )


def apply_guarantee(rule: GuaranteedRule, probs) -> tuple[np.ndarray, np.ndarray]:
    """``(decisions, referred)``, the answer type of :func:`rcl.decision.apply_referral`.

    ``decisions``: the most probable malignant class where P(malignant) ≥ ``threshold``, else the
    most probable benign class (filled for referred cases too); ``referred``: True in the band.
    """
    critical = np.asarray(rule.critical, dtype=bool)
    probs = check_probs(probs, critical.size)
    p = probs[:, critical].sum(axis=1)
    best_malignant = np.where(critical, probs, -np.inf).argmax(axis=1)
    best_benign = np.where(~critical, probs, -np.inf).argmax(axis=1)
    decisions = np.where(p >= rule.threshold, best_malignant, best_benign)
    referred = np.zeros(p.size, dtype=bool) if rule.refer_low is None else (p >= rule.refer_low) & (p < rule.threshold)
    return decisions, referred


# --- storage in a run folder ---------------------------------------------------------------------
def save_guarantee(rule: GuaranteedRule, run_dir: str | Path, extra: Mapping | None = None) -> Path:
    """Write ``guarantee.json`` into a run folder atomically (a reader sees the old or the new file)."""
    path = Path(run_dir) / GUARANTEE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**rule.to_dict(), **(extra or {})}, indent=2))
    tmp.replace(path)
    return path


def load_guarantee(run_dir: str | Path) -> GuaranteedRule | None:
    """The run folder's guaranteed rule, or None when ``rcl guarantee`` has not been run on it."""
    path = Path(run_dir) / GUARANTEE_FILE
    if not path.is_file():
        return None
    try:
        return GuaranteedRule.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc
