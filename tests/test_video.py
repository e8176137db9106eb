"""Video input (`sceneparse predict clip.mp4`, `segment_video`, `Segmenter.predict_frames`): overlay
videos that keep frame count, size and rate; per-frame outputs equal to `predict`; constant memory;
temporal smoothing; one-line errors for bad inputs; no half-written file after an interruption.

Clips are assembled here with PyAV from the bundled CamVid frames (a camera panning across them),
small (72x96) so that the built-in `camvid` model runs them in milliseconds per frame.
"""
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse.cli import main
from sceneparse.inference import Segmenter
from sceneparse.video import OutputError, segment_video
from sceneparse.video_sources import import_av

from conftest import ROOT, SAMPLES

av = pytest.importorskip("av", reason='PyAV is not installed: pip install "sceneparse[video]"')

pytestmark = pytest.mark.usefixtures("one_thread")

PHOTOS = sorted((SAMPLES / "camvid" / "CamVid" / "train").glob("*.png")) + [SAMPLES / "demo" / "street.png"]
H, W = 72, 96


def pan(n: int, h: int = H, w: int = W, seed: int = 0, noise: float = 0.0) -> list[np.ndarray]:
    """`n` frames of a camera panning and zooming slowly across the bundled street photos (360x480)."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in PHOTOS]
    frames = []
    for i in range(n):
        photo = photos[(i // 20) % len(photos)]
        t = (i % 20) / 20
        cw, ch = int(384 - 64 * t), int(288 - 48 * t)
        x0, y0 = int(8 + 80 * t), int(8 + 40 * t)
        frame = np.asarray(photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR))
        if noise:
            frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        frames.append(frame)
    return frames


def write_clip(path, frames, rate=15, codec="libx264", fmt=None, pix_fmt="yuv420p"):
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2] if frames else (H, W)
        stream.pix_fmt = pix_fmt
        container.start_encoding()  # a header even without frames
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def decode(path) -> tuple[list[np.ndarray], Fraction, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate, (stream.height, stream.width)


def read_index(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def flicker(maps) -> float:
    return float(np.mean([np.mean(a != b) for a, b in zip(maps, maps[1:])]))


@pytest.fixture(scope="module")
def seg():
    return Segmenter.from_checkpoint("camvid")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "drive.mp4", pan(12), rate=15)


def test_overlay_video_keeps_frames_size_and_rate_and_index_frames_equal_predict(clip, seg, tmp_path):
    out = tmp_path / "out"
    code = main(["predict", str(clip), "--out", str(out), "--outputs", "overlay,index", "--smooth", "0",
                 "--legend"])
    assert code == 0
    frames, rate, size = decode(clip)
    overlay, overlay_rate, overlay_size = decode(out / "drive_overlay.mp4")
    assert len(overlay) == len(frames) == 12
    assert overlay_rate == rate == 15 and overlay_size == size == (H, W)
    assert sorted(p.name for p in (out / "drive").iterdir()) == [f"{k:06d}_index.png" for k in range(1, 13)]
    for k in (1, 6, 12):  # frame k of the video, decoded and saved as an image, through `predict`
        Image.fromarray(frames[k - 1]).save(tmp_path / f"frame{k}.png")
        assert np.array_equal(read_index(out / "drive" / f"{k:06d}_index.png"), seg.predict(tmp_path / f"frame{k}.png"))
    assert sorted(p.name for p in out.iterdir()) == ["drive", "drive_overlay.mp4"]  # no temporary file left


def test_every_start_duration_and_odd_sizes(seg, tmp_path):
    clip = write_clip(tmp_path / "odd.mkv", pan(15, 63, 85), rate=10, pix_fmt="yuv444p")
    result = segment_video(clip, tmp_path / "a", seg, outputs=["overlay", "color"], every=2, progress=False)
    frames, rate, size = decode(tmp_path / "a" / "odd_overlay.mp4")
    assert result.frames == len(frames) == 8 and rate == 5 and size == (63, 85)  # rate / every: same duration
    assert sorted(p.name for p in (tmp_path / "a" / "odd").iterdir()) == [f"{k:06d}_color.png"
                                                                          for k in range(1, 16, 2)]
    result = segment_video(clip, tmp_path / "b", seg, outputs=["index"], start=0.5, duration=0.4, smooth=0,
                           progress=False)
    assert result.overlay is None and not (tmp_path / "b" / "odd_overlay.mp4").exists()
    assert sorted(p.name for p in (tmp_path / "b" / "odd").iterdir()) == [f"{k:06d}_index.png" for k in (6, 7, 8, 9)]
    source = decode(clip)[0]
    assert np.array_equal(read_index(tmp_path / "b" / "odd" / "000007_index.png"), seg.predict(source[6]))


def test_predict_frames_is_lazy_batched_and_in_order(seg):
    frames = pan(5) + pan(2, 64, 80, seed=1)  # a size change starts a new batch
    pulled = []

    def stream():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    results = seg.predict_frames(stream(), batch_size=3)
    first = next(results)
    assert len(pulled) == 3  # one batch read ahead, not the whole stream
    labels = [first] + list(results)
    assert len(labels) == len(frames)
    for frame, lab in zip(frames, labels):
        assert np.array_equal(lab, seg.predict(frame))
    lab, probs = next(seg.predict_frames(iter(frames[:1]), return_probs=True))
    assert probs.shape == (seg.num_classes, H, W) and np.array_equal(lab, probs.argmax(0))


def test_max_size_scales_large_images_for_the_network(tmp_path):
    image = pan(1, 96, 128)[0]
    capped = Segmenter.from_checkpoint("camvid", max_size=64)
    labels = capped.predict(image)
    assert labels.shape == (96, 128)
    assert np.array_equal(labels, Segmenter.from_checkpoint("camvid", resize=(48, 64)).predict(image))
    small = pan(1, 48, 64)[0]
    assert np.array_equal(capped.predict(small), Segmenter.from_checkpoint("camvid").predict(small))
    Image.fromarray(image).save(tmp_path / "big.png")
    assert main(["predict", str(tmp_path / "big.png"), "--out", str(tmp_path / "o"), "--outputs", "index",
                 "--max-size", "64"]) == 0
    assert np.array_equal(read_index(tmp_path / "o" / "big_index.png"), labels)


def test_smoothing_lowers_flicker_and_zero_is_per_frame(seg, tmp_path):
    frames = pan(10, noise=12.0)  # sensor noise makes the per-frame labels flicker
    clip = write_clip(tmp_path / "noisy.mp4", frames, rate=10)
    maps = {}
    for a in (0.0, 0.6):
        segment_video(clip, tmp_path / str(a), seg, outputs=["index"], smooth=a, batch_size=4, progress=False)
        maps[a] = [read_index(p) for p in sorted((tmp_path / str(a) / "noisy").glob("*_index.png"))]
    per_frame = [seg.predict(f) for f in decode(clip)[0]]
    assert all(np.array_equal(a, b) for a, b in zip(maps[0.0], per_frame)) and len(maps[0.0]) == 10
    assert flicker(maps[0.6]) < 0.8 * flicker(maps[0.0])
    assert np.array_equal(maps[0.6][0], per_frame[0])  # the first frame has no past to average with


def _clip_with_codec_renamed(tmp_path):
    data = write_clip(tmp_path / "ok.mkv", pan(3)).read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    return data.replace(b"V_MPEG4/ISO/AVC", b"V_XXXXX/ISO/AVC")


def _audio_only(path):
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, expected", [
    ("corrupt", "unreadable, corrupt or truncated video"),
    ("truncated", "unreadable, corrupt or truncated video"),
    ("no_video_stream", "no video stream"),
    ("zero_frames", "no video frames"),
    ("start_past_end", "no video frames from --start 100 s (the video is 0.8 s long)"),
    ("unknown_codec", "unknown video codec"),
    ("missing", "no such file"),
    ("url", "cannot open"),
    ("unwritable_out", "output folder is not writable"),
])
def test_bad_input_is_one_line_naming_it(case, expected, clip, tmp_path, capsys):
    out = tmp_path / "out"
    src = tmp_path / f"{case}.mp4"
    extra = []
    if case == "corrupt":
        src.write_bytes(os.urandom(5000))
    elif case == "truncated":
        src.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif case == "no_video_stream":
        src = tmp_path / "sound.mkv"
        _audio_only(src)
    elif case == "zero_frames":
        src = tmp_path / "empty.avi"
        write_clip(src, [], codec="mpeg4")
    elif case == "unknown_codec":
        src = tmp_path / "odd_codec.mkv"
        src.write_bytes(_clip_with_codec_renamed(tmp_path))
    elif case == "start_past_end":
        src = clip
        extra = ["--start", "100"]
    elif case == "url":
        src = f"http://127.0.0.1:{_free_port()}/drive.mp4"
    elif case == "unwritable_out":
        src = clip
        out = tmp_path / "a_file"
        out.write_text("not a folder")
        out = out / "sub"
    started = time.monotonic()
    assert main(["predict", str(src), "--out", str(out), *extra]) == 2
    assert time.monotonic() - started < 60  # never a hang
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sceneparse: error: "), err
    assert expected in lines[0] and (str(src) in lines[0] or str(out) in lines[0]), lines[0]
    assert "Traceback" not in err
    assert not any(tmp_path.rglob("*_overlay.mp4")) and not any(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("option, value, expected", [
    ("--start", "-1", "--start -1.0: must be 0 or more seconds"),
    ("--start", "nan", "--start nan: must be 0 or more seconds"),
    ("--start", "inf", "--start inf: must be 0 or more seconds"),
    ("--duration", "0", "--duration 0.0: must be a number of seconds more than 0"),
    ("--duration", "nan", "--duration nan: must be a number"),
    ("--duration", "inf", "--duration inf: must be a number"),
    ("--every", "0", "--every 0: must be a whole number"),
    ("--smooth", "nan", "--smooth nan: must be at least 0"),
])
@pytest.mark.parametrize("kind", ["video", "photo"])
def test_video_options_out_of_range_are_one_line(kind, option, value, expected, clip, tmp_path, capsys):
    src = clip
    if kind == "photo":  # refused on a photo too, not ignored
        src = tmp_path / "photo.png"
        Image.fromarray(pan(1)[0]).save(src)
    assert main(["predict", str(src), "--out", str(tmp_path / "out"), option, value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sceneparse: error: {expected}"), lines
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_bad_video_in_a_mixed_batch_is_skipped_and_listed(clip, tmp_path, capsys):
    Image.fromarray(pan(1)[0]).save(tmp_path / "photo.png")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    out = tmp_path / "out"
    assert main(["predict", str(clip), str(tmp_path / "photo.png"), str(tmp_path / "broken.mp4"),
                 "--out", str(out)]) == 1
    assert (out / "drive_overlay.mp4").is_file() and (out / "photo_overlay.jpg").is_file()
    err = capsys.readouterr().err
    assert "broken.mp4" in err[err.index("1 input(s) skipped"):]
    assert "Traceback" not in err


def test_output_folder_that_cannot_be_written_raises_output_error(clip, seg, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        segment_video(clip, tmp_path / "file" / "out", seg, progress=False)


def test_missing_pyav_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(Exception, match=r'pip install "sceneparse\[video\]"'):
        import_av()


def test_http_url_goes_through_the_same_path(clip, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
        assert main(["predict", url, "--out", str(tmp_path), "--smooth", "0"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    overlay, rate, size = decode(tmp_path / "drive_overlay.mp4")
    assert len(overlay) == 12 and rate == 15 and size == (H, W)


class _Interrupting(torch.nn.Module):
    """A network that is Ctrl-C'd on its `after`-th call."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.calls, self.after = model, 0, after

    def forward(self, x):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.model(x)


