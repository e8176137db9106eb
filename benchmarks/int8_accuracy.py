"""int8 against fp32 on a real evaluation set: mIoU of torch, onnxruntime fp32 and onnxruntime int8.

    .venv/bin/python benchmarks/int8_accuracy.py --checkpoint runs/camvid/best.pt \\
        --dataset camvid --root ../shared/data/camvid_segnet --split val

Exports the checkpoint with dynamic size, quantizes it (QDQ, per-channel int8 weights, uint8
activations, MinMax) on `--calibration-images` images spread over the *train* split, then scores
the three engines on `--split` with whole-image inference at the images' own size. Prints JSON:
each engine's mIoU and pixel accuracy, and the share of pixels where int8 and fp32 labels agree.
Only meaningful for a trained checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from sceneparse.data import build_dataset
from sceneparse.data.transforms import eval_transform
from sceneparse.checkpoint import load_checkpoint, model_from_checkpoint
from sceneparse.evaluate import evaluate_model
from sceneparse.export import export_onnx, quantize_int8
from sceneparse.runtime import OrtEngine, checkpoint_metadata


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--calibration-images", type=int, default=32)
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    options = {"label_set": ckpt["dataset"]["label_set"]} if ckpt["dataset"].get("label_set") else {}
    norm = ckpt["normalization"]
    dataset = build_dataset(args.dataset, args.root, args.split,
                            transform=eval_transform(mean=norm["mean"], std=norm["std"]), **options)
    train = build_dataset(args.dataset, args.root, "train", **options)
    step = max(1, len(train.samples) // args.calibration_images)
    calibration = [Path(image) for image, _ in train.samples[::step][:args.calibration_images]]
    model = model_from_checkpoint(ckpt)
    result = {"checkpoint": args.checkpoint, "dataset": args.dataset, "split": args.split,
              "images": len(dataset) if args.limit is None else min(args.limit, len(dataset)),
              "calibration_images": len(calibration), "mode": "whole"}
    predictions: dict[str, dict[int, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, None, checkpoint_metadata(ckpt))
        quantize_int8(fp32, int8, calibration)
        engines = {"torch": model, "onnxruntime": OrtEngine(fp32), "onnxruntime-int8": OrtEngine(int8)}
        for name, engine in engines.items():
            predictions[name] = {}

            def keep(index: int, pred: torch.Tensor, target: torch.Tensor, store=predictions[name]) -> None:
                store[index] = pred.numpy()

            report = evaluate_model(engine, dataset, class_names=ckpt["classes"], limit=args.limit, progress=True,
                                    on_prediction=keep)
            result[name] = {"miou": report["miou"], "pixel_acc": report["pixel_acc"]}
    same = sum(int((predictions["onnxruntime-int8"][i] == p).sum()) for i, p in predictions["onnxruntime"].items())
    total = sum(p.size for p in predictions["onnxruntime"].values())
    result["int8_fp32_label_agreement"] = same / total
    result["miou_drop_points"] = 100 * (result["onnxruntime"]["miou"] - result["onnxruntime-int8"]["miou"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
