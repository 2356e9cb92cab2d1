"""``rcl train``, ``evaluate``, ``predict``, ``reselect``, ``ablation``: training runs and their use."""

from __future__ import annotations

import argparse
import json

from rcl.cli import command, fmt, print_json


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``rcl train`` and ``rcl submit`` (one TrainConfig field each)."""
    from rcl.config import TrainConfig
    from rcl.losses import LOSSES
    from rcl.selection import SELECTION_RULES

    d = TrainConfig()
    p.add_argument("--config", help="a config.json (from a run folder or written by hand); flags override it")
    p.add_argument("--data", help="dataset folder or CSV, or 'synthetic' (default) for the bundled synthetic set")
    p.add_argument("--preset", help="built-in taxonomy: brain_mri, isic2018, breakhis, sicapv2")
    p.add_argument("--taxonomy", help="a taxonomy JSON file (classes and which are malignant)")
    p.add_argument("--loss", choices=sorted(LOSSES), help=f"training loss (default {d.loss})")
    p.add_argument("--alpha", type=float, help=f"false-alarm penalty, benign→malignant (default {d.alpha:g})")
    p.add_argument("--beta", type=float, help=f"miss penalty, malignant→benign (default {d.beta:g})")
    p.add_argument("--matrix", help="a severity matrix JSON file (overrides --alpha/--beta)")
    p.add_argument("--model", help=f"small_cnn, resnet18, resnet50, vit_base_patch16_224 or any timm name (default {d.model})")
    p.add_argument("--pretrained", action="store_true", default=None, help="start from timm's ImageNet weights (needs a network once)")
    p.add_argument("--weights", help="local .safetensors/.pt weights to start from (offline machines)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--image-size", type=int, help=f"pixels, square (default {d.image_size})")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay:g}")
    p.add_argument("--patience", type=int, help=f"early stopping patience in epochs (default {d.patience})")
    p.add_argument("--select", choices=sorted(SELECTION_RULES), help="checkpoint selection rule on validation (default f1)")
    p.add_argument("--cer-cap", type=float, help="for --select f1_cer_cap")
    p.add_argument("--f1-floor", type=float, help="for --select cer_f1_floor")
    p.add_argument("--limit", type=int, help="use at most N samples (stratified), for quick runs")
    p.add_argument("--max-steps", type=int, help="at most N optimiser steps per epoch (smoke tests)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no mixed precision on GPU")
    p.add_argument("--num-workers", type=int, help="data loader worker processes (default 0)")
    p.add_argument("--name", help="a label for tables and plots")
    p.add_argument("--label-noise", metavar="KIND:RATE",
                   help="flip train labels: symmetric, miss (malignant→benign) or alarm (benign→malignant), e.g. miss:0.1")


def config_from_args(args: argparse.Namespace):
    """A checked TrainConfig from ``--config`` (if any) overridden by explicit flags."""
    from rcl.config import TrainConfig
    from rcl.severity import SeverityMatrix
    from rcl.taxonomy import Taxonomy

    config = TrainConfig.load(args.config) if args.config else TrainConfig()
    updates = {}
    for field in ("data", "preset", "loss", "alpha", "beta", "model", "pretrained", "weights", "epochs",
                  "batch_size", "image_size", "lr", "weight_decay", "patience", "select", "cer_cap", "f1_floor",
                  "limit", "max_steps", "val_fraction", "test_fraction", "seed", "device", "amp", "num_workers",
                  "name", "label_noise"):
        value = getattr(args, field, None)
        if value is not None:
            updates[field] = value
    if getattr(args, "taxonomy", None):
        updates["taxonomy"] = Taxonomy.load(args.taxonomy).to_dict()
    config = type(config).from_dict({**config.to_dict(), **updates})
    if getattr(args, "matrix", None):
        taxonomy = config.resolved_taxonomy()
        matrix = SeverityMatrix.load(args.matrix, taxonomy)
        config.matrix = matrix.values.tolist()
        if config.taxonomy is None and config.preset is None and config.data != "synthetic":
            config.taxonomy = matrix.taxonomy.to_dict()
    return config.check()


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
            self.bar = tqdm(total=event["total_steps"], unit="step", dynamic_ncols=True)
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

    metrics = run_training(config, out, callback)
    test = metrics["test"]
    print(f"run folder: {out}")
    print(f"test: CER {fmt(test['cer'])} · F1-macro {fmt(test['f1_macro'])} · accuracy {fmt(test['accuracy'])} · "
          f"tiers {test['tiers']}")
    return 0


def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="dataset in a layout the run's classes fit")
    p.add_argument("--preset", help="taxonomy preset of the data, when it cannot be detected")
    p.add_argument("--ood-only", action="store_true",
                   help="data of other classes: report only the share of images flagged as unfamiliar")
    p.add_argument("--out", help="write the metrics JSON here (default: print it)")


@command("evaluate", "evaluate a trained run on another dataset (external test set)", add_evaluate)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from rcl.train import evaluate_external

    result = evaluate_external(args.run_dir, args.data, args.preset, ood_only=args.ood_only)
    if not args.out:
        print_json(result)
        return 0
    from pathlib import Path

    Path(args.out).write_text(json.dumps(result, indent=2))
    summary = [f"wrote {args.out}: {result['n']} images"]
    if "test" in result:
        test = result["test"]
        summary.append(f"CER {fmt(test['cer'])} · F1-macro {fmt(test['f1_macro'])} · accuracy {fmt(test['accuracy'])}")
    if "ood" in result:
        summary.append(f"{result['ood']['flagged_share']:.1%} flagged as unfamiliar "
                       f"(about {result['ood']['expected_share_in_distribution']:.0%} expected in distribution)")
    print(" · ".join(summary))
    return 0


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN_DIR", help="a run folder or an exported model folder (models/NAME)")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--matrix", help="decide under this severity matrix JSON instead of the model's own")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("predict", "classify images with a trained run or exported model", add_predict)
def cmd_predict(args: argparse.Namespace) -> int:
    from rcl.runs import load_model
    from rcl.triage import triage

    loaded = load_model(args.source)
    matrix = None
    if args.matrix:
        from rcl.severity import SeverityMatrix

        matrix = SeverityMatrix.load(args.matrix, loaded.taxonomy)
    results, failed = [], 0
    for image in args.images:
        try:
            results.append({"image": image, **triage(loaded, image, matrix).to_dict()})
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
            flags = "".join(f" · {f}" for f in r["flags"])
            print(f"{r['image']}: {r['argmax']} (p={r['probabilities'][r['argmax']]:.2f}) · "
                  f"P(malignant)={r['malignant_probability']:.2f} · risk-calibrated decision: {r['decision']}{flags}")
    return 1 if failed == len(results) else 0


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
