"""``rcl train``, ``evaluate``, ``predict``, ``reselect``, ``ablation``: training runs and their use."""

from __future__ import annotations

import argparse

from rcl.cli import command, fmt, print_json, table_lines
from rcl.errors import UserError


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train``, ``submit`` and ``ablation``: one per TrainConfig field, derived
    from the fields' metadata (help, flag, kind), so the config schema is spelled once."""
    from dataclasses import MISSING, fields

    from rcl.config import TrainConfig

    p.add_argument("--config", help="a config.json (from a run folder or written by hand); flags override it")
    for f in fields(TrainConfig):
        kind, help_text = f.metadata.get("cli"), f.metadata.get("help", "")
        if kind is None:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()
        if kind == "switch":
            p.add_argument(flag, dest=f.name, action="store_false" if default else "store_true", default=None,
                           help=help_text)
        elif kind == "list":
            p.add_argument(flag, dest=f.name, metavar="A,B", help=help_text)
        elif kind == "file":
            p.add_argument(flag, dest=f.name, metavar="FILE", help=help_text)
        else:
            choices = f.metadata.get("choices")
            extra = f"; one of: {', '.join(choices())}" if choices else ""
            shown = "" if default is None else f" (default {default:g}{extra})" if isinstance(default, float) \
                else f" (default {default}{extra})"
            p.add_argument(flag, dest=f.name, type=_scalar_type(f.type), help=help_text + shown)


def _scalar_type(annotation: str):
    """``int``, ``float`` or ``str`` from a field's annotation (``"int | None"`` → ``int``)."""
    names = {part.strip() for part in str(annotation).split("|")} - {"None"}
    return {"int": int, "float": float}.get(names.pop() if len(names) == 1 else "str", str)


def config_from_args(args: argparse.Namespace):
    """A checked TrainConfig from ``--config`` (if any) overridden by explicit flags, built by
    ``TrainConfig.from_matrix`` like the Train page's."""
    from dataclasses import fields

    from rcl.config import TrainConfig
    from rcl.severity import SeverityMatrix
    from rcl.taxonomy import Taxonomy

    base = TrainConfig.load(args.config).to_dict() if args.config else {}
    updates = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
               if f.metadata.get("cli") and getattr(args, f.name, None) is not None}
    if "taxonomy" in updates:
        updates["taxonomy"] = Taxonomy.load(updates["taxonomy"]).to_dict()
    matrix_file = updates.pop("matrix", None)
    if matrix_file is None:
        return TrainConfig.from_matrix(None, base, **updates)
    draft = TrainConfig.from_dict({**base, **updates})
    matrix = SeverityMatrix.load(matrix_file, draft.resolved_taxonomy())
    if matrix.alpha is None:  # a matrix file without sliders keeps the α/β the flags or config give
        matrix = SeverityMatrix(matrix.taxonomy, matrix.values, draft.alpha, draft.beta)
    if draft.taxonomy is None and draft.preset is None and draft.data != "synthetic":
        updates["taxonomy"] = matrix.taxonomy.to_dict()
    return TrainConfig.from_matrix(matrix, base, **updates)


