"""Small shared helpers: the user-facing error type, atomic writes and image reading.

Every error a user can cause (bad file, bad option) is raised as `SceneparseError` with a
one-line message that names the file and the problem; the command line prints it without
a traceback.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")  # what folders are searched for


class SceneparseError(Exception):
    """An error caused by user input; its message is one line naming the file and problem."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file and a failed write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_image(array: np.ndarray | Image.Image, path: str | os.PathLike) -> None:
    """Write an image atomically; the format follows the file suffix (PNG for masks)."""
    path = Path(path)
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise SceneparseError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise SceneparseError(f"{path}: unreadable or corrupt image ({e})") from None
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo (or a colour-coded label image) as an HxWx3 uint8 RGB array."""
    return np.asarray(_open(Path(path)).convert("RGB"))


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel index mask (8- or 16-bit PNG) as an HxW integer array, values unchanged."""
    path = Path(path)
    image = _open(path)
    if image.mode == "P":
        return np.asarray(image)  # palette PNG: the indices are the labels
    if image.mode not in ("L", "I", "I;16", "I;16B", "I;16L"):
        raise SceneparseError(f"{path}: expected a single-channel index mask, got mode {image.mode}")
    return np.asarray(image)


def peak_rss_mb() -> float:
    """Peak resident memory of this process over its lifetime, in MiB (child processes not included)."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20
