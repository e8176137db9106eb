"""`sceneparse demo` (what `make demo` runs): segment the bundled street photo with the built-in model.

The photo is a CamVid test frame (Seq05VD_f04110, in no training split); the built-in model
ships in the package, so the demo runs offline in seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sceneparse.checkpoint import DEFAULT_BUILTIN
from sceneparse.cli import predict
from sceneparse.cli.options import add_command

DEMO_PHOTO = Path(__file__).resolve().parent.parent / "samples" / "demo" / "street.png"


def add_parser(sub) -> None:
    p = add_command(sub, "demo", "segment the bundled street photo with the built-in model",
                    "sceneparse demo --out runs/demo")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    print(f"segmenting {DEMO_PHOTO.name} with the built-in '{DEFAULT_BUILTIN}' model", file=sys.stderr)
    parser = argparse.ArgumentParser()
    predict.add_parser(parser.add_subparsers())
    code = predict.run(parser.parse_args(["predict", str(DEMO_PHOTO), "--out", str(out), "--legend"]))
    print(f"overlay written to {out / (DEMO_PHOTO.stem + '_overlay.jpg')} (and index/colour PNGs beside it)",
          file=sys.stderr)
    return code
