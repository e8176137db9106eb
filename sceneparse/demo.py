"""`sceneparse demo` (what `make demo` runs): segment the bundled street photo with the built-in model.

While no trained CamVid model ships in the package, the demo instead trains a tiny model for a
minute on the three bundled CamVid frames and segments a photo with it: it shows the whole
pipeline working, not a useful segmentation, and says so.
"""
from __future__ import annotations

import sys
from pathlib import Path

from sceneparse.engine.checkpoint import BUILTIN, DEFAULT_BUILTIN, WEIGHTS_DIR

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_PHOTO = SAMPLES / "demo" / "street.png"


def demo_config():
    """The demo's training config; configs/demo.yaml holds the same values (a test keeps them equal)."""
    from sceneparse.engine.config import TrainConfig

    return TrainConfig(model="pspnet_lite", model_options={"width": 8}, dataset="camvid",
                       root=str(SAMPLES / "camvid"), train_split="train", val_split="train",
                       crop_size=[120, 160], scale=[0.5, 1.0], batch_size=3, workers=0, optimizer="adamw",
                       lr=0.01, weight_decay=0.0, iterations=40, eval_size=[180, 240], eval_interval=1000,
                       log_interval=5, seed=0)


def run_demo(args) -> int:
    from sceneparse.predict import run_predict

    out = Path(args.out)
    builtin = WEIGHTS_DIR / BUILTIN[DEFAULT_BUILTIN]
    if builtin.is_file():
        checkpoint = DEFAULT_BUILTIN
        print(f"segmenting {DEMO_PHOTO.name} with the built-in '{DEFAULT_BUILTIN}' model", file=sys.stderr)
    else:
        from sceneparse.engine.train import train

        print("no trained model ships in this version: training a tiny model for 40 iterations on the 3 "
              "bundled CamVid frames (about a minute) to show the pipeline; expect a poor segmentation",
              file=sys.stderr)
        train(demo_config(), out / "train")
        checkpoint = str(out / "train" / "last.pt")
    ns = _predict_args(DEMO_PHOTO, checkpoint, out)
    code = run_predict(ns)
    print(f"overlay written to {out / (DEMO_PHOTO.stem + '_overlay.jpg')} (and index/colour PNGs beside it)",
          file=sys.stderr)
    return code


def _predict_args(photo: Path, checkpoint: str, out: Path):
    from sceneparse.cli import build_parser

    return build_parser().parse_args(["predict", str(photo), "--checkpoint", checkpoint, "--out", str(out),
                                      "--legend"])
