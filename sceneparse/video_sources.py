"""Reading video sources frame by frame: files, URLs and cameras through PyAV, and a decoder
thread that keeps a small queue of frames ahead of the network (used by `sceneparse.video`)."""
from __future__ import annotations

import contextlib
import queue
import re
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from sceneparse.utils import SceneparseError

OPEN_TIMEOUT = 15.0  # seconds to open a URL or camera, and to wait for its next packet
END = object()  # marks the end of a queue of frames or results


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


def describe(e: Exception) -> str:
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
            raise SceneparseError(f"{self.name}: {kind} ({describe(e)})") from None
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

    def seconds(self) -> float | None:
        """The video's length as its stream or container states it (None when neither does)."""
        if self.stream.duration and self.stream.time_base:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration:
            return self.container.duration / 1e6
        return None

    def expected_frames(self) -> int | None:
        """How many frames `frames()` should yield, when the source says how long it is (else None)."""
        rate = float(self.rate)
        count = self.stream.frames or None
        seconds = self.seconds()
        if count is None and seconds is not None:
            count = int(seconds * rate + 0.5)
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
                                  f"{decoded} frame(s) ({describe(e)})") from None
        if not kept:
            seconds = self.seconds()
            if self.start and decoded and seconds is not None:
                raise SceneparseError(f"{self.name}: no video frames from --start {self.start:g} s "
                                      f"(the video is {seconds:.1f} s long)")
            where = f" from --start {self.start:g} s" if self.start else ""
            raise SceneparseError(f"{self.name}: no video frames{where} (the file holds a video stream "
                                  f"but {decoded} frames were decoded)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


class Decoder(threading.Thread):
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
                item = next(frames, END)
                self.busy += time.perf_counter() - began
                if item is END or not self._put(item):
                    break
            self._put(END)
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
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def abort(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(timeout=30)
