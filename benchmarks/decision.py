"""Interactive speed of the decision page: re-deciding and re-evaluating stored predictions.

Times (median over repeats) the Bayes decision alone and decide + full evaluation for 10,000
samples × 7 classes under a fresh matrix each time (goal: well under 50 ms), a 24-point (α, β) sweep,
and the bootstrap (1,000 resamples) on 2,000 and 10,000 samples (goal: well under 1 s). Figures only.

    python benchmarks/decision.py [--repeats 21]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import rcl
from rcl.decision import DEFAULT_ALPHAS, DEFAULT_BETAS


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()

    taxonomy = rcl.preset("isic2018")
    rng = np.random.default_rng(0)
    n = 10_000
    labels = rng.integers(0, taxonomy.num_classes, n)
    probs = rng.dirichlet(np.ones(taxonomy.num_classes), size=n).astype(np.float32)  # as stored
    betas = iter(np.linspace(2, 50, 10 * args.repeats))

    def new_matrix():
        return rcl.SeverityMatrix.from_penalties(taxonomy, alpha=5, beta=float(next(betas)))

    rows = [
        ("decide, 10,000 × 7", lambda: rcl.decide(probs, new_matrix())),
        ("decide + evaluate, 10,000 × 7", lambda: rcl.redecide(probs, labels, taxonomy, new_matrix())),
        ("evaluate only (argmax), 10,000", lambda: rcl.evaluate(labels, probs.argmax(axis=1), taxonomy)),
        (
            f"sweep {len(DEFAULT_ALPHAS)}×{len(DEFAULT_BETAS)} (α, β), 10,000 × 7",
            lambda: rcl.sweep(probs, labels, taxonomy, DEFAULT_ALPHAS, DEFAULT_BETAS),
        ),
    ]
    for size in (2_000, 10_000):
        y_true, y_pred = labels[:size], probs[:size].argmax(axis=1)
        rows.append(
            (
                f"bootstrap_ci, 1,000 resamples, {size:,}",
                lambda t=y_true, p=y_pred: rcl.bootstrap_ci(t, p, taxonomy),
            )
        )
        rows.append(
            (
                f"paired_difference, 1,000 resamples, {size:,}",
                lambda t=y_true, p=y_pred: rcl.paired_difference(t, p, t, taxonomy),
            )
        )
    print(f"median of {args.repeats} repeats")
    for name, fn in rows:
        print(f"{name:<46} {median_ms(fn, args.repeats):8.2f} ms")


if __name__ == "__main__":
    main()
