"""How to resize photos of another shape for a model trained on squeezed photos.

    .venv/bin/python benchmarks/resize_choice.py --checkpoint cityscapes --root ../shared/data/camvid_segnet

The built-in `cityscapes` model learned on 2048x1024 frames squeezed into 256x256 (height x1/4,
width x1/8). A photo of another shape can be squeezed to 256x256 too (`square`, the default), or
given the training data's squeeze (`aspect`): height to 256 and width scaled by half the height's
factor, so that things look as wide as they did in training (a 360x480 CamVid frame -> 256x171).
Both are scored on CamVid (4:3 frames, 11 classes that are unions of Cityscapes classes: the
19-class prediction is mapped to them). Prints JSON: mIoU and per-class IoU of each choice.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from sceneparse.data import build_dataset
from sceneparse.data.labels import CAMVID_CLASSES, CITYSCAPES_CLASSES
from sceneparse.inference import Segmenter
from sceneparse.metrics import ConfusionMatrix

TO_CAMVID = {"road": "road", "sidewalk": "pavement", "building": "building", "wall": "building", "fence": "fence",
             "pole": "pole", "traffic light": "sign symbol", "traffic sign": "sign symbol", "vegetation": "tree",
             "terrain": "tree", "sky": "sky", "person": "pedestrian", "rider": "bicyclist", "car": "car",
             "truck": "car", "bus": "car", "train": "car", "motorcycle": "bicyclist", "bicycle": "bicyclist"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="cityscapes")
    parser.add_argument("--root", required=True, help="CamVid (SegNet's version)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    lookup = torch.tensor([CAMVID_CLASSES.index(TO_CAMVID[name]) for name in CITYSCAPES_CLASSES])
    data = build_dataset("camvid", args.root, args.split)
    count = len(data) if args.limit is None else min(args.limit, len(data))
    h, w = data.load(0)[0].shape[:2]
    sizes = {"square": (256, 256), "aspect": (256, round(w * 256 / h / 2))}
    results = {"checkpoint": args.checkpoint, "split": args.split, "images": count, "photo": [h, w],
               "mapping": TO_CAMVID}
    for choice, size in sizes.items():
        seg = Segmenter.from_checkpoint(args.checkpoint, engine="torch", resize=size)
        matrix = ConfusionMatrix(len(CAMVID_CLASSES))
        for i in range(count):
            image, mask = data.load(i)
            pred = lookup[torch.from_numpy(seg.predict(image))]
            matrix.update(pred, torch.from_numpy(mask.astype(np.int64)))
        scores = matrix.report(CAMVID_CLASSES)
        results[choice] = {"size": list(size), "miou": round(scores["miou"], 4),
                           "pixel_acc": round(scores["pixel_acc"], 4),
                           "iou": {k: None if v["iou"] is None else round(v["iou"], 3)
                                   for k, v in scores["per_class"].items()}}
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
