"""Video: what the whole job costs against the model alone, and what `--smooth` does to flicker.

Speed, per size and engine, in one run (the ratio is the number to read; absolute speeds depend on
the machine's load):
  model_fps  `Segmenter.predict_frames` on frames already decoded and held in memory (normalise,
             network, softmax, argmax), smoothing off: the model's own frame rate at that size;
  job_fps    `segment_video` on an H.264 file of the same frames: decode, network, smoothing at the
             default A, overlay drawing and H.264 encoding of the overlay video, as `sceneparse
             predict clip.mp4` does.
The two are timed alternately (`--repeats` times each) and the best of each is kept; each pair's
ratio is listed too. `job_ms_per_frame` (the fastest job) says where the job's time went: CPU time
of the decoder thread and of the writer thread (drawing + encoding), and how long the network
waited for a decoded frame or for room in the writer's queue (near 0: the stages overlap).
Clips are real CamVid frames (Seq05VD from ../shared/data when present, else the bundled samples),
resized to each size and encoded once with libx264 (crf 18) before timing.

Flicker, on real consecutive frames with their labels (CamVid Seq05VD test frames, 1 every 30,
i.e. 1 Hz; and the 0016E5 val frames, 1 every 2, i.e. 15 Hz, which the built-in model saw in
training): for each A, the share of pixels whose label changes between consecutive frames
(`flicker`; part of it is real motion), the same share among the pixels whose ground-truth label
did not change (`flicker_where_truth_unchanged`: flicker proper), the agreement with the
single-frame labels, and mIoU / pixel accuracy against the ground truth.

    python benchmarks/video.py                        # everything, JSON on stdout
    python benchmarks/video.py --no-flicker --sizes 360x480 --engines torch
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from sceneparse.data import build_dataset
from sceneparse.inference import Segmenter
from sceneparse.metrics import ConfusionMatrix
from sceneparse.utils import read_image
from sceneparse.video import DEFAULT_SMOOTH, TemporalSmoother, segment_video

ROOT = Path(__file__).resolve().parent.parent
CAMVID = ROOT.parent / "shared" / "data" / "camvid_segnet"
SAMPLES = ROOT / "sceneparse" / "samples"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_frames(count: int) -> list[Path]:
    seq = sorted((CAMVID / "CamVid" / "test").glob("Seq05VD_*.png"))
    if not seq:
        seq = sorted((SAMPLES / "camvid" / "CamVid" / "train").glob("*.png")) + [SAMPLES / "demo" / "street.png"]
    return [seq[i % len(seq)] for i in range(count)]


def make_clip(path: Path, files: list[Path], size: tuple[int, int], rate: int = 30) -> list[np.ndarray]:
    """Encode the files, resized to size (H, W), as an H.264 clip; return the decoded frames."""
    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in files:
            image = Image.open(f).convert("RGB").resize((w, h), Image.BILINEAR)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def model_fps(seg: Segmenter, frames: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for _ in seg.predict_frames(frames):
        pass
    return len(frames) / (time.perf_counter() - start)


def job_run(seg: Segmenter, clip: Path, out: Path, smooth: float):
    return segment_video(clip, out, seg, smooth=smooth, progress=False)


def speed(args, tmp: Path) -> list[dict]:
    rows = []
    onnx = None
    for engine in args.engines:
        if engine == "onnxruntime":
            from sceneparse.export import export_checkpoint

            onnx = onnx or export_checkpoint("camvid", tmp / "camvid.onnx", dynamic=True)
            seg = Segmenter.from_onnx(onnx, threads=args.threads)
        elif engine.startswith("openvino"):  # openvino, openvino-bf16, openvino-int8 (calibrated on the samples)
            precision = engine.partition("-")[2] or "f32"
            calibration = Path(__file__).resolve().parents[1] / "sceneparse" / "samples" / "demo"
            seg = Segmenter.from_checkpoint("camvid", engine="openvino", precision=precision, threads=args.threads,
                                            calibration=calibration if precision == "int8" else None)
        else:
            seg = Segmenter.from_checkpoint("camvid", threads=args.threads)
        for size, count in zip(args.sizes, args.frames):
            clip = tmp / f"clip_{size[0]}x{size[1]}.mp4"
            frames = make_clip(clip, source_frames(count), size)
            list(seg.predict_frames(frames[:2]))  # warm-up at this size
            models, jobs, results = [], [], []
            for _ in range(args.repeats):
                models.append(model_fps(seg, frames))
                results.append(job_run(seg, clip, tmp / "out", args.smooth))
                jobs.append(results[-1].fps)
            best = results[int(np.argmax(jobs))]
            row = {"engine": engine, "size": f"{size[0]}x{size[1]}", "frames": len(frames),
                   "model_fps": round(max(models), 3), "job_fps": round(max(jobs), 3),
                   "job_over_model": round(max(jobs) / max(models), 3),
                   "paired_job_over_model": [round(j / m, 3) for j, m in zip(jobs, models)],
                   "runs": {"model_fps": [round(v, 3) for v in models], "job_fps": [round(v, 3) for v in jobs]},
                   "job_ms_per_frame": {k: round(v / best.frames * 1e3, 1) for k, v in best.stages.items()}}
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    return rows


def flicker(args) -> list[dict]:
    if not (CAMVID / "CamVid").is_dir():
        return [{"skipped": f"{CAMVID} is absent"}]
    seg = Segmenter.from_checkpoint("camvid", threads=args.threads)
    results = []
    for split, prefix, note in (("test", "Seq05VD", "CamVid test Seq05VD, 1 frame every 30 (1 Hz), unseen"),
                                ("val", "0016E5", "CamVid val 0016E5, 1 frame every 2 (15 Hz), in the "
                                                  "built-in model's training data")):
        ds = build_dataset("camvid", CAMVID, split)
        indices = [i for i, (image, _) in enumerate(ds.samples) if Path(image).name.startswith(prefix)]
        indices.sort(key=lambda i: Path(ds.samples[i][0]).name)
        indices = indices[: args.flicker_frames] if args.flicker_frames else indices
        smoothers = {a: TemporalSmoother(a) for a in args.alphas}
        previous = {a: None for a in args.alphas}
        changed = {a: [] for a in args.alphas}
        spurious = {a: [] for a in args.alphas}  # changes where the ground truth stayed the same
        last_mask = None
        agree = {a: [] for a in args.alphas}
        matrices = {a: ConfusionMatrix(len(ds.classes)) for a in args.alphas}
        masks = (ds.load(i)[1] for i in indices)
        images = (read_image(ds.samples[i][0]) for i in indices)
        for (single, probs), mask in zip(seg.predict_frames(images, return_probs=True), masks):
            target = torch.from_numpy(mask.astype(np.int64))
            same = None if last_mask is None else (mask == last_mask) & (mask != 255)
            last_mask = mask
            for a in args.alphas:
                labels = smoothers[a](probs)
                if previous[a] is not None:
                    changed[a].append(float(np.mean(labels != previous[a])))
                    spurious[a].append(float(np.mean((labels != previous[a])[same])))
                previous[a] = labels
                agree[a].append(float(np.mean(labels == single)))
                matrices[a].update(torch.from_numpy(labels), target)
        for a in args.alphas:
            report = matrices[a].report(ds.classes)
            results.append({"frames": note, "count": len(indices), "smooth": a,
                            "flicker": round(float(np.mean(changed[a])), 4),
                            "flicker_where_truth_unchanged": round(float(np.mean(spurious[a])), 4),
                            "agreement_with_single_frame": round(float(np.mean(agree[a])), 4),
                            "miou": round(report["miou"], 4), "pixel_acc": round(report["pixel_acc"], 4)})
            print(json.dumps(results[-1]), file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="360x480,720x1280", help="comma-separated HxW sizes")
    parser.add_argument("--frames", default="40,12", help="clip length per size (comma-separated)")
    parser.add_argument("--engines", default="torch,onnxruntime", help="any of torch, onnxruntime, openvino, openvino-bf16, openvino-int8")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timings of model and job per size")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--smooth", type=float, default=DEFAULT_SMOOTH, help="--smooth of the job")
    parser.add_argument("--alphas", default="0,0.3,0.5,0.7", help="smoothing weights for the flicker part")
    parser.add_argument("--flicker-frames", type=int, default=0, help="limit frames per sequence (0: all)")
    parser.add_argument("--no-flicker", action="store_true", help="speed only")
    parser.add_argument("--no-speed", action="store_true", help="flicker only")
    args = parser.parse_args()
    args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    args.frames = [int(v) for v in args.frames.split(",")]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.alphas = [float(a) for a in args.alphas.split(",")]
    report = {"cpu": cpu_name(), "threads": args.threads or torch.get_num_threads(), "torch": torch.__version__,
              "pyav": av.__version__, "model": "camvid (built-in dabnet)", "job_smooth": args.smooth}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_speed:
            report["speed"] = speed(args, Path(tmp))
    if not args.no_flicker:
        report["flicker"] = flicker(args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
