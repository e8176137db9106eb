"""`sceneparse benchmark`: inference latency, throughput, FLOPs and peak memory of one network."""
from __future__ import annotations

import argparse
import json

from sceneparse.benchmark import ENGINES, benchmark, format_result, load_model
from sceneparse.cli.options import add_command, parse_size
from sceneparse.utils import check_threads


def add_parser(sub) -> None:
    p = add_command(sub, "benchmark", "inference latency, throughput, FLOPs and peak memory",
                    "sceneparse benchmark --checkpoint camvid --size 360x480 --engine openvino-int8 --calibration "
                    "camvid/train --eval-root camvid")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help="zoo network with random weights (default: pspnet_resnet18)")
    g.add_argument("--checkpoint", default=None, help="checkpoint path or built-in model name")
    p.add_argument("--num-classes", type=int, default=19, help="classes of a --model network")
    p.add_argument("--size", default="512x1024", metavar="HxW", help="input size")
    p.add_argument("--engine", default="torch", choices=ENGINES, help="what runs the network")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    p.add_argument("--runs", type=int, default=10, help="timed runs (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--calibration", default=None,
                   help="images for the int8 engines' calibration (default: the bundled demo photos)")
    p.add_argument("--eval-root", default=None, metavar="DIR",
                   help="also score the engine and torch f32 on this dataset (the checkpoint's) and print both mIoUs")
    p.add_argument("--eval-split", default="test", help="split for --eval-root (default: test)")
    p.add_argument("--eval-limit", type=int, default=None, metavar="N", help="--eval-root: only the first N images")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size, "--size", minimum=32)
    check_threads(args.threads)  # before the network is built
    model, name, meta = load_model(args.checkpoint, args.model, args.num_classes)
    result = benchmark(model, name, meta, size, engine=args.engine, threads=args.threads,
                       batch_size=args.batch_size, runs=args.runs, warmup=args.warmup, calibration=args.calibration,
                       eval_root=args.eval_root, eval_split=args.eval_split, eval_limit=args.eval_limit)
    print(json.dumps(result) if args.json else format_result(result))
    return 0
