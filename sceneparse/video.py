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
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sceneparse import viz
from sceneparse.inference import Segmenter, class_map
from sceneparse.utils import SceneparseError, atomic_path, save_image

VIDEO_OUTPUTS = ("index", "color", "overlay")
# The default --smooth, from benchmarks/video.py on CamVid Seq05VD (1 Hz, the most motion between
# frames): A = 0.3 cuts label changes where the truth did not change by a fifth at equal pixel
# accuracy; 0.5 and 0.7 lose mIoU to lag. At higher frame rates there is less motion per frame,
# so less lag for the same A. See docs/video.md.
DEFAULT_SMOOTH = 0.3
OPEN_TIMEOUT = 15.0  # seconds to open a URL or camera, and to wait for its next packet
QUEUE_FRAMES = 4  # decoded frames waiting for the network, and results waiting for the writer (beyond a batch)
_END = object()


class OutputError(SceneparseError):
    """The output folder or file cannot be written (not the source's fault: a batch of inputs stops)."""


def import_av():
    """PyAV, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise SceneparseError('video input needs PyAV: pip install "sceneparse[video]"') from None
    return av


def is_url(text) -> bool:
    """Whether `text` is a URL (scheme://...), such as http://host/x.mp4 or rtsp://camera/stream."""
    return isinstance(text, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None


def camera_source(camera) -> str:
    """A camera number (0, "0") or device path (/dev/video0) as a source for `segment_video`."""
    text = str(camera)
    if text.isdigit():
        if sys.platform.startswith("linux"):
            return f"/dev/video{text}"
        return f"camera:{text}"  # macOS avfoundation index (Windows dshow needs "video=NAME": pass that)
    return text


def source_name(src) -> str:
    """How a source is named in messages: the path, or the URL without a password."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", str(src))


def source_stem(src) -> str:
    """The default output stem: the file's stem, the last part of a URL's path, or the device name."""
    text = str(src)
    if is_url(text):
        path = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", text).split("?")[0].rstrip("/")
        return Path(path).stem or "stream"
    if text.startswith("camera:"):
        return "camera" + text.split(":", 1)[1]
    return Path(text).stem or "video"


def _open_input(av, src):
    """An av input container for a file, URL, device path or camera:N."""
    text = str(src)
    options = {}
    if text.startswith("camera:"):
        fmt, text = ("avfoundation" if sys.platform == "darwin" else "dshow"), text.split(":", 1)[1]
    elif text.startswith("/dev/video"):
        fmt = "v4l2"
    else:
        fmt = None
        if not is_url(text) and not Path(text).is_file():
            raise SceneparseError(f"{source_name(src)}: file not found")
    if is_url(text) and text.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    return av.open(text, format=fmt, options=options, timeout=(OPEN_TIMEOUT, OPEN_TIMEOUT))


def _describe(e: Exception) -> str:
    """FFmpeg's reason without the errno and file name that PyAV adds (the message names the file)."""
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return str(text).splitlines()[0]


class VideoReader:
    """Decoded frames of a source's first video stream: `frames()` yields (number, HxWx3 uint8).

    Opening checks what can be checked before decoding (the source opens, has a video stream whose
    codec FFmpeg knows); decoding errors become one-line `SceneparseError`s naming the source.
    """

    def __init__(self, src, start: float = 0.0, duration: float | None = None, every: int = 1):
        av = import_av()
        self.av, self.src, self.name = av, src, source_name(src)
        self.start, self.duration, self.every = float(start), duration, int(every)
        self.live = not Path(str(src)).is_file() or str(src).startswith("/dev/")
        try:
            self.container = _open_input(av, src)
        except SceneparseError:
            raise
        except (av.FFmpegError, OSError, ValueError) as e:
            kind = "cannot open" if is_url(str(src)) or self.live else "unreadable, corrupt or truncated video"
            raise SceneparseError(f"{self.name}: {kind} ({_describe(e)})") from None
        try:
            streams = self.container.streams.video
            if not streams:
                kinds = sorted({s.type for s in self.container.streams}) or ["none"]
                raise SceneparseError(f"{self.name}: no video stream (streams: {', '.join(kinds)})")
            self.stream = streams[0]
            if self.stream.codec_context is None:
                raise SceneparseError(f"{self.name}: unknown video codec (FFmpeg has no decoder for it)")
            self.stream.thread_type = "AUTO"  # frame and slice threads in the decoder
            rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
            self.rate = Fraction(rate) if rate and rate > 0 else Fraction(30)
        except BaseException:
            self.close()
            raise

    @property
    def codec(self) -> str:
        return self.stream.codec_context.name

    def expected_frames(self) -> int | None:
        """How many frames `frames()` should yield, when the source says how long it is (else None)."""
        rate = float(self.rate)
        count = self.stream.frames or None
        if count is None and self.stream.duration and self.stream.time_base:
            count = int(self.stream.duration * self.stream.time_base * rate + 0.5)
        if count is None and self.container.duration:
            count = int(self.container.duration / 1e6 * rate + 0.5)
        if count is None and self.duration is None:
            return None
        n = count - int(self.start * rate + 0.5) if count is not None else float("inf")
        if self.duration is not None:
            n = min(n, int(self.duration * rate + 0.5))
        return (max(0, int(n)) + self.every - 1) // self.every

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number from 1 at the source's start, HxWx3 uint8 RGB) of the selected frames."""
        av, stream = self.av, self.stream
        rate = float(self.rate)
        t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        half = 0.5 / rate
        begin = t0 + self.start
        end = begin + self.duration if self.duration is not None else None
        if self.start > 0 and not self.live:
            try:
                self.container.seek(int(begin / stream.time_base), stream=stream, backward=True)
            except (av.FFmpegError, OSError, ValueError):
                pass  # not seekable: decode from the start and drop frames
        number = first = None
        size = None
        decoded = kept = 0
        try:
            for frame in self.container.decode(stream):
                decoded += 1
                when = frame.time if frame.time is not None else t0 + (decoded - 1) / rate
                if when < begin - half:
                    continue
                if end is not None and when >= end - half:
                    break
                if first is None:  # numbered by its time; then one by one
                    number = first = int(round((when - t0) * rate)) + 1
                else:
                    number += 1
                if (number - first) % self.every:
                    continue
                if size is None:
                    size = (frame.width, frame.height)
                if (frame.width, frame.height) == size:
                    array = frame.to_ndarray(format="rgb24")
                else:  # the stream changed size: keep the first size for the outputs
                    array = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                kept += 1
                yield number, array
        except av.FFmpegError as e:
            raise SceneparseError(f"{self.name}: corrupt or truncated video, decoding failed after "
                                  f"{decoded} frame(s) ({_describe(e)})") from None
        if not kept:
            where = f" from --start {self.start:g} s" if self.start else ""
            raise SceneparseError(f"{self.name}: no video frames{where} (the file holds a video stream "
                                  f"but {decoded} frames were decoded)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


class _Writer(threading.Thread):
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
        """Queue one result (or _END), waiting while the queue is full; raises the writer's error."""
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
                if item is _END:
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

    def _open_video(self, width: int, height: int) -> None:
        try:
            self.container = self.av.open(str(self.video_path), "w", format="mp4")
        except (self.av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.video_path.parent}: cannot write the overlay video ({_describe(e)})") from None
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
                raise OutputError(f"{self.video_path.parent}: cannot write the overlay video ({_describe(e)})") \
                    from None
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
                raise OutputError(f"{self.video_path.parent}: cannot write the overlay video ({_describe(e)})") \
                    from None
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


class _Decoder(threading.Thread):
    """Runs `VideoReader.frames()` ahead of the network into a small bounded queue."""

    def __init__(self, reader: VideoReader, size: int):
        super().__init__(daemon=True, name="sceneparse-video-decoder")
        self.reader = reader
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.stop = threading.Event()
        self.busy = 0.0  # seconds spent decoding and converting frames
        self.waited = 0.0  # seconds the consumer waited for a frame

    def run(self) -> None:
        try:
            frames = self.reader.frames()
            while True:
                began = time.perf_counter()
                item = next(frames, _END)
                self.busy += time.perf_counter() - began
                if item is _END or not self._put(item):
                    break
            self._put(_END)
        except BaseException as e:
            self._put(e)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            began = time.perf_counter()
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            finally:
                self.waited += time.perf_counter() - began
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def abort(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(timeout=30)


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
    if start < 0:
        raise SceneparseError(f"--start {start}: must be 0 or more seconds")
    if duration is not None and duration <= 0:
        raise SceneparseError(f"--duration {duration}: must be more than 0 seconds")
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
            writer = _Writer(seg, reader.av, tmp, frames_dir, outputs, alpha, legend, rate, bar, crf, preset)
            decoder = _Decoder(reader, size + QUEUE_FRAMES)
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
                writer.put(_END)
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
