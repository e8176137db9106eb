"""Speed of one training step (forward + cross-entropy + backward + SGD step) on CPU; prints JSON.

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --configs 240x320x16 --variants eager,compile+channels_last
    .venv/bin/python benchmarks/train_step.py --models dabnet,dabnet:activation=relu,lmffnet --variants channels_last

For every crop/batch config it measures every model in several ways of running the same step, all
in one process and interleaved (round 1: every model and variant, round 2: every model and
variant, ...), so that the ratios compare like with like on a machine shared with other jobs. Variants combine:
  channels_last  model and images in NHWC memory format
  compile        torch.compile (inductor) of the model's training forward (the loss stays eager;
                 see sceneparse/training/step.py), which compiles the backward too
  bf16           bfloat16 autocast of the forward
  ddp2           two processes of threads/2 threads each (DistributedDataParallel over gloo, as
                 `torchrun --nproc_per_node 2` trains), each on half the batch: on a 2-core CPU the
                 small depth-wise convolutions do not use 2 threads fully (one process at 2 threads
                 runs DABNet's step about 1.6x faster than at 1 thread), so two 1-thread processes may
                 do more. Its process CPU time is not measured (the work runs in the workers).
"eager" is the plain NCHW float32 loop. Images/s counts only timed steps: the first calls (and the
compilation, reported as compile_s) are excluded. FLOPs are counted with
torch.utils.flop_counter.FlopCounterMode over one eager step (forward, loss, backward: the
convolutions' input and weight gradients, 1 multiply-add = 2 FLOPs); GFLOP/s = those FLOPs x
steps / time. Inputs are random (the data pipeline is not part of this benchmark).

Each compiled variant compiles once per input shape (1-3 minutes on 2 busy cores, much less when
inductor's on-disk cache already holds the graphs), which is why the configs after the first measure fewer
variants (`--variants-rest`) and the baseline runs without compile by default.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from model_spec import parse_model
from sceneparse.training.step import make_loss_fn, prepare_for_training
from sceneparse.models import build_model, list_models
from sceneparse.utils import IGNORE_INDEX

VARIANTS = "eager,channels_last,compile,compile+channels_last,compile+channels_last+bf16"
VARIANTS_REST = "eager,compile+channels_last,compile+channels_last+bf16"
FLAGS = {"eager", "channels_last", "compile", "bf16", "ddp2"}


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


def _ddp_worker(rank: int, world: int, port: int, conn, name: str, options: dict, num_classes: int, variant: str,
                threads: int, images: torch.Tensor, masks: torch.Tensor) -> None:
    """One process of a ddp2 variant: runs a step of its share of the batch each time it is told to."""
    torch.set_num_threads(threads)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = prepare_for_training(build_model(name, num_classes, **options), channels_last="channels_last" in variant)
    step = make_step(torch.nn.parallel.DistributedDataParallel(model), variant)
    conn.send("ready")
    while conn.recv() == "step":
        conn.send(step(images, masks).item())
    torch.distributed.destroy_process_group()


def make_ddp_step(name: str, options: dict, num_classes: int, variant: str, threads: int, images, masks,
                  processes: int = 2):
    """A step closure like make_step's, run by `processes` worker processes, each on its share of the batch."""
    with socket.socket() as s:  # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    conns, workers = [], []
    for rank in range(processes):
        parent, child = ctx.Pipe()
        worker = ctx.Process(target=_ddp_worker, daemon=True,
                             args=(rank, processes, port, child, name, options, num_classes, variant,
                                   max(1, threads // processes), images[rank::processes], masks[rank::processes]))
        worker.start()
        conns.append(parent)
        workers.append(worker)
    for conn in conns:
        conn.recv()

    def step(_images, _masks):
        for conn in conns:
            conn.send("step")
        return torch.tensor(statistics.mean(conn.recv() for conn in conns))

    def close():
        for conn in conns:
            conn.send("stop")
        for worker in workers:
            worker.join(timeout=60)

    step.close = close
    return step


def count_step_flops(model: torch.nn.Module, images, masks) -> int:
    model = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(images)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, masks, ignore_index=IGNORE_INDEX).backward()
    return counter.get_total_flops()


def bench_config(specs: list[str], num_classes: int, h: int, w: int, batch: int, variants: list[str], rounds: int,
                 steps: int) -> list[dict]:
    """Every (model, variant) at one crop and batch; the rounds take them in turn, so that the ratios
    between models and between variants compare like with like on a shared machine."""
    images, masks = make_batch(batch, h, w, num_classes)
    runners, rows, flops = {}, {}, {}
    for spec in specs:
        name, options = parse_model(spec)
        torch.manual_seed(0)
        base = build_model(name, num_classes, **options)
        flops[spec] = count_step_flops(base, images, masks)
        for variant in variants:
            if "ddp2" in variant:
                step = make_ddp_step(name, options, num_classes, variant, torch.get_num_threads(), images, masks)
            else:
                step = make_step(copy.deepcopy(base), variant)
            t0 = time.perf_counter()
            step(images, masks)  # compiles (if asked) and runs the first step
            first = time.perf_counter() - t0
            step(images, masks)  # the first steps allocate; oneDNN and inductor warm their caches
            runners[spec, variant] = step
            rows[spec, variant] = {"model": spec, "crop": [h, w], "batch": batch, "variant": variant,
                                   "compile_s": round(first, 1) if "compile" in variant else None,
                                   "round_images_per_s": [], "cpu_s": []}
            print(f"{spec} {h}x{w} batch {batch} {variant}: first step {first:.1f} s", file=sys.stderr, flush=True)
    for _ in range(rounds):
        for key, step in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss = step(images, masks)
            loss.item()
            rows[key]["round_images_per_s"].append(round(steps * batch / (time.perf_counter() - t0), 3))
            rows[key]["cpu_s"].append((time.process_time() - c0) / (steps * batch))
    for step in runners.values():
        if hasattr(step, "close"):
            step.close()
    for row in rows.values():
        best = max(row["round_images_per_s"])
        row["images_per_s"] = best
        row["images_per_s_median"] = round(statistics.median(row["round_images_per_s"]), 3)
        cpu_s = row.pop("cpu_s")
        row["cpu_s_per_image"] = None if "ddp2" in row["variant"] else round(min(cpu_s), 3)
        row["gflop_per_step"] = round(flops[row["model"]] / 1e9, 2)
        row["gflop_per_s"] = round(flops[row["model"]] / batch * best / 1e9, 1)
    for (spec, _), row in rows.items():
        eager = rows.get((spec, "eager"))
        if eager is not None:
            row["speedup_vs_eager"] = round(row["images_per_s"] / eager["images_per_s"], 2)
            row["speedup_vs_eager_rounds"] = [round(a / b, 2) for a, b in
                                              zip(row["round_images_per_s"], eager["round_images_per_s"])]
            if row["cpu_s_per_image"]:
                row["cpu_time_ratio_vs_eager"] = round(eager["cpu_s_per_image"] / row["cpu_s_per_image"], 2)
    return list(rows.values())


def check_variants(parser: argparse.ArgumentParser, option: str, text: str) -> list[str]:
    variants = text.split(",")
    unknown = [v for v in variants if set(v.split("+")) - FLAGS]
    if unknown:
        parser.error(f"{option}: unknown variant(s) {', '.join(unknown)} (flags: {', '.join(sorted(FLAGS))})")
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dabnet",
                        help="comma-separated zoo names, each with optional model options: dabnet:activation=relu")
    parser.add_argument("--configs", default="240x320x16,240x320x8,360x480x8", help="HxWxBATCH, comma-separated")
    parser.add_argument("--variants", default=VARIANTS, help="variants measured at the first config")
    parser.add_argument("--variants-rest", default=VARIANTS_REST, help="variants measured at the other configs")
    parser.add_argument("--baseline", default="pspnet_resnet18", help="zoo model to compare with ('' = none)")
    parser.add_argument("--baseline-config", default="240x320x8")
    parser.add_argument("--baseline-variants", default="eager,channels_last")
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    # every variant x config is a new compiled entry of the same function: more than dynamo's default 8
    torch._dynamo.config.recompile_limit = 64
    load_start = round(os.getloadavg()[0], 2)
    first = check_variants(parser, "--variants", args.variants)
    rest = check_variants(parser, "--variants-rest", args.variants_rest)
    baseline = check_variants(parser, "--baseline-variants", args.baseline_variants)
    configs = [parse_config(c) for c in args.configs.split(",")]
    results = []
    t_start = time.perf_counter()
    for i, (h, w, b) in enumerate(configs):
        results += bench_config(args.models.split(","), args.num_classes, h, w, b, first if i == 0 else rest,
                                args.rounds, args.steps)
    if args.baseline and args.baseline in list_models():
        h, w, b = parse_config(args.baseline_config)
        results += bench_config([args.baseline], args.num_classes, h, w, b, baseline, args.rounds, args.steps)
    report = {
        "benchmark": "train_step",
        "command": " ".join(["benchmarks/train_step.py"] + (argv if argv is not None else sys.argv[1:])),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start_and_end": [load_start, round(os.getloadavg()[0], 2)],
        "flops": "FlopCounterMode over one eager step (forward + loss + backward), 1 multiply-add = 2 FLOPs",
        "images_per_s": f"best of {args.rounds} interleaved rounds of {args.steps} step(s); median and every "
                        "round also given",
        "cpu_s_per_image": "process CPU time (all threads) per image, best round: less sensitive than wall time "
                           "to other jobs on the machine",
        "wall_s": round(time.perf_counter() - t_start, 1),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
