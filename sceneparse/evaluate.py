"""Scoring a model on a dataset split: one confusion matrix per run (`sceneparse evaluate` and
the validation pass of training).

Under torchrun each process scores every world-th image and the matrices are summed, so the
result equals the single-process one exactly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from sceneparse import distributed as dist
from sceneparse.checkpoint import DEFAULT_BUILTIN, load_checkpoint
from sceneparse.data import build_dataset, labels
from sceneparse.data.transforms import eval_transform
from sceneparse.engines import load_network
from sceneparse.inference import infer, resolve_resize
from sceneparse.metrics import ConfusionMatrix, collapse, report, save_report
from sceneparse.utils import (SceneparseError, atomic_path, check_threads, os_error_reason, save_image,
                              writable_folder)
from sceneparse.viz import colorize, plot_confusion


@torch.no_grad()
def evaluate_model(model, dataset, device: torch.device | str = "cpu", class_names: list[str] | None = None,
                   mode: str = "whole", crop=None, stride=None, scales=(1.0,), flip: bool = False,
                   resize: tuple[int, int] | None = None, limit: int | None = None, progress: bool = False,
                   on_prediction=None) -> dict:
    """Score `model` (a torch module or an onnxruntime engine) on `dataset`; return the report dict.

    `on_prediction(index, pred, target)` is called per image (saving outputs, per-image scores).
    """
    if isinstance(model, torch.nn.Module):
        model.eval()
    names = list(class_names or dataset.classes)
    cm = ConfusionMatrix(len(names))
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    shard = Subset(dataset, indices[dist.rank()::dist.world_size()])
    loader = DataLoader(shard, batch_size=1, num_workers=0)
    for i, (image, target) in enumerate(tqdm(loader, desc="evaluate", disable=not (progress and dist.is_main()),
                                             dynamic_ncols=True)):
        image = image.to(device)
        probs = infer(model, image, mode=mode, crop=crop, stride=stride, scales=scales, flip=flip,
                      resize=resize)
        pred = probs.argmax(1).cpu()
        cm.update(pred, target)
        if on_prediction is not None:
            on_prediction(shard.indices[i], pred[0], target[0])
    cm.all_reduce()
    return report(cm.matrix, names)


def label_set_groups(ckpt: dict, wanted: str | None):
    """Groups that turn the checkpoint's classes into the label set asked for, or None."""
    have = ckpt["dataset"].get("label_set") or ""
    if not wanted or wanted == have:
        return None, None
    if wanted == "categories" and ckpt["dataset"]["name"] in ("cityscapes", "cityscapes_pairs") \
            and len(ckpt["classes"]) == len(labels.CITYSCAPES_CLASSES):
        return labels.CITYSCAPES_TRAINID_TO_CATEGORY, labels.CITYSCAPES_CATEGORIES
    raise SceneparseError(f"--label-set {wanted}: cannot map this checkpoint's {len(ckpt['classes'])} "
                          f"{ckpt['dataset']['name'] or 'unknown'} classes to '{wanted}'")


