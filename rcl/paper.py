"""The paper in one place: its ablation grid (Table IV) and its published test figures
(Tables III and V), used by the ablation runner, reports, the app and the benchmarks.

Pure Python, no imports from the rest of ``rcl``.
"""

from __future__ import annotations

BASELINES: dict[str, str] = {"CE": "ce", "WCE": "wce", "Focal": "focal", "LS": "label_smoothing"}
"""Baseline methods of the ablation grid: display name → loss name."""

ABLATION_CONFIGS: dict[str, tuple[float, float]] = {
    "RCL-Light": (5, 5),
    "RCL-Balanced": (2, 10),
    "RCL-StructSafe": (5, 10),
    "RCL-Uniform": (10, 10),
    "RCL-Sparse": (1, 20),
    "RCL-Proposed": (5, 20),
    "RCL-HighStruct": (10, 20),
}
"""The seven RCL configurations of Table IV: name → (α false-alarm penalty, β miss penalty)."""

METHODS: tuple[str, ...] = (*BASELINES, *ABLATION_CONFIGS)
"""Every method of the ablation grid, in the paper's order."""

PROPOSED_ALPHA, PROPOSED_BETA = ABLATION_CONFIGS["RCL-Proposed"]

# Tables III and V: dataset, model, (Focal CER %, F1, accuracy %), (RCL-Proposed CER %, F1, accuracy %).
_FOCAL_VS_PROPOSED = [
    ("Brain MRI", "ResNet-50", (0.00, 0.995, 99.5), (0.00, 0.993, 99.3)),
    ("Brain MRI", "ViT-B16", (0.20, 0.990, 99.0), (0.10, 0.985, 98.6)),
    ("BreaKHis", "ResNet-50", (2.95, 0.174, 53.8), (2.36, 0.278, 56.0)),
    ("BreaKHis", "ViT-B16", (0.89, 0.259, 54.8), (0.59, 0.101, 47.8)),
    ("SICAPv2", "ResNet-50", (9.07, 0.561, 63.6), (6.23, 0.599, 69.3)),
    ("SICAPv2", "ViT-B16", (10.69, 0.666, 71.1), (0.81, 0.436, 57.8)),
    ("ISIC 2018", "ResNet-50", (39.41, 0.692, 80.9), (18.24, 0.595, 76.1)),
    ("ISIC 2018", "ViT-B16", (43.32, 0.590, 76.3), (24.10, 0.541, 69.0)),
]
# ISIC 2018 with ResNet-50: the other methods the paper reports (CER %, F1-macro; no accuracy given).
_ISIC_RESNET50_OTHERS = [
    ("CE", 39.09, 0.649), ("LS", 38.44, 0.669), ("WCE", 25.73, 0.633), ("RCL-Uniform", 32.57, 0.650),
    ("RCL-Sparse", 3.58, 0.455),
]


def _published() -> list[dict]:
    rows = []
    for dataset, model, focal, proposed in _FOCAL_VS_PROPOSED:
        for method, (cer, f1, acc) in (("Focal", focal), ("RCL-Proposed", proposed)):
            rows.append({"dataset": dataset, "model": model, "method": method, "cer": cer / 100, "f1_macro": f1,
                         "accuracy": acc / 100})
    for method, cer, f1 in _ISIC_RESNET50_OTHERS:
        rows.append({"dataset": "ISIC 2018", "model": "ResNet-50", "method": method, "cer": cer / 100, "f1_macro": f1,
                     "accuracy": None})
    return rows


PAPER_RESULTS: list[dict] = _published()
"""The paper's published test points, one dict per (dataset, model, method): ``cer`` and
``accuracy`` as fractions (``accuracy`` None where the paper gives none), ``f1_macro``."""


def published(dataset: str, model: str) -> list[dict]:
    """The published points of one (dataset, model), in the ablation grid's method order."""
    rows = [r for r in PAPER_RESULTS if r["dataset"] == dataset and r["model"] == model]
    if not rows:
        known = sorted({(r["dataset"], r["model"]) for r in PAPER_RESULTS})
        raise ValueError(f"the paper publishes no figures for {dataset!r} with {model!r}; "
                         f"it covers {', '.join(f'{d} / {m}' for d, m in known)}")
    return sorted(rows, key=lambda r: METHODS.index(r["method"]))


def headline(dataset: str, model: str, baseline: str = "Focal", method: str = "RCL-Proposed") -> dict:
    """The paper's claim for one (dataset, model): ``cer_cut`` = 1 − CER_method / CER_baseline and
    ``f1_kept`` = F1_method / F1_baseline (``cer_cut`` None when the baseline's CER is 0)."""
    rows = {r["method"]: r for r in published(dataset, model)}
    for name in (baseline, method):
        if name not in rows:
            raise ValueError(f"the paper gives no {name} figure for {dataset} / {model}")
    base, ours = rows[baseline], rows[method]
    return {"cer_cut": None if base["cer"] == 0 else 1 - ours["cer"] / base["cer"],
            "f1_kept": ours["f1_macro"] / base["f1_macro"]}


__all__ = ["ABLATION_CONFIGS", "BASELINES", "METHODS", "PAPER_RESULTS", "PROPOSED_ALPHA", "PROPOSED_BETA",
           "headline", "published"]
