"""Writing the results of one video source: the overlay video and the per-frame PNGs.

A `Writer` thread takes (frame number, photo, labels) from a small bounded queue, draws the overlay
and encodes it with PyAV (H.264), and saves the index and colour PNGs; errors reach the caller on
its next `put`. Reading sources is video_sources.py; the pipeline joining both is video.py.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from sceneparse import viz
from sceneparse.inference import Segmenter
from sceneparse.utils import SceneparseError, save_image
from sceneparse.video_sources import END, describe

QUEUE_FRAMES = 4  # decoded frames waiting for the network, and results waiting for the writer (beyond a batch)


class OutputError(SceneparseError):
    """The output folder or file cannot be written (not the source's fault: a batch of inputs stops)."""


class Writer(threading.Thread):
    """Draws and writes the results of one source: overlay video frames and per-frame PNGs."""

    def __init__(self, seg: Segmenter, av, video_path: Path | None, frames_dir: Path, outputs: Sequence[str],
                 alpha: float, legend: bool, rate: Fraction, bar: tqdm, crf: int, preset: str):
        super().__init__(daemon=True, name="sceneparse-video-writer")
        self.seg, self.av, self.video_path, self.frames_dir = seg, av, video_path, frames_dir
        self.outputs, self.rate, self.bar, self.crf, self.preset = list(outputs), rate, bar, crf, preset
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.written = 0
        self.busy = 0.0  # seconds spent drawing, encoding and writing
        self.waited = 0.0  # seconds the caller waited for room in the queue
        self.container = self.stream = None
        palette = np.asarray(seg.palette, dtype=np.float32).reshape(-1, 3)
        self.blend = (1.0 - alpha, palette * alpha)  # overlay = photo * (1 - alpha) + colour * alpha
        self.legend = np.asarray(viz.legend(seg.classes, seg.palette)) if legend else None

    def put(self, item) -> None:
        """Queue one result (or END), waiting while the queue is full; raises the writer's error."""
        began = time.perf_counter()
        try:
            self._put(item)
        finally:
            self.waited += time.perf_counter() - began

    def _put(self, item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.is_alive():
                raise self.error or SceneparseError("video writer stopped unexpectedly")
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is END:
                    self._finish()
                    return
                began = time.perf_counter()
                self._write(*item)
                self.busy += time.perf_counter() - began
        except BaseException as e:  # handed to the calling thread
            self.error = e

    def overlay(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        keep, colours = self.blend
        picture = image.astype(np.float32)
        picture *= keep
        picture += colours[labels]
        picture = np.rint(picture, out=picture).astype(np.uint8)
        if self.legend is not None:  # inside the frame (top right), so the video keeps its size
            h, w = min(self.legend.shape[0], picture.shape[0]), min(self.legend.shape[1], picture.shape[1])
            picture[:h, picture.shape[1] - w:] = self.legend[:h, :w]
        return picture

    def _video_error(self, e: BaseException) -> OutputError:
        return OutputError(f"{self.video_path.parent}: cannot write the overlay video ({describe(e)})")

    def _open_video(self, width: int, height: int) -> None:
        try:
            self.container = self.av.open(str(self.video_path), "w", format="mp4")
        except (self.av.FFmpegError, OSError) as e:
            raise self._video_error(e) from None
        stream = self.container.add_stream("libx264", rate=self.rate,
                                           options={"crf": str(self.crf), "preset": self.preset})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        self.stream = stream

    def _write(self, number: int, image: np.ndarray, labels: np.ndarray) -> None:
        av = self.av
        if "overlay" in self.outputs:
            if self.container is None:
                self._open_video(image.shape[1], image.shape[0])
            frame = av.VideoFrame.from_ndarray(self.overlay(image, labels), format="rgb24")
            frame.pts = self.written
            try:
                for packet in self.stream.encode(frame):
                    self.container.mux(packet)
            except (av.FFmpegError, OSError) as e:
                raise self._video_error(e) from None
        try:
            if "index" in self.outputs:
                save_image(labels.astype(np.uint8 if self.seg.num_classes <= 256 else np.uint16),
                           self.frames_dir / f"{number:06d}_index.png")
            if "color" in self.outputs:
                save_image(viz.colorize(labels, self.seg.palette), self.frames_dir / f"{number:06d}_color.png")
        except OSError as e:
            raise OutputError(f"{self.frames_dir}: cannot write frame outputs ({e})") from None
        self.written += 1
        self.bar.update(1)

    def _finish(self) -> None:
        if self.container is not None:
            try:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
                self.container.close()
            except (self.av.FFmpegError, OSError) as e:
                raise self._video_error(e) from None
            self.container = None

    def abort(self) -> None:
        """Stop and close whatever is open (the caller removes the temporary file)."""
        self.stop.set()
        if self.is_alive():
            self.join(timeout=30)
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
