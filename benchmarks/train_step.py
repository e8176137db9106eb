"""Speed of one training step (forward + cross-entropy + backward + SGD step) on CPU; prints JSON.

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --configs 240x320x16 --variants eager,compile+channels_last

For every model and crop/batch config it measures several ways of running the same step, all in
one process and interleaved (round 1: every variant, round 2: every variant, ...), so that the
ratios compare like with like on a machine shared with other jobs. Variants combine:
  channels_last  model and images in NHWC memory format
  compile        torch.compile (inductor) of forward + loss, which compiles the backward too
  bf16           bfloat16 autocast of the forward
"eager" is the plain NCHW float32 loop. Images/s counts only timed steps: the first calls (and the
compilation, reported as compile_s) are excluded. FLOPs are counted with
torch.utils.flop_counter.FlopCounterMode over one eager step (forward, loss, backward: the
convolutions' input and weight gradients, 1 multiply-add = 2 FLOPs); GFLOP/s = those FLOPs x
steps / time. Inputs are random (the data pipeline is not part of this benchmark).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sceneparse.engine.fast import make_loss_fn, prepare_for_training
from sceneparse.models import build_model, list_models
from sceneparse.utils import IGNORE_INDEX

VARIANTS = ["eager", "channels_last", "compile", "compile+channels_last", "compile+channels_last+bf16"]


def parse_config(text: str) -> tuple[int, int, int]:
    h, w, b = (int(v) for v in text.lower().split("x"))
    return h, w, b


def make_batch(batch: int, h: int, w: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, h, w, generator=g)
    masks = torch.randint(0, num_classes, (batch, h, w), generator=g)
    masks[:, : h // 10] = IGNORE_INDEX  # some void pixels, as in real labels
    return images, masks


def make_step(model: torch.nn.Module, variant: str):
    """A closure running one SGD step of `model` in the given variant; returns the loss tensor."""
    flags = set(variant.split("+")) - {"eager"}
    model = prepare_for_training(model, channels_last="channels_last" in flags)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    loss_fn = make_loss_fn(model, criterion, channels_last="channels_last" in flags, compile="compile" in flags,
                           bf16="bf16" in flags)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step(images, masks):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(images, masks)
        loss.backward()
        optimizer.step()
        return loss

    return step


def count_step_flops(model: torch.nn.Module, images, masks) -> int:
    model = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(images)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, masks, ignore_index=IGNORE_INDEX).backward()
    return counter.get_total_flops()


def bench_config(name: str, num_classes: int, h: int, w: int, batch: int, variants: list[str], rounds: int,
                 steps: int) -> list[dict]:
    torch.manual_seed(0)
    base = build_model(name, num_classes)
    images, masks = make_batch(batch, h, w, num_classes)
    flops = count_step_flops(base, images, masks)
    runners, rows = {}, {}
    for variant in variants:
        step = make_step(copy.deepcopy(base), variant)
        t0 = time.perf_counter()
        step(images, masks)  # compiles (if asked) and runs the first step
        first = time.perf_counter() - t0
        step(images, masks)  # the first steps allocate; oneDNN and inductor warm their caches
        runners[variant] = step
        rows[variant] = {"model": name, "crop": [h, w], "batch": batch, "variant": variant,
                         "compile_s": round(first, 1) if "compile" in variant else None, "round_images_per_s": []}
        print(f"{name} {h}x{w} batch {batch} {variant}: first step {first:.1f} s", file=sys.stderr, flush=True)
    for _ in range(rounds):
        for variant, step in runners.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = step(images, masks)
            loss.item()
            rows[variant]["round_images_per_s"].append(round(steps * batch / (time.perf_counter() - t0), 3))
    eager = rows.get("eager")
    for row in rows.values():
        best = max(row["round_images_per_s"])
        row["images_per_s"] = best
        row["images_per_s_median"] = round(statistics.median(row["round_images_per_s"]), 3)
        row["gflop_per_step"] = round(flops / 1e9, 2)
        row["gflop_per_s"] = round(flops / batch * best / 1e9, 1)
        if eager is not None:
            row["speedup_vs_eager"] = round(best / max(eager["round_images_per_s"]), 2)
            row["speedup_vs_eager_rounds"] = [round(a / b, 2) for a, b in
                                              zip(row["round_images_per_s"], eager["round_images_per_s"])]
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dabnet", help="comma-separated zoo names")
    parser.add_argument("--configs", default="240x320x16,240x320x8,360x480x8", help="HxWxBATCH, comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--baseline", default="pspnet_resnet18",
                        help="zoo model measured at the first config with eager and the best variant ('' = none)")
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved measurement rounds")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    unknown = [v for v in variants if set(v.split("+")) - {"eager", "channels_last", "compile", "bf16"}]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}")
    configs = [parse_config(c) for c in args.configs.split(",")]
    results = []
    t_start = time.perf_counter()
    for name in args.models.split(","):
        for h, w, b in configs:
            results += bench_config(name, args.num_classes, h, w, b, variants, args.rounds, args.steps)
    if args.baseline and args.baseline in list_models():
        h, w, b = configs[0]
        dab = [r for r in results if (r["crop"], r["batch"]) == ([h, w], b)]
        best = max(dab, key=lambda r: r["images_per_s"])["variant"]
        results += bench_config(args.baseline, args.num_classes, h, w, b, list(dict.fromkeys(["eager", best])),
                                args.rounds, max(1, args.steps // 2))
    report = {
        "benchmark": "train_step",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "flops": "FlopCounterMode over one eager step (forward + loss + backward), 1 multiply-add = 2 FLOPs",
        "images_per_s": f"best of {args.rounds} interleaved rounds of {args.steps} steps (median also given)",
        "wall_s": round(time.perf_counter() - t_start, 1),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
