"""Training throughput: the full pipeline against the bare model step, side by side in one run.

Full pipeline = what ``rcl train`` does per batch: images read from the decoded-image cache on
disk (a memmap), batched augmentation, normalisation, forward, RCL loss, backward, AdamW step,
scheduler step, and the per-step metric bookkeeping. Bare = forward + loss + backward + step on
one pre-made tensor batch. Same model, batch size and resolution; rounds are interleaved so
machine noise hits both alike. Prints images/s and the ratio (goal >= 0.95).

    python benchmarks/throughput.py [--data synthetic|PATH] [--model small_cnn] [--image-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rcl.config import TrainConfig
from rcl.engine import Precision, load_run_data, make_loader, train_one_epoch
from rcl.losses import make_loss
from rcl.models import make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    config = TrainConfig(data=args.data, preset=args.preset, model=args.model, image_size=args.image_size,
                         batch_size=args.batch_size, loss="rcl")
    run_data = load_run_data(config)  # decodes into the cache once; rounds then read the memmap
    taxonomy = run_data.taxonomy
    device = torch.device("cpu")
    precision = Precision(device, enabled=False)
    loss_fn = make_loss("rcl", taxonomy=taxonomy)
    torch.manual_seed(0)
    model = make_model(args.model, taxonomy.num_classes, image_size=args.image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = make_loader(run_data, "train", config, device, torch.Generator().manual_seed(0))
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    targets = torch.randint(0, taxonomy.num_classes, (args.batch_size,))

    def bare(steps: int) -> float:
        model.train()
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), targets).backward()
            optimizer.step()
            scheduler.step()
        return steps * args.batch_size / (time.perf_counter() - start)

    def full(steps: int) -> float:
        start = time.perf_counter()
        train_one_epoch(model, loader, loss_fn, optimizer, scheduler, device, precision, None, max_steps=steps)
        return steps * args.batch_size / (time.perf_counter() - start)

    bare(3), full(3)  # warm-up
    results: dict[str, list[float]] = {"bare model step": [], "full pipeline": []}
    for _ in range(args.rounds):
        results["bare model step"].append(bare(args.steps))
        results["full pipeline"].append(full(args.steps))

    print(f"{args.model} · {args.image_size} px · batch {args.batch_size} · CPU threads {torch.get_num_threads()} · "
          f"{args.rounds} rounds × {args.steps} steps (median)")
    for name, values in results.items():
        print(f"{name:<18}{statistics.median(values):>10.1f} images/s")
    ratio = statistics.median(results["full pipeline"]) / statistics.median(results["bare model step"])
    print(f"ratio full / bare: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