def evaluate_checkpoint(checkpoint: str | os.PathLike | None = None, dataset: str | None = None,
                        root: str | os.PathLike | None = None, split: str = "val", label_set: str | None = None,
                        out: str | os.PathLike | None = None, engine: str = "torch",
                        onnx: str | os.PathLike | None = None, threads: int | None = None,
                        precision: str = "f32", calibration: str | os.PathLike | None = None,
                        limit: int | None = None, save_predictions: bool = False, per_image: bool = False,
                        mode: str = "whole", crop: tuple[int, int] | None = None,
                        stride: tuple[int, int] | None = None, scales: tuple[float, ...] = (1.0,),
                        flip: bool = False, resize="auto") -> dict:
    """Score a checkpoint (path or built-in name) on a dataset split and write the report to `out`.

    Dataset and root default to those the checkpoint was trained on. `label_set="categories"`
    scores a 19-class Cityscapes model on the 7 categories (`miou` is then the category mIoU).
    Writes OUT/metrics.json and OUT/confusion_matrix.png (on the main process), with
    `save_predictions` the index and colour PNGs, with `per_image` OUT/per_image.json. The inference
    options are those of `sceneparse.inference.infer`; `resize` also takes "auto" (the size stored
    with the model) and "native". `engine`, `onnx`, `precision` and `calibration` choose what runs
    the network (see `sceneparse.engines.load_network`).
    Returns the report, with the exact `setup` that produced it (None on the other processes
    under torchrun, which score their share of the images).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise SceneparseError(f"--limit {limit}: must be at least 1 (or left out for every image)")
    check_threads(threads)
    device = dist.init()
    try:
        ckpt = load_checkpoint(checkpoint)
        config = ckpt.get("config", {})
        name = dataset or ckpt["dataset"]["name"]
        root = root or config.get("root")
        if not name or not root:
            raise SceneparseError("give --dataset and --root (the checkpoint does not say where its data is)")
        options = dict(config.get("dataset_options", {})) if name == ckpt["dataset"]["name"] else {}
        if ckpt["dataset"].get("label_set"):
            options["label_set"] = ckpt["dataset"]["label_set"]
        norm = ckpt["normalization"]
        data = build_dataset(name, root, split, transform=eval_transform(mean=norm["mean"], std=norm["std"]),
                             **options)
        if list(data.classes) != list(ckpt["classes"]):
            raise SceneparseError(f"{root}: dataset '{name}' has classes {list(data.classes)[:4]}..., the "
                                  f"checkpoint predicts {list(ckpt['classes'])[:4]}... ({len(ckpt['classes'])})")
        groups, group_names = label_set_groups(ckpt, label_set)
        inference = {"mode": mode, "crop": crop, "stride": stride, "scales": scales, "flip": flip,
                     "resize": resolve_resize(resize, ckpt["dataset"].get("photo_size"))}
        model, engine = load_network(ckpt, engine, onnx, threads, precision, calibration, device)
        out = Path(out) if out else Path(f"eval_{name}_{split}")
        if dist.is_main():  # before the evaluation runs, not after it
            writable_folder(out, "--out", recursive=True)
        images, save = [], None
        if save_predictions or per_image:
            save = _prediction_writer(out, data, ckpt, save_predictions, images)
        result = evaluate_model(model, data, device=device, class_names=ckpt["classes"], limit=limit,
                                progress=True, on_prediction=save, **inference)
        if groups is not None:  # score on the coarser label set: `miou` becomes the category mIoU
            result = report(collapse(torch.tensor(result["confusion_matrix"]), groups), list(group_names))
        result["setup"] = {"checkpoint": str(checkpoint or DEFAULT_BUILTIN), "dataset": name, "root": str(root),
                           "split": split, "images": len(data) if limit is None else min(limit, len(data)),
                           "label_set": label_set or ckpt["dataset"].get("label_set") or "", **inference,
                           "engine": engine, "out": str(out)}
        if dist.is_main():
            out.mkdir(parents=True, exist_ok=True)
            save_report(result, out / "metrics.json")
            names = list(group_names) if groups is not None else list(ckpt["classes"])
            plot_confusion(np.array(result["confusion_matrix"]), names, out / "confusion_matrix.png")
            if per_image:
                images.sort(key=lambda r: r["index"])
                with atomic_path(out / "per_image.json") as tmp:
                    tmp.write_text(json.dumps(images, indent=1))
        main = dist.is_main()
    except OSError as e:  # writing the report or predictions: disk full, folder removed
        raise SceneparseError(f"{e.filename or out}: write failed ({os_error_reason(e)})") from None
    finally:
        dist.cleanup()
    return result if main else None


def _prediction_writer(out: Path, dataset, ckpt: dict, save_png: bool, per_image: list):
    palette = ckpt["palette"]
    n = len(ckpt["classes"])

    def on_prediction(index: int, pred: torch.Tensor, target: torch.Tensor) -> None:
        stem = Path(dataset.samples[index][0]).stem
        if save_png:
            arr = pred.numpy().astype(np.uint8)
            save_image(arr, out / "predictions" / f"{stem}.png")
            save_image(colorize(arr, palette), out / "predictions" / f"{stem}_color.png")
        cm = ConfusionMatrix(n)
        cm.update(pred, target)
        r = report(cm.matrix, list(ckpt["classes"]))
        per_image.append({"index": index, "image": str(dataset.samples[index][0]), "miou": r["miou"],
                          "pixel_acc": r["pixel_acc"]})

    return on_prediction
