"""`sceneparse predict`: segment images, folders and globs into index, colour and overlay pictures."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sceneparse.cli.options import add_command, add_inference_options, inference_options
from sceneparse.inference import Segmenter
from sceneparse.predict import OUTPUTS, collect_inputs, parse_outputs, predict_files
from sceneparse.utils import SceneparseError


def add_parser(sub) -> None:
    p = add_command(sub, "predict", "segment images, folders or globs",
                    "sceneparse predict photo.jpg street/ \"frames/*.png\" --out predictions/ --legend")
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or globs")
    add_inference_options(p)
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    p.add_argument("--outputs", default="index,color,overlay",
                   help=f"comma-separated subset of {','.join(OUTPUTS)} to write per image")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the colours in the overlay, 0 to 1")
    p.add_argument("--legend", action="store_true", help="add a legend of the classes shown to the overlay")
    p.add_argument("--cityscapes-ids", action="store_true", help="also write labelIds PNGs")
    p.set_defaults(run=run)


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter that the checkpoint, engine and inference options ask for."""
    options = dict(inference_options(args), batch_size=args.batch_size)
    if args.engine == "onnxruntime" and args.checkpoint is None and args.onnx:
        return Segmenter.from_onnx(args.onnx, threads=args.threads, **options)  # the file's own metadata
    return Segmenter.from_checkpoint(args.checkpoint, engine=args.engine, onnx_path=args.onnx,
                                     threads=args.threads, **options)


def run(args: argparse.Namespace) -> int:
    outputs = parse_outputs(args.outputs)
    if not 0.0 <= args.alpha <= 1.0:
        raise SceneparseError(f"--alpha {args.alpha}: must be between 0 and 1")
    out = Path(args.out)
    jobs, missing = collect_inputs(args.inputs, out)
    if not jobs:
        raise SceneparseError(f"no images found in {', '.join(args.inputs)}")
    seg = build_segmenter(args)
    skipped = [f"{m}: no such file, folder or matching glob" for m in missing]
    for m in skipped:
        print(f"sceneparse: warning: {m}; skipped", file=sys.stderr)
    written, unreadable = predict_files(seg, jobs, out, outputs, args.alpha, args.legend, args.cityscapes_ids,
                                        args.batch_size or 1)
    skipped += unreadable
    print(f"wrote {', '.join(outputs)} for {written} image(s) to {out}", file=sys.stderr)
    if skipped:
        print(f"sceneparse: warning: {len(skipped)} input(s) skipped:", file=sys.stderr)
        for s in skipped:
            print(f"  {s}", file=sys.stderr)
        return 1
    return 0
