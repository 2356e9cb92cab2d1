"""``rcl label-issues``, ``subgroups``: label quality from the shell (clean vs noisy test labels: ``rcl evaluate --label-noise``)."""

from __future__ import annotations

import argparse
import sys

from rcl.cli import command, fmt, print_json, print_table
from rcl.cli.training import add_train_options, config_from_args


def add_label_issues(p: argparse.ArgumentParser) -> None:
    from rcl.labels.issues import FINDER_DEFAULTS, RANK_METHOD, RANK_METHODS

    add_train_options(p)
    p.add_argument("--folds", type=int, default=FINDER_DEFAULTS["folds"],
                   help=f"cross-validation folds on the train split (default {FINDER_DEFAULTS['folds']}); the fold "
                        f"models are {FINDER_DEFAULTS['model']} at {FINDER_DEFAULTS['image_size']} px trained "
                        f"{FINDER_DEFAULTS['epochs']} epochs unless --model, --image-size or --epochs say otherwise")
    p.add_argument("--rank", choices=RANK_METHODS, default=RANK_METHOD,
                   help=f"order of the suspects inside the misses-first review order (default {RANK_METHOD})")
    p.add_argument("--run", dest="run_dir", metavar="RUN_DIR",
                   help="rank a finished run's stored val/test probabilities instead of training fold models")
    p.add_argument("--by", metavar="COLUMN", help="also the share of labels flagged per group of this metadata column, "
                   "with 95%% intervals (HAM10000: dx_type, age, sex, localization)")
    p.add_argument("--top", type=int, default=20, help="rows to print (default 20; --json lists all flagged)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _fold_progress(event: dict) -> None:
    if event["epoch"] == event["epochs"]:
        print(f"fold {event['fold']}/{event['folds']} trained ({event['epochs']} epochs, "
              f"last train loss {event['train_loss']:.3f})", file=sys.stderr)


@command("label-issues", "find suspect labels: out-of-fold probabilities ranked by confident learning (cleanlab)",
         add_label_issues)
def cmd_label_issues(args: argparse.Namespace) -> int:
    from rcl.labels.issues import FINDER_DEFAULTS, from_run, out_of_fold, rank_label_issues
    from rcl.labels.subgroups import (
        dataset_metadata,
        metadata_groups,
        ranking_rates,
        run_metadata,
        suspect_rate_display,
    )

    run = config = None
    if args.run_dir:
        from rcl.runs import load_run

        run = load_run(args.run_dir)
    else:
        if args.config is None:  # fold models: minutes, not a full run's epochs, network and size
            for name in ("epochs", "model", "image_size"):
                if getattr(args, name) is None:
                    setattr(args, name, FINDER_DEFAULTS[name])
        config = config_from_args(args).check()
    if args.by:  # a column the data lacks is refused before any fold model trains
        data, metadata = ((run.train["data"], run_metadata(run)) if run else
                          (config.data, dataset_metadata(config.data, preset=config.preset, malignant=config.malignant,
                                                         taxonomy=config.resolved_taxonomy(),
                                                         label_columns=config.label_columns)))
        column, groups = metadata_groups(metadata, args.by, data)
    oof = from_run(run) if run else out_of_fold(config, args.folds, None if args.json else _fold_progress)
    result = rank_label_issues(oof, args.rank)
    if args.by:
        result["by_group"] = ranking_rates(oof, result, groups, column)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['source']}\n{result['method']}")
    print(f"{result['flagged']} of {result['n']} labels flagged, {result['misses']} of them suspected misses "
          "(given benign, likely malignant), listed first")
    if "precision" in result:
        p, noise = result["precision"], result["noise"]
        print(f"injected {noise['spec']} ({noise['flipped']} flips of {noise['eligible']} eligible, seed "
              f"{noise['seed']}): precision@{p['k']} {fmt(p['precision_at_k'])} · precision@{max(1, p['k'] // 2)} "
              f"{fmt(p['precision_at_half_k'])} · flagged precision "
              f"{fmt(p['flagged_precision'])} · flagged recall {fmt(p['flagged_recall'])}")
    print_table(result["rows"][: args.top], ["id", "given", "suggested", "score", "p_malignant", "is_miss"])
    if args.by:
        print(f"\nlabels flagged by {column}, over all labels and within each given class (95% bootstrap intervals; "
              "a gap: the interval of group − rest excludes 0)")
        rows = suspect_rate_display(result["by_group"])
        print_table(rows, list(rows[0]) if rows else [])
    return 0


def add_subgroups(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--by", required=True, metavar="COLUMN", help="a metadata column of the dataset (HAM10000: dx_type, "
                   "age, sex, localization; a CSV layout: any extra column)")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("subgroups", "CER, F1 and sensitivity per subgroup of a metadata column, with bootstrap CIs and gaps",
         add_subgroups)
def cmd_subgroups(args: argparse.Namespace) -> int:
    from rcl.labels.subgroups import run_subgroups, subgroup_display
    from rcl.runs import load_run

    result = run_subgroups(load_run(args.run_dir), args.by, args.split)
    if args.json:
        print_json(result)
        return 0
    print(f"run {result['run']}, {result['split']} split ({result['n']} cases) by {result['by']}; decision: "
          f"{result['decision_rule']}; a gap: the interval of (group − rest) excludes 0")
    rows = subgroup_display(result)  # the Label quality page's table
    print_table(rows, list(rows[0]) if rows else [])
    return 0
