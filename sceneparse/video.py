"""Segmenting videos, streams and cameras (`sceneparse predict drive.mp4`, `segment_video`).

A source is a video file (any container and codec FFmpeg reads: mp4, mov, mkv, avi, webm, ...), a
URL FFmpeg opens (`http://.../x.mp4`, `rtsp://...`), or a camera (`camera_source(0)`, or a device
path such as `/dev/video0`). Decoding goes through PyAV (`pip install "sceneparse[video]"`).

For a source with stem STEM, OUT gets (`outputs`):

    STEM_overlay.mp4        the colours blended over every frame (H.264, same frame size and rate;
                            rate / `every` with `every` > 1, so the video keeps its duration)
    STEM/000001_index.png   class indices of source frame 1 (8-bit grey PNG), and so on
    STEM/000001_color.png   the classes in the palette's colours

Frames are numbered from 1 at the start of the source (with `start`, the first kept frame has the
number it has in the whole video). The work is a stream with constant memory: a decoder thread
fills a small bounded queue, the calling thread batches frames through the network
(`Segmenter.predict_frames`), and a writer thread draws and encodes the results, so decoding and
encoding overlap with inference and at most a few frames are held at any time.

`smooth` (A, 0 <= A < 1) is an exponential moving average of the class probabilities across the
frames that are segmented: p'_t = A p'_(t-1) + (1 - A) p_t, labels = argmax p'_t. A = 0 is off and
gives exactly the per-frame result. See docs/video.md for what it does to flicker and accuracy.

The overlay video is written under a temporary name in OUT and renamed when complete: a failed or
interrupted run (Ctrl-C; SIGTERM too inside `terminate_as_interrupt()`) leaves no file under the
final name and no temporary file. Bad sources raise a one-line `SceneparseError` naming them;
an output folder that cannot be written raises `OutputError` (a `SceneparseError`).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sceneparse.inference import Segmenter, class_map
from sceneparse.utils import SceneparseError, atomic_path
from sceneparse.video_outputs import QUEUE_FRAMES, OutputError, Writer
from sceneparse.video_sources import END, Decoder, VideoReader, camera_source, source_stem

VIDEO_OUTPUTS = ("index", "color", "overlay")
# The default --smooth, from benchmarks/video.py on CamVid Seq05VD (1 Hz, the most motion between
# frames): A = 0.3 cuts label changes where the truth did not change by a fifth at equal pixel
# accuracy; 0.5 and 0.7 lose mIoU to lag. At higher frame rates there is less motion per frame,
# so less lag for the same A. See docs/video.md.
DEFAULT_SMOOTH = 0.3


class TemporalSmoother:
    """Labels from an exponential moving average of class probabilities over consecutive frames.

        smoother = TemporalSmoother(0.5)
        labels = smoother(probs)   # probs CxHxW of the next frame -> HxW labels

    p'_t = a p'_(t-1) + (1 - a) p_t (p'_1 = p_1), labels = argmax p'_t; a = 0 returns argmax p_t,
    exactly the per-frame labels. A change of frame size starts over.
    """

    def __init__(self, a: float):
        if not 0.0 <= a < 1.0:
            raise SceneparseError(f"--smooth {a}: must be at least 0 (off) and less than 1")
        self.a = float(a)
        self.state: torch.Tensor | None = None

    def __call__(self, probs) -> np.ndarray:
        p = torch.as_tensor(probs)
        if self.a == 0.0:
            return class_map(p, 0).numpy()
        if self.state is None or self.state.shape != p.shape:
            self.state = p.clone()
        else:
            self.state.mul_(self.a).add_(p, alpha=1.0 - self.a)
        return class_map(self.state, 0).numpy()


@dataclass
class VideoResult:
    """What `segment_video` did: frames segmented, their rate, where the outputs went, how fast."""
    source: str
    frames: int
    rate: float
    size: tuple[int, int]  # (H, W)
    seconds: float
    overlay: Path | None = None
    frames_dir: Path | None = None
    outputs: list[str] = field(default_factory=list)
    stages: dict = field(default_factory=dict)  # seconds: decode, write (threads); waits of the network

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_options(outputs: Sequence[str], alpha: float, every: int, start: float, duration: float | None,
                  smooth: float) -> None:
    """One-line errors for video options out of range."""
    unknown = [o for o in outputs if o not in VIDEO_OUTPUTS]
    if unknown or not outputs:
        raise SceneparseError(f"--outputs {','.join(outputs)}: expected a comma-separated subset of "
                              f"{','.join(VIDEO_OUTPUTS)}")
    if not 0.0 <= alpha <= 1.0:
        raise SceneparseError(f"--alpha {alpha}: must be between 0 and 1")
    if int(every) != every or every < 1:
        raise SceneparseError(f"--every {every}: must be a whole number of frames, at least 1")
    if not 0 <= start < math.inf:  # also refuses nan
        raise SceneparseError(f"--start {start}: must be 0 or more seconds")
    if duration is not None and not 0 < duration < math.inf:
        raise SceneparseError(f"--duration {duration}: must be a number of seconds more than 0")
    if not 0.0 <= smooth < 1.0:
        raise SceneparseError(f"--smooth {smooth}: must be at least 0 (off) and less than 1")


def segment_video(src, out: str | os.PathLike, seg: Segmenter, stem: str | None = None,
                  outputs: Sequence[str] = ("overlay",), alpha: float = 0.5, legend: bool = False,
                  every: int = 1, start: float = 0.0, duration: float | None = None,
                  smooth: float = DEFAULT_SMOOTH, batch_size: int | None = None, progress: bool = True,
                  crf: int = 20, preset: str = "veryfast") -> VideoResult:
    """Segment every `every`-th frame of `src` (a video file, URL, device path or `camera_source(n)`)
    from `start` seconds for `duration` seconds into OUT (see the module docstring).

    `smooth` is the EMA weight of past probabilities (0 = off); `batch_size` frames go through the
    network together (default: the segmenter's option, else 1); `crf`/`preset` are libx264's quality
    and speed settings. Returns a `VideoResult`; raises `SceneparseError` for a bad source and
    `OutputError` when OUT cannot be written.
    """
    outputs = list(outputs)
    check_options(outputs, alpha, every, start, duration, smooth)
    if isinstance(src, int):
        src = camera_source(src)
    out = Path(out)
    stem = stem or source_stem(src)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e})") from None
    reader = VideoReader(src, start, duration, every)
    bar = None
    try:
        frames_dir = out / stem
        if {"index", "color"} & set(outputs):
            try:
                frames_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{frames_dir}: cannot create the frames folder ({e})") from None
        video_path = out / f"{stem}_overlay.mp4"
        rate = reader.rate / every
        bar = tqdm(total=reader.expected_frames(), unit="frame", desc=stem, disable=None if progress else True,
                   dynamic_ncols=True, smoothing=0.1)
        size = batch_size or seg.options["batch_size"] or 1
        began = time.perf_counter()
        with contextlib.ExitStack() as stack:
            tmp = None
            if "overlay" in outputs:
                try:
                    tmp = stack.enter_context(atomic_path(video_path))
                except OSError as e:
                    raise OutputError(f"{out}: cannot write the overlay video ({e})") from None
            writer = Writer(seg, reader.av, tmp, frames_dir, outputs, alpha, legend, rate, bar, crf, preset)
            decoder = Decoder(reader, size + QUEUE_FRAMES)
            pending: deque = deque()  # (number, image) of frames inside predict_frames, in order

            def images() -> Iterator[np.ndarray]:
                for number, image in decoder:
                    pending.append((number, image))
                    yield image

            decoder.start()
            writer.start()
            smoother = TemporalSmoother(smooth)
            frame_shape = None
            try:
                for result in seg.predict_frames(images(), return_probs=smooth > 0, batch_size=size):
                    number, image = pending.popleft()
                    if frame_shape is None:
                        frame_shape = image.shape[:2]
                    labels = smoother(result[1]) if smooth > 0 else result
                    writer.put((number, image, labels))
                writer.put(END)
                writer.join()
                if writer.error is not None:
                    raise writer.error
            except BaseException:
                decoder.abort()
                writer.abort()
                raise
    finally:
        if bar is not None:
            bar.close()
        reader.close()
    seconds = time.perf_counter() - began
    stages = {"decode": decoder.busy, "write": writer.busy, "network_waited_for_frames": decoder.waited,
              "network_waited_for_writer": writer.waited}
    return VideoResult(reader.name, writer.written, float(rate), tuple(frame_shape or (0, 0)), seconds,
                       video_path if "overlay" in outputs else None,
                       frames_dir if {"index", "color"} & set(outputs) else None, outputs,
                       {k: round(v, 4) for k, v in stages.items()})


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so that a killed run
    cleans up its temporary files; the previous handler comes back afterwards. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
