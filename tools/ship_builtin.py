"""Turn a trained checkpoint into a built-in model of the package (`camvid`, `cityscapes`).

    python tools/ship_builtin.py --checkpoint ~/runs/RUN/last.pt --name camvid \
        --dataset camvid --root ../shared/data/camvid_segnet --split test \
        --photo sceneparse/samples/demo/street.png

Writes, in sceneparse/weights/:
  NAME.pt                the slim checkpoint (no training state); its `metrics` is the evaluation of
                         the whole --split, with the command that reprints it under `metrics.setup`
  NAME_reference.png     its class-index prediction of --photo (whole image, single scale)
  NAME_reference.json    per-image mIoU and pixel accuracy of the first 10 images of --split,
                         which tests/test_builtin.py reproduces

Every number comes from the same `sceneparse evaluate` / `predict` code a user runs. Run it once
per final model: for CamVid, this is the one evaluation on the test split.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sceneparse.cli import main as cli  # noqa: E402
from sceneparse.checkpoint import BUILTIN, WEIGHTS_DIR, load_checkpoint, save_checkpoint  # noqa: E402
from sceneparse.utils import atomic_path  # noqa: E402

REFERENCE_IMAGES = 10


def run(command: list[str]) -> None:
    print("+ sceneparse " + " ".join(command), file=sys.stderr)
    if cli(command) != 0:
        raise SystemExit(f"failed: sceneparse {' '.join(command)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--name", required=True, choices=sorted(BUILTIN))
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--label-set", default=None, help="also score on this label set (e.g. categories)")
    p.add_argument("--photo", required=True, help="a street photo in no training split")
    args = p.parse_args()

    target = WEIGHTS_DIR / BUILTIN[args.name]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        slim = tmp / "slim.pt"
        run(["export", "--format", "checkpoint", "--checkpoint", args.checkpoint, "--out", str(slim)])
        data = ["--dataset", args.dataset, "--root", args.root, "--split", args.split]
        run(["evaluate", "--checkpoint", str(slim), *data, "--out", str(tmp / "full")])
        metrics = json.loads((tmp / "full" / "metrics.json").read_text())
        metrics["setup"]["checkpoint"] = args.name
        metrics["setup"]["command"] = (f"sceneparse evaluate --checkpoint {args.name} --dataset {args.dataset} "
                                       f"--root {args.root} --split {args.split}")
        if args.label_set:
            run(["evaluate", "--checkpoint", str(slim), *data, "--label-set", args.label_set,
                 "--out", str(tmp / "grouped")])
            grouped = json.loads((tmp / "grouped" / "metrics.json").read_text())
            metrics[args.label_set] = {k: grouped[k] for k in ("miou", "pixel_acc", "mean_class_acc", "per_class")}
        ckpt = load_checkpoint(slim)
        ckpt["metrics"] = metrics
        ckpt["config"].pop("root", None)  # a path on the machine that trained it means nothing elsewhere

        run(["evaluate", "--checkpoint", str(slim), *data, "--limit", str(REFERENCE_IMAGES), "--per-image",
             "--out", str(tmp / "few")])
        rows = json.loads((tmp / "few" / "per_image.json").read_text())
        run(["predict", args.photo, "--checkpoint", str(slim), "--outputs", "index", "--out", str(tmp / "photo")])
        index = tmp / "photo" / f"{Path(args.photo).stem}_index.png"
        labels = np.asarray(Image.open(index))

        save_checkpoint(ckpt, target)
        shutil.copyfile(index, WEIGHTS_DIR / f"{args.name}_reference.png")
        reference = {
            "photo": str(Path(args.photo).resolve().relative_to(ROOT / "sceneparse")),
            "prediction": f"{args.name}_reference.png", "size": list(labels.shape),
            "per_image": {"dataset": args.dataset, "split": args.split,
                          "images": [{"image": Path(r["image"]).name, "miou": r["miou"],
                                      "pixel_acc": r["pixel_acc"]} for r in rows]},
        }
        with atomic_path(WEIGHTS_DIR / f"{args.name}_reference.json") as path:
            path.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB): {args.split} mIoU {metrics['miou']:.4f}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
