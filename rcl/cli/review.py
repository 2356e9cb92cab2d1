"""``rcl review list|set|show``: the review queue from the shell, for scripted review."""

from __future__ import annotations

import argparse
import sys

from rcl.cli import command, print_json, print_table

QUEUE_COLUMNS = ["id", "given", "suggested", "score", "p_malignant", "is_miss"]
HISTORY_COLUMNS = ["time", "id", "given", "verdict", "label", "reviewer", "round", "reason"]


def _dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic", help="the dataset reviewed (folder, CSV or 'synthetic'; default synthetic)")
    p.add_argument("--preset", help="its built-in taxonomy, when the layout does not imply one")
    p.add_argument("--malignant", metavar="A,B", help="or the malignant classes of a folder-per-class dataset")
    p.add_argument("--reviews", metavar="FILE",
                   help="the review file (default: rcl-reviews.jsonl in the dataset's folder; in the data "
                        "directory for the synthetic set or a folder you cannot write)")


def add_review(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the suspects still to review, misses first")
    _dataset_options(listing)
    listing.add_argument("--issues", metavar="FILE",
                         help="the ranking to review: the output of rcl label-issues ... --json saved to a file")
    listing.add_argument("--second", action="store_true",
                         help="the second reader's queue: first verdicts to confirm or overrule, 'unsure' first")
    listing.add_argument("--top", type=int, default=20, help="rows to print (default 20; --json lists all)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    verdict = actions.add_parser("set", help="record one verdict on a sample's label")
    _dataset_options(verdict)
    verdict.add_argument("sample_id", metavar="ID", help="the sample's id (its path in the dataset, as ranked)")
    verdict.add_argument("--verdict", required=True, help="keep, correct (with --label) or unsure (needs a second reader)")
    verdict.add_argument("--label", metavar="CLASS", help="the right class, for --verdict correct")
    verdict.add_argument("--reviewer", required=True, metavar="NAME", help="who decides (stored with the verdict)")
    verdict.add_argument("--reason", default="", metavar="TEXT", help="why, in a few words")
    verdict.add_argument("--second", action="store_true",
                         help="as a second reader: confirm or overrule the sample's first verdict")
    show = actions.add_parser("show", help="the history of verdicts and the corrections in effect")
    _dataset_options(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")


@command("review", "review suspect labels: the queue (list), a verdict (set), the history and corrections (show)",
         add_review)
def cmd_review(args: argparse.Namespace) -> int:
    from rcl.labels import review

    target = review.review_target(args.data, args.preset, args.reviews, args.malignant)
    history = review.read_reviews(target.path)
    print(f"reviews: {target.path}", file=sys.stderr)
    if args.action == "set":
        record = review.record_verdict(target.path, args.sample_id, args.verdict, reviewer=args.reviewer,
                                       given=review.label_of(target, args.sample_id), taxonomy=target.taxonomy,
                                       label=args.label, reason=args.reason, second=args.second, ids=target.labels)
        change = f" → {record['label']}" if record["label"] else ""
        print(f"{record['id']}: {record['verdict']} ({record['given']}{change}) by {record['reviewer']}, "
              f"{record['round']} reading, {record['time']}")
        return 0
    if args.action == "show":
        result = {"file": str(target.path), "summary": review.review_summary(history), "history": history,
                  "corrections": review.corrections(history)}
        if args.json:
            print_json(result)
            return 0
        s = result["summary"]
        print(f"{s['verdicts']} verdicts on {s['samples']} samples: {s['kept']} kept, {s['corrected']} corrected, "
              f"{s['unsure']} waiting for a second reader (they change nothing yet), {s['second_read']} read twice")
        print_table(history, HISTORY_COLUMNS)
        print(f"\ncorrections in effect ({len(result['corrections'])}; rcl train --label-corrections {target.path}):")
        print_table(result["corrections"], ["id", "given", "label", "reviewer", "round", "time", "reason"])
        return 0
    if not args.second and not args.issues:
        raise ValueError("issues: give --issues FILE (rcl label-issues ... --json > FILE), or --second for the "
                         "second reader's queue")
    rows = review.read_issues(args.issues) if args.issues else []
    unknown = [r["id"] for r in rows if r["id"] not in target.labels]
    if unknown:
        raise ValueError(f"issues: {len(unknown)} sample id(s) of {args.issues} are not in the dataset "
                         f"(e.g. {unknown[0]!r}): was the ranking made on another dataset?")
    queue = review.review_queue(rows, history, second=args.second)
    if args.json:
        print_json({"file": str(target.path), "second": args.second, "queue": queue})
        return 0
    who = "second reader" if args.second else "first reader"
    print(f"{len(queue)} sample(s) for a {who}" + (f" ({sum(r['is_miss'] for r in queue)} suspected misses, listed "
                                                   "first)" if not args.second else " ('unsure' first)"))
    columns = QUEUE_COLUMNS + (["earlier"] if args.second else [])
    shown = [dict(r, earlier=_verdict_text(r["earlier"])) for r in queue[: args.top]]
    print_table(shown, columns)
    return 0


def _verdict_text(record: dict | None) -> str:
    if record is None:
        return ""
    change = f"→{record['label']}" if record["label"] else ""
    return f"{record['verdict']}{change} by {record['reviewer']}"
