"""The noise study: how CER and F1-macro move with the share of wrong training labels, per loss.

Input: listing rows of finished runs (:func:`rcl.listing.run_rows`, which carry each run's
``label_noise`` rule, its argmax test figures and their stored bootstrap intervals), one comparable
test split at a time (:mod:`rcl.comparison`): a curve only means something when every point was
tested on the same images. Output: one tidy row per (loss, noise kind, noise rate).

A run without noise (or with a rate of 0, which flips nothing) is the rate-0 point of *every* noise
kind's curve of its loss, so each curve starts from the same clean baseline. Several runs at one
point (seeds) are averaged, and the interval is the range over the seeds; a single run's interval is
its 95% bootstrap interval. The ``interval`` column says which, and ``runs`` how many runs a point
rests on.
"""

from __future__ import annotations

from collections.abc import Sequence

from rcl.comparison import comparable, split_groups
from rcl.labels.noise import parse_noise
from rcl.text import num, pct

METRICS = ("cer", "f1_macro")
BOUNDS = {"cer": ("cer_low", "cer_high"), "f1_macro": ("f1_low", "f1_high")}
STUDY_COLUMNS = ("loss", "kind", "rate", "runs", "seeds", "interval", "cer", "cer_low", "cer_high", "f1_macro",
                 "f1_low", "f1_high", "ids")


def noise_of(row: dict) -> tuple[str | None, float]:
    """``(kind, rate)`` of a listing row's ``label_noise`` rule; ``(None, 0.0)`` without one."""
    spec = parse_noise(row.get("label_noise") or None)
    return (None, 0.0) if spec is None or spec.rate == 0 else (spec.kind, float(spec.rate))


def _point(loss: str, kind: str, rate: float, members: list[dict]) -> dict:
    """One curve point from the runs at it: the mean, and the seed range or the one run's interval."""
    point = {"loss": loss, "kind": kind, "rate": rate, "runs": len(members),
             "seeds": sorted({m.get("seed") for m in members}, key=str), "ids": [m["id"] for m in members]}
    point["interval"] = "95% bootstrap CI" if len(members) == 1 else f"range over {len(members)} runs"
    for metric in METRICS:
        low, high = BOUNDS[metric]
        values = [float(m[metric]) for m in members if m.get(metric) is not None]
        point[metric] = sum(values) / len(values) if values else None
        if len(members) == 1:
            point[low], point[high] = members[0].get(low), members[0].get(high)
        else:
            point[low], point[high] = (min(values), max(values)) if values else (None, None)
    return point


def noise_study(rows: Sequence[dict]) -> list[dict]:
    """The curve points of ``rows`` (runs of one test split), sorted by loss, kind and rate.

    Only curves with at least one noisy run are returned (no noisy run: an empty list); a clean
    run joins every curve of its loss at rate 0. Each point: ``loss`` (with α/β for the matrix
    losses), ``kind``, ``rate``, ``runs``, ``seeds``, ``ids``, ``interval`` (what the bounds are)
    and per metric the value with its ``*_low`` / ``*_high`` bounds (:data:`STUDY_COLUMNS`).
    """
    points: dict[tuple[str, str | None, float], list[dict]] = {}
    for row in rows:
        kind, rate = noise_of(row)
        points.setdefault((str(row.get("loss_label") or row["loss"]), kind, rate), []).append(row)
    curves = sorted({(loss, kind) for loss, kind, _ in points if kind is not None})
    out = []
    for loss, kind in curves:
        if (loss, None, 0.0) in points:
            out.append(_point(loss, kind, 0.0, points[(loss, None, 0.0)]))
        out += [_point(loss, kind, rate, members) for (name, k, rate), members in points.items()
                if name == loss and k == kind]
    return sorted(out, key=lambda p: (p["loss"], p["kind"], p["rate"]))


def noise_groups(rows: Sequence[dict]) -> list[dict]:
    """The comparable groups (:func:`rcl.comparison.split_groups`) holding at least one noisy run,
    each with ``noisy`` (how many), most noisy runs first."""
    groups = []
    for group in split_groups(rows):
        noisy = sum(noise_of(r)[0] is not None for r in comparable(rows, group))
        if noisy:
            groups.append({**group, "noisy": noisy, "label": f"{group['label']} · {noisy} with label noise"})
    return sorted(groups, key=lambda g: -g["noisy"])


def study_display(points: Sequence[dict]) -> list[dict]:
    """:func:`noise_study` points as the page's table reads them: rates in %, intervals as text."""
    def interval(point, metric, formatter) -> str:
        low, high = (point[b] for b in BOUNDS[metric])
        return "" if low is None or high is None else f"{formatter(low)} – {formatter(high)}"

    return [{"loss": p["loss"], "noise": p["kind"], "rate": pct(p["rate"], 0), "runs": p["runs"],
             "CER": pct(p["cer"]), "CER interval": interval(p, "cer", pct), "F1-macro": num(p["f1_macro"]),
             "F1 interval": interval(p, "f1_macro", num), "interval": p["interval"],
             "seeds": ", ".join(str(s) for s in p["seeds"])} for p in points]


__all__ = ["STUDY_COLUMNS", "noise_groups", "noise_of", "noise_study", "study_display"]
