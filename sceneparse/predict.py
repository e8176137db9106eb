"""Segmenting image files, folders (recursively) and globs (`sceneparse predict`).

Videos (files with a suffix in VIDEO_SUFFIXES, found in folders too, and URLs) are collected here
beside the images and segmented by `sceneparse.video.segment_video`.

For each input image, OUT gets (`--outputs`, default all three):

    <stem>_index.png     class index per pixel (8-bit grey PNG; 16-bit above 256 classes)
    <stem>_color.png     the classes in the palette's colours
    <stem>_overlay.jpg   the colours blended over the photo (`--alpha`; `--legend` adds a legend)

A folder input keeps its sub-folder structure below OUT; files and globs write straight into OUT.
`--cityscapes-ids` also writes OUT/labelIds/<same relative path>/<stem>.png holding Cityscapes
`labelIds` (the official evaluator's input: point CITYSCAPES_RESULTS at OUT/labelIds); it needs a
checkpoint that predicts the 19 Cityscapes train classes. Every image keeps its own size.

An input that cannot be read is skipped with a warning; the run goes on, lists the skipped
inputs at the end and exits with 1. Files are written atomically, so nothing already written is
lost when a run stops.
"""
from __future__ import annotations

import glob
import os
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from sceneparse import viz
from sceneparse.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_LABELS
from sceneparse.inference import Segmenter
from sceneparse.utils import IMAGE_SUFFIXES, SceneparseError, read_image, save_image

OUTPUTS = ("index", "color", "overlay")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                  ".flv", ".wmv", ".3gp", ".ogv")
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_video(source: Path | str) -> bool:
    """Whether an input of `collect_inputs` is a video: a URL, a device path, or a video file suffix."""
    text = str(source)
    return (isinstance(source, str) and URL.match(source) is not None) or text.startswith("/dev/video") \
        or Path(text).suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(inputs: list[str], out: Path | None = None) -> tuple[list[tuple[Path | str, Path]], list[str]]:
    """(image or video, output stem relative to OUT) for every input, and the inputs that do not exist.

    Folders are searched for images and videos; a URL (`http://`, `rtsp://`, ...) or a device path
    (`/dev/video0`) is kept as a string. Files inside `out` are left out, so predicting into a
    sub-folder of the input twice does not segment the first run's pictures.
    """
    out = out.resolve() if out is not None else None
    jobs: dict[Path | str, Path] = {}
    missing = []
    for item in inputs:
        path = Path(item)
        if URL.match(item) or item.startswith("/dev/video"):
            stem = Path(URL.sub("", item).split("?")[0].partition("/")[2].rstrip("/")).stem or "stream"
            jobs.setdefault(item, Path(stem if URL.match(item) else path.name))
            continue
        if path.is_dir():
            found = [(f, f.relative_to(path).with_suffix("")) for f in sorted(path.rglob("*"))
                     if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
        elif path.is_file():
            found = [(path, Path(path.stem))]
        elif glob.has_magic(item):
            found = [(Path(f), Path(Path(f).stem)) for f in sorted(glob.glob(item, recursive=True))
                     if Path(f).is_file()]
        else:
            missing.append(item)
            continue
        for source, stem in found:
            if out is None or not source.resolve().is_relative_to(out):
                jobs.setdefault(source.resolve(), stem)
    seen: dict[Path, Path | str] = {}
    for source, stem in jobs.items():
        if stem in seen:
            raise SceneparseError(f"{seen[stem]} and {source} would write the same outputs ({stem}_*); "
                                  f"predict them in separate runs or put them in one folder")
        seen[stem] = source
    return list(jobs.items()), missing


def parse_outputs(text: str) -> list[str]:
    wanted = [o.strip() for o in text.split(",") if o.strip()]
    unknown = [o for o in wanted if o not in OUTPUTS]
    if unknown or not wanted:
        raise SceneparseError(f"--outputs {text}: expected a comma-separated subset of {','.join(OUTPUTS)}")
    return wanted


def cityscapes_label_ids(classes: list[str]) -> np.ndarray:
    """Lookup table train id -> Cityscapes labelId; raises unless `classes` are the 19 train classes."""
    if list(classes) != list(CITYSCAPES_CLASSES):
        raise SceneparseError(f"--cityscapes-ids needs a model of the {len(CITYSCAPES_CLASSES)} Cityscapes train "
                              f"classes; this one predicts {len(classes)} classes ({', '.join(classes[:4])}, ...)")
    table = np.zeros(len(classes), dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        if 0 <= label.train_id < len(classes):
            table[label.train_id] = label.id
    return table


def write_outputs(seg: Segmenter, image: np.ndarray, labels: np.ndarray, out: Path, stem: Path,
                  outputs: list[str], alpha: float = 0.5, legend: bool = False,
                  label_ids: np.ndarray | None = None) -> None:
    """Write the asked-for pictures of one prediction below `out` (see the module docstring)."""
    base = out / stem
    try:
        if "index" in outputs:
            save_image(labels.astype(np.uint8 if seg.num_classes <= 256 else np.uint16),
                       base.with_name(base.name + "_index.png"))
        if "color" in outputs:
            save_image(viz.colorize(labels, seg.palette), base.with_name(base.name + "_color.png"))
        if "overlay" in outputs:
            picture = viz.overlay(image, labels, seg.palette, alpha)
            if legend:
                picture = viz.add_legend(picture, seg.classes, seg.palette, only=np.unique(labels))
            save_image(picture, base.with_name(base.name + "_overlay.jpg"))
        if label_ids is not None:
            save_image(label_ids[labels], out / "labelIds" / stem.with_name(stem.name + ".png"))
    except OSError as e:
        raise SceneparseError(f"{base.parent}: cannot write outputs ({e})") from None


def predict_files(seg: Segmenter, jobs: list[tuple[Path, Path]], out: str | os.PathLike,
                  outputs: Sequence[str] = OUTPUTS, alpha: float = 0.5, legend: bool = False,
                  cityscapes_ids: bool = False, batch_size: int = 1) -> tuple[int, list[str]]:
    """Segment every (image, output stem) of `jobs` (from `collect_inputs`) into `out`.

    An unreadable image is skipped with a warning and the run goes on; returns the number of
    images written and the one-line reasons of those skipped.
    """
    outputs = list(outputs)
    if not 0.0 <= alpha <= 1.0:
        raise SceneparseError(f"--alpha {alpha}: must be between 0 and 1")
    label_ids = cityscapes_label_ids(seg.classes) if cityscapes_ids else None
    out = Path(out)
    skipped: list[str] = []
    bar = tqdm(total=len(jobs), unit="img", desc="predict", disable=None, dynamic_ncols=True)
    pending: list[tuple[Path, np.ndarray]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        for (stem, image), labels in zip(pending, seg.predict([image for _, image in pending])):
            write_outputs(seg, image, labels, out, stem, outputs, alpha, legend, label_ids)
            written += 1
            bar.update(1)
        pending.clear()

    for source, stem in jobs:
        try:
            pending.append((stem, read_image(source)))
        except SceneparseError as e:
            skipped.append(str(e))
            bar.write(f"sceneparse: warning: {e}; skipped", file=sys.stderr)
            bar.update(1)
        if len(pending) == (batch_size or 1):
            flush()
    flush()
    bar.close()
    return written, skipped
