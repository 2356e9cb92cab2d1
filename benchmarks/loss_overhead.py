"""RCL and expected-risk losses against plain CE inside a full training step (SPEC losses).

A small CNN at batch 32, forward + loss + backward + optimiser step, each loss timed in
interleaved rounds in one run so machine noise hits all of them alike. Prints the ratio to CE
(goal: RCL costs <= 3% over CE).

    python benchmarks/loss_overhead.py [--rounds 7] [--steps 30] [--image-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import rcl


def small_cnn(num_classes: int) -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, num_classes))


def time_steps(model, loss, optimizer, images, targets, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss(model(images), targets).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    taxonomy = rcl.preset("isic2018")
    losses = {
        "ce": rcl.make_loss("ce"),
        "rcl": rcl.make_loss("rcl", taxonomy=taxonomy, alpha=5, beta=20),
        "expected_risk": rcl.make_loss("expected_risk", taxonomy=taxonomy, alpha=5, beta=20),
    }
    model = small_cnn(taxonomy.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    targets = torch.randint(0, taxonomy.num_classes, (args.batch_size,))
    for loss in losses.values():  # warm-up
        time_steps(model, loss, optimizer, images, targets, 3)

    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.rounds):
        for name, loss in losses.items():
            times[name].append(time_steps(model, loss, optimizer, images, targets, args.steps))

    ce = statistics.median(times["ce"])
    print(f"device cpu, threads {torch.get_num_threads()}, batch {args.batch_size}, {args.image_size} px, "
          f"{args.rounds} rounds x {args.steps} steps (median per step)")
    print(f"{'loss':<15}{'ms/step':>10}{'ratio to CE':>14}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<15}{median * 1e3:>10.2f}{median / ce:>14.3f}")
    overhead = statistics.median(times["rcl"]) / ce - 1
    print(f"RCL overhead over CE: {overhead:+.1%} (goal <= +3%)")


if __name__ == "__main__":
    main()
