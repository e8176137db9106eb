"""What several commands share: sizes, the inference options, and help with an example."""
from __future__ import annotations

import argparse

from sceneparse.checkpoint import DEFAULT_BUILTIN
from sceneparse.engines import ENGINES
from sceneparse.inference import MAX_SCALE
from sceneparse.runtime import OV_PRECISIONS
from sceneparse.utils import SceneparseError
from sceneparse.video import DEFAULT_SMOOTH


def parse_size(text: str, option: str = "--size", minimum: int = 1) -> tuple[int, int]:
    """'HxW' (or 'H,W') or a single 'S' for SxS -> (H, W), each side at least `minimum`."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise SceneparseError(f"{option} {text}: expected a size HxW (e.g. 512x1024) or a single number")
    h, w = values[0], values[-1]
    if min(h, w) < minimum:
        raise SceneparseError(f"{option} {text}: each side must be at least {minimum}")
    return h, w


def add_command(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)


def add_inference_options(p: argparse.ArgumentParser, engine: str = "torch") -> None:
    """The checkpoint, engine and inference mode, shared by predict and evaluate (`engine`: the default)."""
    p.add_argument("--checkpoint", default=None,
                   help=f"checkpoint path or built-in model name (default: {DEFAULT_BUILTIN})")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole",
                   help="whole image at once, or overlapping windows (slide, needs --crop)")
    p.add_argument("--crop", default=None, metavar="HxW", help="sliding-window size")
    p.add_argument("--stride", default=None, metavar="S|HxW",
                   help="sliding-window stride (default: two thirds of the window)")
    p.add_argument("--scales", default="1.0", help="comma-separated scales to average, e.g. 0.75,1.0,1.25")
    p.add_argument("--flip", action="store_true", help="also average over horizontally flipped inputs")
    p.add_argument("--engine", choices=ENGINES, default=engine,
                   help=f"what runs the network: torch; openvino (the checkpoint converted once and cached, or "
                        f"--onnx FILE); onnxruntime (--onnx FILE); auto: the fastest exact (f32) engine on this "
                        f"machine, measured once and remembered (default: {engine})")
    p.add_argument("--onnx", default=None, metavar="FILE",
                   help="exported model for --engine onnxruntime/openvino/auto: .onnx, or OpenVINO .xml "
                        "(made by `sceneparse export`); without --checkpoint its own metadata is used")
    p.add_argument("--precision", choices=OV_PRECISIONS, default="f32",
                   help="openvino's compute precision: f32 (exact, default), bf16 (CPUs with avx512_bf16 or "
                        "AMX), int8 (quantized once on --calibration photos, cached); see docs/speed.md")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="--precision int8: folder of training photos to calibrate on (32 are used)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="network inputs per forward pass (images, flipped copies, windows); "
                        "default: one image at a time, windows about a megapixel per pass")
    p.add_argument("--resize", default="auto", metavar="HxW|native|auto",
                   help="resize each image to HxW for the network (probabilities back to its size); "
                        "auto (default): the size stored with the model (models trained on the "
                        "256x256 pix2pix pairs), else native")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")


def inference_options(args: argparse.Namespace) -> dict:
    """mode, crop, stride, scales, flip and resize from the options of `add_inference_options`."""
    try:
        scales = tuple(float(s) for s in str(args.scales).split(","))
    except ValueError:
        raise SceneparseError(f"--scales {args.scales}: expected numbers like 0.75,1.0,1.25") from None
    if not all(0 < s <= MAX_SCALE for s in scales):  # also refuses nan
        raise SceneparseError(f"--scales {args.scales}: each scale must be above 0 and at most {MAX_SCALE}")
    crop = parse_size(args.crop, "--crop") if args.crop else None
    stride = parse_size(args.stride, "--stride") if args.stride else None
    if args.mode == "slide" and crop is None:
        raise SceneparseError("--mode slide needs --crop HxW")
    resize = args.resize if args.resize in ("auto", "native") else parse_size(args.resize, "--resize")
    return {"mode": args.mode, "crop": crop, "stride": stride, "scales": scales, "flip": args.flip,
            "resize": resize}


def add_video_options(p: argparse.ArgumentParser) -> None:
    """Frame selection, temporal smoothing, cameras and the network's size cap of `predict`."""
    p.add_argument("--max-size", type=int, default=None, metavar="N",
                   help="scale images and video frames whose longer side exceeds N pixels down to N for the "
                        "network (probabilities back to full size); default: no limit")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: segment every N-th frame (default: 1)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="videos: start S seconds in (default: 0)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="videos: segment S seconds (default: to the end; a stream or camera runs until Ctrl-C, "
                        "which keeps no overlay video, so give --duration for those)")
    p.add_argument("--smooth", type=float, default=DEFAULT_SMOOTH, metavar="A",
                   help=f"videos: average class probabilities over frames, p = A*p_previous + (1-A)*p_frame; "
                        f"0 = off, exactly per-frame (default: {DEFAULT_SMOOTH:g}, see docs/video.md)")
    p.add_argument("--camera", default=None, metavar="N|DEVICE",
                   help="also segment a camera: its number (0 = /dev/video0 on Linux) or device path")
