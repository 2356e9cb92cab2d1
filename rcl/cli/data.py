"""``rcl audit``: check a dataset before training on it."""

from __future__ import annotations

import argparse

from rcl.cli import command, print_json


def add_audit(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset folder or CSV, or 'synthetic'")
    p.add_argument("--preset", help="built-in taxonomy: brain_mri, isic2018, breakhis, sicapv2")
    p.add_argument("--malignant", help="comma-separated names of the malignant classes (generic datasets)")
    p.add_argument("--taxonomy", help="a taxonomy JSON file (classes and which are malignant)")
    p.add_argument("--magnification", help="BreaKHis only: 40, 100, 200 or 400")
    p.add_argument("--label-columns", help="a CSV's annotator columns, e.g. reader1,reader2,reader3 (agreement "
                                           "is reported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits audited (default 0)")
    p.add_argument("--no-near", action="store_true", help="skip near-duplicates (no image decoding: fast)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("audit", "check a dataset: class counts per split, duplicates, group leakage, unreadable files", add_audit)
def cmd_audit(args: argparse.Namespace) -> int:
    from rcl.data import audit, load_dataset
    from rcl.data.audit import NEAR_DUPLICATE_THRESHOLD

    table = load_dataset(args.data, preset=args.preset, taxonomy=args.taxonomy, malignant=args.malignant,
                         magnification=args.magnification, label_columns=args.label_columns)
    report = audit(table, seed=args.seed, near_duplicate_threshold=None if args.no_near else NEAR_DUPLICATE_THRESHOLD)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0
