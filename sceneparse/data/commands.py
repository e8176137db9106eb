"""`sceneparse data verify|show|stats`: check a dataset, look at it, count its classes.

`class_statistics` and `load_weights` are also what training uses for `class_weights:
median_freq` and `class_weights: path/to/stats.json`.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from sceneparse.data import build_dataset, dataset_class
from sceneparse.data.cityscapes_pairs import CityscapesPairs, decode_colors
from sceneparse.data.common import SegmentationDataset
from sceneparse.utils import IGNORE_INDEX, SceneparseError, atomic_path, save_image
from sceneparse.viz import add_legend, colorize, grid

MAX_LISTED = 20          # problems printed per split; the count covers all
SHOW_WIDTH = 512         # `data show` scales wider images down to this width


def _dataset(args: argparse.Namespace, split: str, strict: bool = True) -> SegmentationDataset:
    options = {"strict": strict}
    if args.label_set:
        options["label_set"] = args.label_set
    if args.dataset == "cityscapes_pairs" and getattr(args, "color_threshold", None) is not None:
        options["threshold"] = args.color_threshold
    return build_dataset(args.dataset, args.root, split, **options)


def _splits(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.split,) if args.split else dataset_class(args.dataset).splits


def _first_split(args: argparse.Namespace) -> SegmentationDataset:
    """The dataset on --split, or on the first split that has images (pairing problems aside)."""
    errors = []
    for split in _splits(args):
        try:
            return _dataset(args, split, strict=False)
        except SceneparseError as e:
            if args.split or not Path(args.root).is_dir():
                raise
            errors.append(str(e))
    raise SceneparseError(errors[0])


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


class _SplitReport:
    """What `verify` found in one split."""

    def __init__(self, dataset: SegmentationDataset):
        self.dataset = dataset
        self.problems = list(dataset.problems)
        self.sizes: Counter = Counter()
        self.histogram = np.zeros(256, dtype=np.int64)
        self.far_pixels = 0
        self.single_valued = 0

    def check(self, i: int) -> None:
        ds = self.dataset
        try:
            if isinstance(ds, CityscapesPairs):
                image, mask, far = ds.read_decoded(i)
                self.far_pixels += int(far.sum())
                photo_far = decode_colors(image, ds.threshold)[1].mean()
                if far.mean() >= photo_far:  # real labels: ~5% off-palette, photos: 20% or more
                    self.problems.append(f"{ds.samples[i][0]}: the right half matches the Cityscapes colours "
                                         f"no better than the left ({_percent(far.mean())} vs {_percent(photo_far)} "
                                         "off-palette): expected the photo left and the colour label right")
            else:
                image, mask = ds.load(i)
        except SceneparseError as e:
            self.problems.append(str(e))
            return
        self.sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
        counts = np.bincount(mask.ravel(), minlength=256)
        self.histogram += counts
        self.single_valued += int((counts > 0).sum() == 1)

    def shares(self) -> np.ndarray:
        """Pixel share of each class, then of ignore."""
        n = self.dataset.num_classes
        values = np.append(self.histogram[:n], self.histogram[IGNORE_INDEX])
        return values / max(1, self.histogram.sum())


def run_verify(args: argparse.Namespace) -> int:
    """Read every pair of every split; print counts, sizes, class shares and problems; 1 if any problem."""
    reports: list[_SplitReport] = []
    absent: list[str] = []
    errors: list[str] = []
    for split in _splits(args):
        try:
            dataset = _dataset(args, split, strict=False)
        except SceneparseError as e:
            if args.split or not Path(args.root).is_dir():
                raise
            absent.append(split)
            errors.append(str(e))
            continue
        report = _SplitReport(dataset)
        for i in tqdm(range(len(dataset)), desc=f"verify {split}", unit="img", disable=None, leave=False):
            report.check(i)
        reports.append(report)
    if not reports:
        raise SceneparseError(errors[0])
    print(_verify_text(args, reports, absent))
    return 1 if any(r.problems for r in reports) else 0


def _verify_text(args: argparse.Namespace, reports: list[_SplitReport], absent: list[str]) -> str:
    first = reports[0].dataset
    lines = [f"{args.dataset} at {args.root}: {first.num_classes} classes ({first.label_set})", ""]
    lines.append(f"{'split':<10}{'pairs':>7}  {'problems':>8}  image sizes (WxH)")
    for r in reports:
        sizes = ", ".join(f"{size} ({n})" for size, n in r.sizes.most_common(3))
        more = f", +{len(r.sizes) - 3} more sizes" if len(r.sizes) > 3 else ""
        lines.append(f"{r.dataset.split:<10}{len(r.dataset):>7}  {len(r.problems):>8}  {sizes}{more}")
    lines += [f"{split:<10}{'absent':>7}" for split in absent]
    width = max(len(c) for c in first.classes + ("(ignore)",)) + 2
    lines += ["", "pixel share per class:", "class".ljust(width) + "".join(f"{r.dataset.split:>9}" for r in reports)]
    shares = [r.shares() for r in reports]
    for k, name in enumerate(first.classes + ("(ignore)",)):
        lines.append(name.ljust(width) + "".join(f"{_percent(s[k]):>9}" for s in shares))
    if isinstance(first, CityscapesPairs):
        far = "  ".join(f"{r.dataset.split} {_percent(r.far_pixels / max(1, r.histogram.sum()))}" for r in reports)
        lines += ["", f"label pixels farther than {args.color_threshold:g} from every Cityscapes colour "
                      f"(ignored): {far}"]
    single = sum(r.single_valued for r in reports)
    if single:
        lines += ["", f"note: {single} masks hold a single value (all one class or all ignore)"]
    problems = [p for r in reports for p in r.problems]
    if problems:
        lines += ["", "problems:"]
        for r in reports:
            lines += [f"  {p}" for p in r.problems[:MAX_LISTED]]
            if len(r.problems) > MAX_LISTED:
                lines.append(f"  ... and {len(r.problems) - MAX_LISTED} more in {r.dataset.split}")
        lines += ["", f"FAILED: {len(problems)} problem{'s' if len(problems) > 1 else ''}"]
    else:
        total = sum(len(r.dataset) for r in reports)
        splits = "1 split" if len(reports) == 1 else f"{len(reports)} splits"
        lines += ["", f"OK: {total} pairs in {splits}, no problems"]
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    """Write a PNG grid: photos beside their colourised labels, with a legend of the classes shown."""
    if args.num < 1:
        raise SceneparseError(f"--num must be at least 1, got {args.num}")
    dataset = _first_split(args)
    indices = sorted(set(np.linspace(0, len(dataset) - 1, min(args.num, len(dataset))).round().astype(int)))
    rows, present = [], set()
    for i in indices:
        image, mask = dataset.load(int(i))
        present |= set(np.unique(mask).tolist())
        colours = colorize(mask, dataset.palette)
        if image.shape[1] > SHOW_WIDTH:
            size = (SHOW_WIDTH, max(1, round(image.shape[0] * SHOW_WIDTH / image.shape[1])))
            image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
            colours = np.asarray(Image.fromarray(colours).resize(size, Image.NEAREST))
        rows.append([image, colours])
    picture = grid(rows)
    save_image(add_legend(picture, dataset.classes, dataset.palette, only=sorted(present)), args.out)
    print(f"wrote {args.out}: {len(rows)} {dataset.split} samples of {args.dataset}")
    return 0


def class_statistics(dataset: SegmentationDataset) -> dict:
    """Pixel frequencies and SegNet's median-frequency weights over every pair of `dataset`.

    freq_c = pixels of class c / all pixels of the images in which c appears, and
    weight_c = median(freq) / freq_c (Eigen & Fergus, as SegNet balances CamVid). A class that
    never appears gets weight 0 and is left out of the median.
    """
    n = dataset.num_classes
    pixels = np.zeros(n, dtype=np.int64)
    seen_in = np.zeros(n, dtype=np.int64)  # pixels of the images where each class appears
    for i in tqdm(range(len(dataset)), desc="class statistics", unit="img", disable=None, leave=False):
        mask = dataset.load(i)[1]
        counts = np.bincount(mask.ravel(), minlength=256)[:n]
        pixels += counts
        seen_in += (counts > 0) * mask.size
    freq = np.divide(pixels, seen_in, out=np.zeros(n), where=seen_in > 0)
    median = float(np.median(freq[freq > 0])) if (freq > 0).any() else 0.0
    weights = np.divide(median, freq, out=np.zeros(n), where=freq > 0)
    return {"classes": list(dataset.classes), "frequencies": [float(f) for f in freq],
            "weights": [float(w) for w in weights]}


def load_weights(path: str | os.PathLike, num_classes: int) -> list[float]:
    """Class weights from a `data stats` JSON (its "weights" list), checked against the class count."""
    path = Path(path)
    if not path.is_file():
        raise SceneparseError(f"{path}: class weights file not found")
    try:
        weights = json.loads(path.read_text())["weights"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise SceneparseError(f"{path}: expected JSON with a \"weights\" list (as `sceneparse data stats` writes)") \
            from None
    if (not isinstance(weights, list) or len(weights) != num_classes
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)):
        raise SceneparseError(f"{path}: \"weights\" must be {num_classes} non-negative numbers")
    return [float(w) for w in weights]


def run_stats(args: argparse.Namespace) -> int:
    """Print class frequencies and median-frequency weights; with --out write them as JSON."""
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
