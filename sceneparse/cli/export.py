"""`sceneparse export`: the eval network as ONNX or OpenVINO IR (f32 or int8), or a slim checkpoint."""
from __future__ import annotations

import argparse
import sys

from sceneparse.checkpoint import DEFAULT_BUILTIN
from sceneparse.cli.options import add_command, parse_size
from sceneparse.export import export_checkpoint


def add_parser(sub) -> None:
    p = add_command(sub, "export", "export the eval network to ONNX or OpenVINO IR (f32 or int8) or a slim checkpoint",
                    "sceneparse export --checkpoint best.pt --out model.onnx --dynamic")
    p.add_argument("--checkpoint", default=None,
                   help=f"checkpoint path or built-in model name (default: {DEFAULT_BUILTIN})")
    p.add_argument("--format", choices=["onnx", "openvino", "checkpoint"], default=None,
                   help="onnx; openvino: IR, --out model.xml (weights beside it in model.bin), dynamic size; "
                        "checkpoint: weights and metadata only, no training state (what ships as a built-in). "
                        "Default: the one --out's suffix names (.onnx, .xml, .pt/.pth), else onnx")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--size", default=None, metavar="HxW", help="fixed input size")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--quantize", choices=["int8"], default=None, help="static int8 quantization (onnxruntime for onnx, NNCF for openvino)")
    p.add_argument("--calibration", default=None, help="folder of images for int8 calibration")
    p.add_argument("--calibration-images", type=int, default=32,
                   help="use at most this many calibration images (spread over the folder)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size) if args.size else None
    out = export_checkpoint(args.checkpoint, args.out, args.format, size, args.dynamic, args.quantize,
                            args.calibration, args.calibration_images)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0
