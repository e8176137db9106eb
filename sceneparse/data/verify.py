"""Checking a dataset copy (`sceneparse data verify`): read every pair of every split, count
image sizes and class shares, and list every problem with the file it is in."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sceneparse.data import build_dataset, dataset_class
from sceneparse.data.cityscapes_pairs import CityscapesPairs, decode_colors
from sceneparse.data.common import SegmentationDataset
from sceneparse.utils import IGNORE_INDEX, SceneparseError

MAX_LISTED = 20  # problems printed per split; the count covers all


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


def verify(name: str, root: str, split: str | None = None, label_set: str | None = None,
           color_threshold: float = 40.0) -> tuple[str, bool]:
    """Check `split` (default: every split the dataset has); returns the report text and whether
    no problem was found. A split that is absent is reported as such unless it was asked for."""
    options = {"strict": False}
    if label_set:
        options["label_set"] = label_set
    if name == "cityscapes_pairs":
        options["threshold"] = color_threshold
    reports: list[_SplitReport] = []
    absent: list[str] = []
    errors: list[str] = []
    for s in (split,) if split else dataset_class(name).splits:
        try:
            dataset = build_dataset(name, root, s, **options)
        except SceneparseError as e:
            if split or not Path(root).is_dir():
                raise
            absent.append(s)
            errors.append(str(e))
            continue
        report = _SplitReport(dataset)
        for i in tqdm(range(len(dataset)), desc=f"verify {s}", unit="img", disable=None, leave=False):
            report.check(i)
        reports.append(report)
    if not reports:
        raise SceneparseError(errors[0])
    return _verify_text(name, root, color_threshold, reports, absent), not any(r.problems for r in reports)


def _verify_text(name: str, root: str, color_threshold: float, reports: list[_SplitReport],
                 absent: list[str]) -> str:
    first = reports[0].dataset
    lines = [f"{name} at {root}: {first.num_classes} classes ({first.label_set})", ""]
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
        lines += ["", f"label pixels farther than {color_threshold:g} from every Cityscapes colour "
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
