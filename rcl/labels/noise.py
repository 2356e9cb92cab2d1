"""Label-noise injection: seeded, recorded flips of chosen samples' labels (never the data itself).

A noise rule is ``KIND:RATE`` (``miss:0.1``). Each kind says which samples may be flipped and to
which classes (one registry, :data:`NOISE_KINDS`):

- ``symmetric``: any sample, to any other class drawn uniformly (the textbook definition);
- ``miss``: malignant samples relabelled as a benign class, the missed tumour;
- ``alarm``: benign samples relabelled as a malignant class, the false alarm.

``RATE`` is the share of the *eligible* samples that are flipped, exactly ``round(RATE · n)`` of
them (not a per-sample coin): for ``miss:0.1`` one malignant case in ten carries a benign label.
For ``miss`` and ``alarm`` the wrong class is drawn in proportion to how common each target class
is among the samples given, so a missed melanoma is mostly labelled a nevus, as in practice;
``symmetric`` draws uniformly. The same labels, rule and seed always flip the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rcl.taxonomy import Taxonomy

# kind → (which true classes may be flipped, which classes they may become), over is_critical.
Rule = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
NOISE_KINDS: dict[str, tuple[str, Rule]] = {
    "symmetric": ("any class → any other class, uniformly",
                  lambda critical: (np.ones_like(critical), np.ones_like(critical))),
    "miss": ("malignant → a benign class (the missed tumour)", lambda critical: (critical, ~critical)),
    "alarm": ("benign → a malignant class (the false alarm)", lambda critical: (~critical, critical)),
}
NOISE_FILE = "label_noise.json"


@dataclass(frozen=True)
class NoiseSpec:
    """A checked noise rule: ``kind`` from :data:`NOISE_KINDS`, ``rate`` in [0, 1)."""

    kind: str
    rate: float

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"label noise: unknown kind {self.kind!r}; choose one of: {', '.join(NOISE_KINDS)}")
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
                or not 0 <= rate < 1:
            raise ValueError(f"label noise: rate must be a number in [0, 1) (e.g. miss:0.1), got {rate!r}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.rate:g}"

    @property
    def rule(self) -> str:
        return f"{self.rate:.0%} of eligible samples flipped, {NOISE_KINDS[self.kind][0]}"


def parse_noise(text: str | NoiseSpec | None) -> NoiseSpec | None:
    """``"miss:0.1"`` → ``NoiseSpec("miss", 0.1)``; None stays None. One clear error per fault."""
    if text is None or isinstance(text, NoiseSpec):
        return text
    kind, sep, rate = str(text).partition(":")
    if not sep:
        raise ValueError(f"label noise must be KIND:RATE (e.g. miss:0.1), got {text!r}")
    try:
        value = float(rate)
    except ValueError:
        raise ValueError(f"label noise: rate must be a number in [0, 1) (e.g. miss:0.1), got {rate!r}") from None
    return NoiseSpec(kind.strip().lower(), value)


def eligible(labels, taxonomy: Taxonomy, spec: NoiseSpec) -> np.ndarray:
    """Per sample: may ``spec`` flip it (is its class one the kind flips)?"""
    return NOISE_KINDS[spec.kind][1](np.asarray(taxonomy.is_critical))[0][np.asarray(labels, dtype=np.int64)]


def flip_labels(labels, taxonomy: Taxonomy, spec: NoiseSpec, seed: int, among=None) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``spec`` of the samples ``among`` (indices into ``labels``; default all).

    Returns the new labels (a copy) and the sorted indices that were flipped. Every flipped
    sample gets a class different from its own, of the kind ``spec`` names.
    """
    labels = np.asarray(labels, dtype=np.int64)
    among = np.arange(labels.size) if among is None else np.asarray(among, dtype=np.int64)
    targets = NOISE_KINDS[spec.kind][1](np.asarray(taxonomy.is_critical))[1]
    candidates = among[eligible(labels[among], taxonomy, spec)]
    rng = np.random.default_rng([int(seed), 17])  # its own stream: noise never shifts other draws
    chosen = np.sort(rng.choice(candidates, size=round(spec.rate * candidates.size), replace=False))
    noisy = labels.copy()
    counts = np.bincount(labels[among], minlength=taxonomy.num_classes).astype(float)
    for index in chosen:
        allowed = targets.copy()
        allowed[labels[index]] = False
        weights = allowed.astype(float) if spec.kind == "symmetric" else allowed * counts
        if weights.sum() == 0:  # a target class absent from the samples: fall back to uniform
            weights = allowed.astype(float)
        noisy[index] = rng.choice(taxonomy.num_classes, p=weights / weights.sum())
    return noisy, chosen


def apply_label_noise(labels, ids, among, spec: str | NoiseSpec | None, taxonomy: Taxonomy,
                      seed: int) -> tuple[np.ndarray, dict | None]:
    """Noisy labels for the samples ``among`` (a run's train split) and the record of what was done.

    The record (written as ``label_noise.json``) names the rule, the seed, how many samples were
    eligible and every flipped sample: its id, its true class and the class it was given.
    Without a rule, the labels come back unchanged and the record is None.
    """
    spec = parse_noise(spec)
    labels = np.asarray(labels, dtype=np.int64)
    if spec is None:
        return labels, None
    noisy, flipped = flip_labels(labels, taxonomy, spec, seed, among)
    among = np.arange(labels.size) if among is None else np.asarray(among)
    ids = np.asarray(ids).astype(str)
    record = {
        "spec": str(spec), "kind": spec.kind, "rate": spec.rate, "rule": spec.rule, "seed": int(seed),
        "eligible": int(eligible(labels[among], taxonomy, spec).sum()), "flipped": int(flipped.size),
        "samples": [{"id": ids[i], "true": taxonomy.classes[labels[i]], "given": taxonomy.classes[noisy[i]]}
                    for i in flipped],
    }
    return noisy, record
