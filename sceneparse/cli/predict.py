"""`sceneparse predict`: segment images, folders, globs, videos, streams and cameras into index,
colour and overlay pictures (overlay videos for videos)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sceneparse.cli.options import add_command, add_inference_options, add_video_options, inference_options
from sceneparse.inference import Segmenter
from sceneparse.predict import OUTPUTS, cityscapes_label_ids, collect_inputs, is_video, parse_outputs, predict_files
from sceneparse.utils import SceneparseError, writable_folder
from sceneparse.video import OutputError, check_options, segment_video, terminate_as_interrupt
from sceneparse.video_sources import camera_source, source_name


def add_parser(sub) -> None:
    p = add_command(sub, "predict", "segment images, folders, globs, videos, streams or a camera",
                    "sceneparse predict photo.jpg street/ \"frames/*.png\" drive.mp4 --out predictions/ --legend")
    p.add_argument("inputs", nargs="*",
                   help="image or video files, folders (searched recursively), globs, or stream URLs "
                        "(rtsp://, http://...)")
    add_inference_options(p, engine="auto")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    p.add_argument("--outputs", default=None,
                   help=f"comma-separated subset of {','.join(OUTPUTS)} to write per image or video frame "
                        f"(default: all three for images; overlay only for videos, whose index and colour "
                        f"go to per-frame PNGs in OUT/STEM/)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the colours in the overlay, 0 to 1")
    p.add_argument("--legend", action="store_true",
                   help="add a legend of the classes to the overlay (beside an image; inside a video's frame)")
    p.add_argument("--cityscapes-ids", action="store_true", help="also write labelIds PNGs (images only)")
    add_video_options(p)
    p.set_defaults(run=run)


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter that the checkpoint, engine and inference options ask for."""
    options = dict(inference_options(args), batch_size=args.batch_size, max_size=getattr(args, "max_size", None))
    if args.checkpoint is None and args.onnx:
        if args.calibration:
            raise SceneparseError("--calibration: an exported file runs at the precision it was exported with")
        return Segmenter.from_onnx(args.onnx, threads=args.threads, engine=args.engine, precision=args.precision,
                                   **options)  # the file's own metadata
    return Segmenter.from_checkpoint(args.checkpoint, engine=args.engine, onnx_path=args.onnx,
                                     threads=args.threads, precision=args.precision,
                                     calibration=args.calibration, **options)


def _not_found(item: str) -> str:
    """Why an input found nothing: it is absent, or it exists but is a device, FIFO or socket."""
    if Path(item).exists():
        return f"{item}: not a regular file or folder (a device, pipe or socket)"
    return f"{item}: no such file, folder or matching glob"


def run(args: argparse.Namespace) -> int:
    image_outputs = parse_outputs(args.outputs) if args.outputs else list(OUTPUTS)
    video_outputs = image_outputs if args.outputs else ["overlay"]
    # every option is checked whatever the inputs: a bad --every is an error on a photo too
    check_options(video_outputs, args.alpha, args.every, args.start, args.duration, args.smooth)
    if args.max_size is not None and args.max_size < 32:
        raise SceneparseError(f"--max-size {args.max_size}: must be at least 32 pixels")
    if not args.inputs and args.camera is None:
        raise SceneparseError("nothing to predict: give image or video files, folders, globs, URLs or --camera N")
    out = Path(args.out)
    jobs, missing = collect_inputs(args.inputs, out)
    if args.camera is not None:
        source = camera_source(args.camera)
        jobs.append((source, Path("camera" + str(args.camera) if str(args.camera).isdigit() else Path(source).name)))
    if not jobs:
        if len(missing) == len(args.inputs):
            raise SceneparseError("; ".join(_not_found(m) for m in missing))
        inside, _ = collect_inputs(args.inputs, None)
        if inside:
            raise SceneparseError(f"no images to predict: the {len(inside)} image(s) in {', '.join(args.inputs)} are "
                                  f"inside the output folder {out}, whose files predict skips (its own earlier "
                                  f"outputs); give another --out")
        raise SceneparseError(f"no images or videos found in {', '.join(args.inputs)}")
    images = [job for job in jobs if not is_video(job[0])]
    videos = [job for job in jobs if is_video(job[0])]
    seg = build_segmenter(args)
    if args.cityscapes_ids:
        cityscapes_label_ids(seg.classes)  # refused before anything is written
    writable_folder(out, "--out")
    skipped = [_not_found(m) for m in missing]
    for m in skipped:
        print(f"sceneparse: warning: {m}; skipped", file=sys.stderr)
    with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C: no half-written file under a final name
        if images:
            written, unreadable = predict_files(seg, images, out, image_outputs, args.alpha, args.legend,
                                                args.cityscapes_ids, args.batch_size or 1)
            skipped += unreadable
            print(f"wrote {', '.join(image_outputs)} for {written} image(s) to {out} ({seg.info['engine']})",
                  file=sys.stderr)
        for source, stem in videos:
            try:
                result = segment_video(source, out, seg, stem=str(stem), outputs=video_outputs, alpha=args.alpha,
                                       legend=args.legend, every=args.every, start=args.start,
                                       duration=args.duration, smooth=args.smooth, batch_size=args.batch_size)
            except OutputError:
                raise
            except SceneparseError as e:
                if len(jobs) == 1 and not missing:
                    raise
                skipped.append(str(e))
                print(f"sceneparse: warning: {e}; skipped", file=sys.stderr)
                continue
            where = result.overlay if result.overlay else result.frames_dir
            print(f"{source_name(source)}: {result.frames} frame(s) at {result.fps:.1f} frames/s ({seg.info['engine']}) "
                  f"-> {where}",
                  file=sys.stderr)
    if skipped:
        print(f"sceneparse: warning: {len(skipped)} input(s) skipped:", file=sys.stderr)
        for s in skipped:
            print(f"  {s}", file=sys.stderr)
        return 1
    return 0
