"""Small shared helpers: the user-facing error type, atomic writes and image reading.

Every error a user can cause (bad file, bad option) is raised as `SceneparseError` with a
one-line message that names the file and the problem; the command line prints it without
a traceback.
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    import fcntl
except ImportError:  # Windows: stale temp files are recognised by age alone
    fcntl = None

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")  # what folders are searched for
# The largest image read, in pixels: PIL's decompression-bomb limit (about 89 megapixels, a
# 1.3 GB decoded array; one network pass over it needs tens of GB). Larger files are refused
# with their size, before they are decoded.
MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
TEMP_GRACE_SECONDS = 2.0  # a temp file younger than this may be one a live writer has not locked yet


class SceneparseError(Exception):
    """An error caused by user input; its message is one line naming the file and problem."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file and a failed write leaves the old file intact.
    The temp file is `.<name>.<random>.tmp`, locked (flock) while this process lives: a process
    killed mid-write (kill -9) leaves it unlocked, and `remove_stale_temp_files` (run by every
    command that writes into a folder) removes it at the next start.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed, released by the kernel if we die
    tmp = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        yield tmp
        os.replace(tmp, path)
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        finally:
            os.close(fd)


def _is_stale(tmp: Path) -> bool:
    """True when no live process is writing `tmp` (its writer died without cleaning up)."""
    try:
        if time.time() - tmp.stat().st_mtime < TEMP_GRACE_SECONDS:
            return False
        if fcntl is None:
            return time.time() - tmp.stat().st_mtime > 24 * 3600
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a live writer holds the lock
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the `.<name>.<random>.tmp` files `atomic_path` left behind in `folder` when its
    process was killed mid-write (kill -9, power loss); files live writers hold are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in (folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")):
        if tmp.is_file() and _is_stale(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def os_error_reason(e: OSError) -> str:
    """A short reason for a failed write: 'disk full', 'permission denied', ..."""
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return (e.strerror or str(e) or type(e).__name__).lower()


def writable_folder(folder: str | os.PathLike, option: str = "--out", clean: bool = True,
                    recursive: bool = False) -> Path:
    """The one check of an output folder, made before any work: create it, prove a file can be
    written there (atomically, as every output is), and remove stale temp files of a killed run.
    Raises a one-line `SceneparseError` naming the folder (and `option`) otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SceneparseError(f"{option} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".sceneparse_write_test") as tmp:
            tmp.write_bytes(b"ok")
        (folder / ".sceneparse_write_test").unlink()
    except OSError as e:
        raise SceneparseError(f"{option} {folder}: output folder is not writable ({os_error_reason(e)})") from None
    if clean:
        remove_stale_temp_files(folder, recursive)
    return folder


def writable_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check that the file `path` can be written (its folder via `writable_folder`); before any work."""
    path = Path(path)
    if path.is_dir():
        raise SceneparseError(f"{option} {path}: is a folder; give a file name")
    try:
        writable_folder(path.parent if str(path.parent) else Path("."), option)
    except SceneparseError:
        raise SceneparseError(f"{option} {path}: cannot write here (folder {path.parent} is not writable "
                              f"or not a folder)") from None
    return path


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """None (the library's choice) or a positive number of CPU threads."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise SceneparseError(f"{option} {threads}: must be at least 1 (or left out for the default)")
    return threads


def save_image(array: np.ndarray | Image.Image, path: str | os.PathLike) -> None:
    """Write an image atomically; the format follows the file suffix (PNG for masks)."""
    path = Path(path)
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def _too_large(path: Path, width: int, height: int, limit: int) -> SceneparseError:
    return SceneparseError(
        f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the "
        f"{limit / 1e6:.0f}-megapixel limit (a guard against decompression bombs and out-of-memory "
        f"runs); downscale it first")


def _open(path: Path, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and decode an image, refusing one above `max_pixels` before decoding it."""
    if not path.is_file():
        raise SceneparseError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            image = Image.open(path)
        if max_pixels and image.width * image.height > max_pixels:
            raise _too_large(path, image.width, image.height, max_pixels)
        image.load()
    except Image.DecompressionBombError as e:  # above twice PIL's limit: refused while opening
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = int(found.group(1)) if found else 0
        raise SceneparseError(f"{path}: image has {pixels / 1e6:.0f} megapixels, above the "
                              f"{(max_pixels or MAX_IMAGE_PIXELS) / 1e6:.0f}-megapixel limit (a guard against "
                              f"decompression bombs and out-of-memory runs); downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise SceneparseError(f"{path}: unreadable or corrupt image ({e})") from None
    return image


def _to_8bit(array: np.ndarray) -> np.ndarray:
    """Scale one channel of more than 8 bits to 0..255 by the bit depth its values use (10, 12,
    14 or 16 bits): a 16-bit copy of an 8-bit photo (values x 257) reads back as that photo."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if finite.max(initial=0) <= 1.0 else 255.0 if finite.max(initial=0) <= 255 else 65535.0
        return np.clip(np.rint(finite / top * 255), 0, 255).astype(np.uint8)
    array = np.clip(array.astype(np.int64), 0, None)
    peak = int(array.max(initial=0))
    bits = next((b for b in (8, 10, 12, 14, 16) if peak < 2 ** b), 32)
    if bits == 8:
        return array.astype(np.uint8)
    return np.rint(array * (255 / (2 ** bits - 1))).astype(np.uint8)


def read_image(path: str | os.PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a photo (or a colour-coded label image) as an HxWx3 uint8 RGB array.

    The one image reader: EXIF orientation is applied (a phone photo comes out upright, at the size
    it is shown); single-channel 16-bit (and 32-bit integer or float) images are scaled to 8 bits
    by the range their values use instead of clipped to white; grey, palette, RGBA, CMYK and 48-bit
    files become RGB; files above `max_pixels` (None: no limit) are refused before decoding.
    """
    path = Path(path)
    image = _open(path, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        pass
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = _to_8bit(np.asarray(image))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "LA" or (image.mode == "PA"):
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def read_label(path: str | os.PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a single-channel index mask (8- or 16-bit PNG) as an HxW integer array, values unchanged."""
    path = Path(path)
    image = _open(path, max_pixels)
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


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for speed figures and per-machine caches."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's features that decide which precision is fast: AMX, avx512_bf16, VNNI, AVX-512."""
    wanted = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


@contextlib.contextmanager
def quiet(stderr: bool = False) -> Iterator[None]:
    """Silence third-party progress prints, warnings and log lines (exporters, quantizers);
    with `stderr`, also their progress bars on stderr. Exceptions still propagate."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                (contextlib.redirect_stderr(io.StringIO()) if stderr else contextlib.nullcontext()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
