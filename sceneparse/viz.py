"""Pictures of labels and results: colourised masks, overlays, legends, grids and plots.

Images are HxWx3 uint8 arrays. Plots use matplotlib's object API on the Agg canvas, imported
inside the plotting functions (importing matplotlib is slow and no display is needed); nothing
here changes matplotlib's global backend.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sceneparse.utils import IGNORE_INDEX, SceneparseError, atomic_path, save_image

Palette = Sequence[Sequence[int]]


def _mask(mask) -> np.ndarray:
    return np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask).astype(np.int64)


def _valid(mask: np.ndarray, palette: Palette) -> np.ndarray:
    """Pixels that have a colour: inside the palette and not ignore."""
    return (mask >= 0) & (mask < len(palette)) & (mask != IGNORE_INDEX)


def colorize(mask, palette: Palette) -> np.ndarray:
    """Class-index mask (HxW) -> HxWx3 uint8 colours; ignore and unknown values are black."""
    mask = _mask(mask)
    out = np.zeros(mask.shape + (3,), dtype=np.uint8)
    valid = _valid(mask, palette)
    out[valid] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[mask[valid]]
    return out


def overlay(image, mask, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised mask over the photo; pixels without a class colour keep the photo."""
    image = np.asarray(image)
    mask = _mask(mask)
    if image.shape[:2] != mask.shape or image.ndim != 3:
        raise SceneparseError(f"overlay: image shape {image.shape} does not match mask shape {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise SceneparseError(f"overlay: alpha must be in [0, 1], got {alpha}")
    out = image.astype(np.float32)
    valid = _valid(mask, palette)
    out[valid] = (1 - alpha) * out[valid] + alpha * colorize(mask, palette)[valid]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def legend(classes: Sequence[str], palette: Palette) -> Image.Image:
    """A white vertical strip with one colour swatch and name per class."""
    font, row, pad = _font(), 18, 6
    text_width = max((int(math.ceil(font.getlength(name))) for name in classes), default=0)
    strip = Image.new("RGB", (pad * 3 + 14 + text_width, pad * 2 + row * len(classes)), "white")
    draw = ImageDraw.Draw(strip)
    for i, (name, colour) in enumerate(zip(classes, palette)):
        y = pad + i * row
        draw.rectangle([pad, y + 2, pad + 13, y + 15], fill=tuple(int(c) for c in colour), outline="black")
        draw.text((pad * 2 + 14, y + 2), name, fill="black", font=font)
    return strip


def add_legend(image, classes: Sequence[str], palette: Palette, only: Sequence[int] | None = None) -> np.ndarray:
    """The image with a legend to its right; `only` lists the class indices to show (e.g. those present)."""
    image = np.asarray(image)
    keep = range(len(classes)) if only is None else sorted({int(i) for i in only if 0 <= int(i) < len(classes)})
    strip = np.asarray(legend([classes[i] for i in keep], [palette[i] for i in keep]))
    height = max(image.shape[0], strip.shape[0])
    out = np.full((height, image.shape[1] + strip.shape[1], 3), 255, dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    out[: strip.shape[0], image.shape[1]:] = strip
    return out


def grid(rows_of_images: Sequence[Sequence], path: str | os.PathLike | None = None, gap: int = 4) -> np.ndarray:
    """Images side by side within a row, rows stacked, on white; returned, and written to `path` if given."""
    rows = [[np.asarray(im) for im in row] for row in rows_of_images]
    rows = [[np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im[..., :3] for im in row] for row in rows if row]
    if not rows:
        raise SceneparseError(f"{path or 'grid'}: no images to put in the grid")
    heights = [max(im.shape[0] for im in row) for row in rows]
    widths = [sum(im.shape[1] for im in row) + gap * (len(row) - 1) for row in rows]
    out = np.full((sum(heights) + gap * (len(rows) - 1), max(widths), 3), 255, dtype=np.uint8)
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for im in row:
            out[y: y + im.shape[0], x: x + im.shape[1]] = im
            x += im.shape[1] + gap
        y += height + gap
    if path is not None:
        save_image(out, path)
    return out


def sample_grid(dataset, num: int = 6, width: int = 512) -> np.ndarray:
    """`num` samples spread over `dataset` (anything with `load(i) -> (image, mask)`, `classes` and
    `palette`), each photo beside its colourised label, scaled down to `width`, with a legend of
    the classes shown."""
    if num < 1:
        raise SceneparseError(f"--num must be at least 1, got {num}")
    indices = sorted(set(np.linspace(0, len(dataset) - 1, min(num, len(dataset))).round().astype(int)))
    rows, present = [], set()
    for i in indices:
        image, mask = dataset.load(int(i))
        present |= set(np.unique(mask).tolist())
        colours = colorize(mask, dataset.palette)
        if image.shape[1] > width:
            size = (width, max(1, round(image.shape[0] * width / image.shape[1])))
            image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
            colours = np.asarray(Image.fromarray(colours).resize(size, Image.NEAREST))
        rows.append([image, colours])
    return add_legend(grid(rows), dataset.classes, dataset.palette, only=sorted(present))


def _save_figure(fig, path: str | os.PathLike) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_confusion(matrix, class_names: Sequence[str], path: str | os.PathLike) -> None:
    """Row-normalised confusion matrix (each ground-truth row sums to 1) as a labelled PNG."""
    from matplotlib.figure import Figure

    m = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=np.float64)
    n = len(class_names)
    if m.shape != (n, n):
        raise SceneparseError(f"{path}: confusion matrix shape {m.shape} does not match {n} class names")
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = 2.5 + 0.45 * n
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), class_names, rotation=90)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalised)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    _save_figure(fig, path)


def plot_curves(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Training curves from log rows: loss, val mIoU (and pixel acc) and lr against iteration.

    Rows may lack any key (e.g. validation rows carry no loss); missing or None values are skipped.
    Without any `iteration` the x axis is the epoch.
    """
    from matplotlib.figure import Figure

    x_key = "iteration" if any(row.get("iteration") is not None for row in rows) else "epoch"

    def series(key: str) -> tuple[list, list]:
        points = [(row[x_key], row[key]) for row in rows
                  if row.get(x_key) is not None and row.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    fig = Figure(figsize=(12, 3.5))
    panels = [("loss", ["loss"]), ("val mIoU", ["val_miou", "val_pixel_acc"]), ("learning rate", ["lr"])]
    for k, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        plotted = False
        for key in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
                plotted = True
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif len(keys) > 1:
            ax.set_ylim(0, 1)
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)