class ProgressBar:
    """Training events shown as a tqdm bar (steps), with one line per epoch."""

    def __init__(self):
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        kind = event["kind"]
        if kind == "start":
            sizes = event["sizes"]
            tqdm.write(f"device {event['device']} · train {sizes['train']} · val {sizes['val']} · test {sizes['test']}")
            # disable=None: no bar when stderr is not a terminal (a log file gets the epoch lines only)
            self.bar = tqdm(total=event["total_steps"], unit="step", dynamic_ncols=True, disable=None)
            self.bar.update(event["resumed_from_epoch"] * event["total_steps"] // max(event["epochs"], 1))
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(epoch=f"{event['epoch']}/{event['epochs']}", loss=f"{event['loss']:.3f}")
        elif kind == "epoch":
            cer = "n/a" if event["val_cer"] is None else f"{event['val_cer']:.3f}"
            tqdm.write(f"epoch {event['epoch']}/{event['epochs']}: train loss {event['train_loss']:.4f} · "
                       f"val CER {cer} · val F1 {event['val_f1_macro']:.3f} · selected epoch {event['selected_epoch']}")
        elif kind == "message":
            tqdm.write(event["message"])
        elif kind == "end" and self.bar is not None:
            self.bar.close()


def add_train(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--out", help="run folder to write (default: a new folder in $RCL_HOME or ./runs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out when it already holds a finished run (only once the new run succeeds)")
    p.add_argument("--job-id", help=argparse.SUPPRESS)  # set by the background worker


@command("train", "train a model and write a run folder", add_train)
def cmd_train(args: argparse.Namespace) -> int:
    from rcl import paths
    from rcl.train import make_run_id, run_training

    config = config_from_args(args)
    out = args.out or str(paths.home() / make_run_id(config))
    callback = ProgressBar()
    if args.job_id:
        from rcl.jobs import progress_reporter

        report = progress_reporter(args.job_id)

        def callback(event, bar=callback):
            bar(event)
            report(event)

    metrics = run_training(config, out, callback, overwrite=args.overwrite)
    print(f"run folder: {out}")
    print("\n".join(test_lines(metrics)))
    return 0


def figures_line(name: str, figures: dict) -> str:
    """CER, F1-macro and accuracy, named by the decision rule that produced them."""
    return f"{name}: CER {fmt(figures['cer'])} · F1-macro {fmt(figures['f1_macro'])} · accuracy {fmt(figures['accuracy'])}"


def abstention_line(report: dict) -> str:
    """The figures with abstention (``rcl.answers.abstention_report``) in one line, with CIs."""
    from rcl.text import ci_text, num, pct

    def ci(name: str, formatter=pct) -> str:
        return ci_text(report[name]["value"], report[name]["low"], report[name]["high"], formatter)

    return (f"with referral ({report['n_answered']} answered, {report['n_refer_uncertain']} referred as uncertain, "
            f"{report['n_refer_unfamiliar']} as unfamiliar): coverage {ci('coverage')} · CER on answered cases "
            f"{ci('cer_answered')} · F1-macro on answered cases {ci('f1_macro_answered', num)} · CER if referred "
            f"cases were sent home {ci('cer_if_sent_home')}")


def test_lines(metrics: dict) -> list[str]:
    """A run's test figures: its default decision first, argmax as the labelled comparison, then
    the figures with abstention."""
    from rcl.answers import ARGMAX, default_decision_name

    decision = metrics.get("decision", {})
    rows = [(default_decision_name(float(decision.get("scale", 1.0))), decision["test"])] if "test" in decision else []
    lines = [f"test, {figures_line(name, t)}" for name, t in [*rows, (ARGMAX, metrics["test"])]]
    if "annotators" in metrics:
        lines.append(annotators_line(metrics["annotators"]))
    if "abstention" in metrics:
        lines.append(f"test {abstention_line(metrics['abstention'])}")
    return lines


def annotators_line(report: dict) -> str:
    """The expected CER under several annotators' votes (``metrics.json["annotators"]``) in one line."""
    from rcl.text import ci_text, pct

    def figure(entry: dict) -> str:
        return (f"{ci_text(entry['value'], entry['low'], entry['high'], pct)} "
                f"(expected {entry['expected_misses']:.1f} of {entry['expected_malignant']:.1f} malignant cases missed)")

    return (f"test, expected CER under the annotators' votes: {figure(report['default_decision'])} with the run's "
            f"default decision; {figure(report['argmax'])} with argmax")


def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", help="dataset in a layout the run's classes fit (without it, --label-noise scores the "
                                  "run's own stored test split)")
    p.add_argument("--preset", help="taxonomy preset of the data, when it cannot be detected")
    p.add_argument("--malignant", metavar="A,B", help="the malignant classes of a folder-per-class dataset")
    p.add_argument("--taxonomy", metavar="FILE", help="a taxonomy JSON file for the data's classes")
    p.add_argument("--ood-only", action="store_true",
                   help="data of other classes: report only the share of images flagged as unfamiliar")
    p.add_argument("--label-noise", metavar="KIND:RATE",
                   help="the illusion of accuracy: score against the test labels as given and against the same "
                        "labels noised by this rule (e.g. miss:0.1), side by side")
    p.add_argument("--seed", type=int, default=0, help="which labels --label-noise flips, and the bootstrap (default 0)")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--json", action="store_true", help="print the metrics JSON instead of the summary")


@command("evaluate", "evaluate a trained run on another dataset (external test set), or on clean vs noisy test "
                     "labels (--label-noise)", add_evaluate)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from rcl.taxonomy import Taxonomy

    if args.data is None and args.label_noise is None:
        raise UserError("--data: give the dataset to evaluate on, or --label-noise KIND:RATE to score the run's "
                        "own test split against noisy labels")
    if args.data is None and (args.preset or args.malignant or args.taxonomy or args.ood_only):
        raise UserError("--preset, --malignant, --taxonomy and --ood-only describe the data given with --data; "
                        "without it, --label-noise scores the run's own test split")
    if args.data is None:
        from rcl.labels.illusion import illusion_of_accuracy
        from rcl.runs import load_run

        result = illusion_of_accuracy(load_run(args.run_dir), args.label_noise, args.seed)
        lines = [f"run {result['run']}, its {result['split']} split"]
    else:
        from rcl.external import evaluate_external

        taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy else None
        result = evaluate_external(args.run_dir, args.data, args.preset, ood_only=args.ood_only,
                                   malignant=args.malignant, taxonomy=taxonomy, seed=args.seed,
                                   label_noise=args.label_noise)
        lines = evaluate_summary(result)
    if args.out:
        from rcl.atomic import write_json

        write_json(args.out, result)
    if args.json:
        print_json(result)
        return 0
    illusion = result if args.data is None else result.get("illusion")
    print("\n".join(lines + (illusion_lines(illusion) if illusion else []) + ([f"wrote {args.out}"] if args.out else [])))
    return 0


def illusion_lines(illusion: dict) -> list[str]:
    """The clean-vs-noisy table of :func:`rcl.labels.illusion.illusion_scores`, its noise and its rule."""
    from rcl.labels.illusion import illusion_display

    noise = illusion["noise"]
    rows = illusion_display(illusion)
    table = table_lines(rows, list(rows[0]))
    return [f"the illusion of accuracy: {illusion['n']} cases, decision: {illusion['decision_rule']}",
            f"noisy labels: {noise['spec']} ({noise['rule']}): {noise['flipped']} of {noise['eligible']} eligible "
            f"labels flipped, seed {noise['seed']}", *table]


def evaluate_summary(result: dict) -> list[str]:
    """``rcl evaluate``'s lines: the run's default decision first, argmax as the labelled comparison,
    then the figures with abstention and the unfamiliar share."""
    lines = [f"{result['n']} images of {result['data']}"]
    if "decision" in result:
        lines += [figures_line(result["decision"]["rule"], result["decision"]["test"]),
                  figures_line(result["test"]["decision"], result["test"]), abstention_line(result["abstention"])]
    if "ood" in result:
        lines.append(f"{result['ood']['flagged_share']:.1%} flagged as unfamiliar "
                     f"(about {result['ood']['expected_share_in_distribution']:.0%} expected in distribution)")
    return lines


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN_DIR", help="a run folder or an exported model folder (models/NAME)")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--matrix", help="decide under this severity matrix JSON instead of the model's own")
    p.add_argument("--rule", choices=("default", "guarantee"), default="default",
                   help="default: the run's own decision; guarantee: the rule stored by `rcl guarantee`")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("predict", "classify images with a trained run or exported model", add_predict)
def cmd_predict(args: argparse.Namespace) -> int:
    from rcl.runs import load_model
    from rcl.triage import stored_guarantee, triage

    loaded = load_model(args.source)
    matrix = guarantee = None
    if args.matrix:
        from rcl.severity import SeverityMatrix

        matrix = SeverityMatrix.load(args.matrix, loaded.taxonomy)
    if args.rule == "guarantee":
        if args.matrix:
            raise ValueError("--rule guarantee decides by its own threshold: drop --matrix")
        guarantee = stored_guarantee(loaded)
        if guarantee is None:
            raise ValueError(f"{args.source} has no guaranteed rule: run `rcl guarantee {args.source} --max-cer 0.05` "
                             "first")
        if not args.json:
            print(f"rule: {guarantee.sentence()}")
    results, failed = [], 0
    for image in args.images:
        try:
            results.append({"image": image, **triage(loaded, image, matrix, guarantee).to_dict()})
        except ValueError as exc:
            failed += 1
            results.append({"image": image, "error": str(exc)})
    if args.json:
        print_json(results)
    else:
        if loaded.synthetic:
            print("note: this model was trained on SYNTHETIC images; its predictions on real images mean nothing")
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
                continue
            print(predict_line(r))
    return 1 if failed == len(results) else 0


def predict_line(result: dict) -> str:
    """One image's answer in one line: the class, or the referral with no class as the answer."""
    from rcl.triage import SYNTHETIC_FLAG  # said once, above the lines

    answer = result["answer"]
    flags = "".join(f" · {f}" for f in result["flags"] if f != SYNTHETIC_FLAG)
    if not answer["referred"]:
        return (f"{result['image']}: {answer['text']} · P(malignant)={result['malignant_probability']:.2f} · "
                f"decided by {answer['reason']}{flags}")
    if result["probabilities_trusted"]:
        return f"{result['image']}: {answer['text'].upper()}: {answer['reason']} (no class is the answer){flags}"
    return (f"{result['image']}: {answer['text'].upper()}: {answer['reason']} (P(malignant)="
            f"{result['malignant_probability']:.2f} is untrusted; no class is the answer){flags}")


def add_reselect(p: argparse.ArgumentParser) -> None:
    from rcl.selection import SELECTION_RULES

    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--select", required=True, choices=sorted(SELECTION_RULES))
    p.add_argument("--cer-cap", type=float)
    p.add_argument("--f1-floor", type=float)
    p.add_argument("--json", action="store_true")


@command("reselect", "apply another checkpoint-selection rule to a finished run, from its stored per-epoch predictions", add_reselect)
def cmd_reselect(args: argparse.Namespace) -> int:
    from rcl.runs import load_run

    result = load_run(args.run_dir).reselect(args.select, args.cer_cap, args.f1_floor)
    if args.json:
        print_json(result)
        return 0
    print(f"rule {args.select}: epoch {result['epoch']} (trained with {result['trained_with']}: "
          f"epoch {result['trained_epoch']})")
    for split in ("val", "test"):
        m = result[split]
        print(f"  {split}: CER {fmt(m['cer'])} · F1-macro {fmt(m['f1_macro'])} · accuracy {fmt(m['accuracy'])}")
    return 0


def add_ablation(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    p.add_argument("--out", required=True, help="folder for the run folders and results.csv/.md")


@command("ablation", "the paper's baselines and 7 RCL configurations over N seeds, one results table", add_ablation)
def cmd_ablation(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rcl.ablation import ablation_configs, run_ablation

    base = config_from_args(args)
    configs = ablation_configs(base, range(args.seeds))
    table = run_ablation(configs, Path(args.out), callback_factory=lambda config: ProgressBar())
    print(table["markdown"])
    print(f"wrote {table['csv_path']} and {table['markdown_path']}")
    return 0
