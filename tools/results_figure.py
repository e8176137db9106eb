"""The README's results figure: photo | ground truth | prediction for a few images of a split.

    python tools/results_figure.py --checkpoint camvid --dataset camvid \
        --root ../shared/data/camvid_segnet --split test --images 0,60,120,180 --out docs/camvid_test.png

Images are shown at half size to keep the PNG small; ignored ground-truth pixels are black.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.data import build_dataset  # noqa: E402
from sceneparse.checkpoint import load_checkpoint  # noqa: E402
from sceneparse.inference import Segmenter  # noqa: E402
from sceneparse.utils import save_image  # noqa: E402
from sceneparse.viz import add_legend, colorize, grid  # noqa: E402


def half(array):
    image = Image.fromarray(array)
    return image.resize((image.width // 2, image.height // 2), Image.NEAREST)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="camvid")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--images", default="0,60,120,180", help="comma-separated indices into the split")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    ckpt = load_checkpoint(args.checkpoint)
    options = {"label_set": ckpt["dataset"]["label_set"]} if ckpt["dataset"].get("label_set") else {}
    dataset = build_dataset(args.dataset, args.root, args.split, **options)
    segmenter = Segmenter.from_checkpoint(args.checkpoint)
    palette = ckpt["palette"]
    rows = []
    for i in (int(v) for v in args.images.split(",")):
        image, mask = dataset.load(i)
        pred = segmenter.predict(image).astype("uint8")
        rows.append([half(image), half(colorize(mask, palette)), half(colorize(pred, palette))])
    save_image(add_legend(grid(rows), ckpt["classes"], palette), args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
