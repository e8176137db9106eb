"""`sceneparse demo` (what `make demo` runs): segment the bundled street photo with the built-in model.

The photo is CamVid test frame Seq05VD_f04110 (in no training split); the built-in `camvid` model
ships in the package, so the demo runs offline in seconds.
"""
from __future__ import annotations

import sys
from pathlib import Path

from sceneparse.engine.checkpoint import DEFAULT_BUILTIN

DEMO_PHOTO = Path(__file__).resolve().parent / "samples" / "demo" / "street.png"


def run_demo(args) -> int:
    from sceneparse.cli import build_parser
    from sceneparse.predict import run_predict

    out = Path(args.out)
    print(f"segmenting {DEMO_PHOTO.name} with the built-in '{DEFAULT_BUILTIN}' model", file=sys.stderr)
    code = run_predict(build_parser().parse_args(["predict", str(DEMO_PHOTO), "--out", str(out), "--legend"]))
    print(f"overlay written to {out / (DEMO_PHOTO.stem + '_overlay.jpg')} (and index/colour PNGs beside it)",
          file=sys.stderr)
    return code