def test_interrupted_run_leaves_no_file(clip, seg, tmp_path):
    stopper = Segmenter(_Interrupting(seg.model, after=5), seg.classes, seg.palette, seg.mean.flatten().tolist(),
                        seg.std.flatten().tolist())
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        segment_video(clip, tmp_path, stopper, outputs=["overlay"], progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the temporary file
    deadline = time.monotonic() + 10
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads  # decoder and writer threads ended


def test_killed_command_leaves_no_file(tmp_path):  # Ctrl-C: test_interrupted_run_leaves_no_file
    clip = write_clip(tmp_path / "long.mp4", pan(400, 48, 64), rate=25)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sceneparse", "predict", str(clip), "--out", str(out),
                             "--threads", "1"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".long_overlay.mp4.*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.3)  # some frames encoded
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in proc.stderr.read()
    assert list(out.iterdir()) == []


MEMORY_CHILD = textwrap.dedent("""
    import sys, torch
    from sceneparse.inference import Segmenter
    from sceneparse.utils import peak_rss_mb
    from sceneparse.video import segment_video
    torch.set_num_threads(1)
    seg = Segmenter.from_checkpoint("camvid")
    result = segment_video(sys.argv[1], sys.argv[2], seg, smooth=0.5, batch_size=4, progress=False)
    print(result.frames, peak_rss_mb())
""")


def test_memory_stays_flat_with_the_video_length(tmp_path):
    base = pan(60, 48, 64)
    peaks = {}
    for n in (60, 600):
        clip = write_clip(tmp_path / f"c{n}.mp4", (base * 10)[:n], rate=25)
        done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(clip), str(tmp_path / f"out{n}")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        frames, peak = done.stdout.split()
        assert int(frames) == n
        peaks[n] = float(peak)
    # 600 frames of 48x64 RGB alone would be 5.5 MB, their probabilities 81 MB
    print(f"peak RSS (MiB) by clip length: {peaks}")
    assert peaks[600] < peaks[60] + 6, peaks


def test_class_map_is_argmax():
    from sceneparse.inference import class_map

    probs = torch.rand(2, 11, 30, 40)
    probs[0, 3, :5] = probs[0, 7, :5] = 2.0  # ties: the first class wins, as in argmax
    assert torch.equal(class_map(probs), probs.argmax(1))
    assert torch.equal(class_map(probs[1], 0), probs[1].argmax(0))
